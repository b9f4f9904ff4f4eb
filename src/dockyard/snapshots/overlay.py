"""The overlayfs snapshotter: one directory per layer, stacked as overlay lowerdirs.

On-disk layout under the snapshotter root (``<dataroot>/snapshots``, mode 0700 because layers hold
setuid binaries that unprivileged users must not reach)::

    metadata.db            SQLite (WAL), private to this module: key/name -> id, kind, parent, size
    <id>/fs                committed: the unpacked layer (overlay whiteouts and opaque xattrs);
                           active: the upper dir (the container's changes); view: empty
    <id>/work              overlay work dir of an active snapshot (removed at commit)
    tmp/apply-XXXX/fs      a layer being unpacked by apply(); renamed to <id> when complete
    tmp/rm-<id>-XXXX       a removed snapshot's files, deleted after the metadata change

Ids are short integers (SQLite AUTOINCREMENT, never reused) so that the overlay option string stays
small: with 120+ lowerdirs the paths are made relative to this root (``12/fs:11/fs:...``, see
mount.py), which fits the kernel's one-page limit up to overlay's own limit of 500 layers.

Consistency between the database and the directories, with any number of processes at once: every
write runs in one ``BEGIN IMMEDIATE`` transaction (one writer at a time, readers never blocked) and
the directory change that makes a snapshot visible (mkdir, or the rename of an unpacked layer) happens
inside that transaction, just before COMMIT.  A crash between the two leaves a directory without a
row, which nobody can see: :meth:`OverlaySnapshotter.cleanup` (and the next use of that id) removes
it.  Removal is the mirror image: the row goes and the directory is renamed into ``tmp`` in one
transaction, then deleted outside the lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import stat as statmod
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dockyard.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from dockyard.snapshots import Info, Kind
from dockyard.snapshots.mount import Mount

if TYPE_CHECKING:  # tarfs (tarfile, hashing, compression) is imported by the calls that need it
    from dockyard.snapshots.tarfs import ApplyResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT NOT NULL UNIQUE,
    kind    TEXT NOT NULL CHECK (kind IN ('active', 'committed', 'view')),
    parent  INTEGER REFERENCES snapshots(id),
    created REAL NOT NULL,
    size    INTEGER
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
"""
#: A fingerprint of _SCHEMA, stored in ``PRAGMA user_version`` once it is in place.
_SCHEMA_VERSION = zlib.crc32(_SCHEMA.encode()) & 0x7FFFFFFF or 1

_CHAIN = """
WITH RECURSIVE chain(id, parent, depth) AS (
    SELECT id, parent, 0 FROM snapshots WHERE id = ?
    UNION ALL
    SELECT s.id, s.parent, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent
)
SELECT id FROM chain ORDER BY depth
"""

_INFO = """
SELECT s.name, s.kind, p.name, s.created, s.size FROM snapshots s
LEFT JOIN snapshots p ON p.id = s.parent
"""

#: Seconds a writer waits for another process's write transaction before giving up.
BUSY_TIMEOUT = 60.0
WAL_AUTOCHECKPOINT = 100  # pages; short, so that each new process recovers the WAL fast (see metadata.db)
MAX_NAME = 1024


class OverlaySnapshotter:
    """:class:`~dockyard.snapshots.Snapshotter` over overlayfs; see the module docstring for layout.

    ``allow_devices`` is passed to :func:`~dockyard.snapshots.tarfs.apply_layer` (device nodes in
    layers are refused by default).  Each thread uses one database connection of its own, opened on
    first use and kept for the next calls (opening one and closing it, which checkpoints the WAL,
    per call cost more than the calls); a nested call inside a transaction gets a fresh one, and a
    forked child opens its own and never touches (or closes) the ones it inherited.  So an instance
    may be shared by threads and survives ``fork``.
    """

    def __init__(self, root: Path, *, allow_devices: bool = False) -> None:
        self.root = Path(root).absolute()
        if any(c in str(self.root) for c in ",:\\"):
            # overlay's option syntax: these would split lowerdir/upperdir paths
            raise InvalidArgument(f"snapshotter root {str(self.root)!r} must not contain ',', ':' or '\\'")
        self.allow_devices = allow_devices
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(mode=0o700, exist_ok=True)
        self._db_path = self.root / "metadata.db"
        self._local = threading.local()
        self._inherited: list[sqlite3.Connection] = []
        conn = self._conn()
        # journal_mode=WAL is stored in the file; the schema is checked by its version number, so
        # an existing database costs one read here, not a write transaction.
        if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # -- database plumbing ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._db_path, timeout=BUSY_TIMEOUT, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one in a forked child: the parent's stay untouched)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            if conn is not None:
                self._inherited.append(conn)  # closing it here could checkpoint under the parent
            conn = local.conn = self._connect()
            local.pid = os.getpid()
        return conn

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction; IMMEDIATE for writes so concurrent writers queue instead of deadlocking."""
        conn = self._conn()
        nested = conn.in_transaction
        if nested:  # a call inside another call's transaction: a connection of its own, as before
            conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if nested:
                conn.close()

    @staticmethod
    def _row(db: sqlite3.Connection, name: str) -> tuple[int, str, int | None] | None:
        row = db.execute("SELECT id, kind, parent FROM snapshots WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def _need(self, db: sqlite3.Connection, name: str) -> tuple[int, str, int | None]:
        row = self._row(db, name)
        if row is None:
            raise NotFound(f"snapshot {name!r} not found")
        return row

    def _parent_id(self, db: sqlite3.Connection, parent: str | None) -> int | None:
        if parent is None:
            return None
        row = self._row(db, parent)
        if row is None:
            raise NotFound(f"parent snapshot {parent!r} not found")
        if row[1] != "committed":
            raise FailedPrecondition(f"parent snapshot {parent!r} is {row[1]}, not committed")
        return row[0]

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not name or len(name) > MAX_NAME or "\x00" in name:
            raise InvalidArgument(f"invalid snapshot key or name {name!r}")

    def _dir(self, sid: int) -> Path:
        return self.root / str(sid)

    def _insert(
        self, db: sqlite3.Connection, name: str, kind: Kind, parent_id: int | None, size: int | None
    ) -> int:
        cur = db.execute(
            "INSERT INTO snapshots (name, kind, parent, created, size) VALUES (?, ?, ?, ?, ?)",
            (name, kind, parent_id, time.time(), size),
        )
        sid = cur.lastrowid
        assert sid is not None
        orphan = self._dir(sid)
        if os.path.lexists(orphan):  # left by a crash between rename/mkdir and COMMIT
            shutil.rmtree(orphan)
        return sid

    # -- mounts -----------------------------------------------------------------------------

    def _mounts(self, db: sqlite3.Connection, sid: int, kind: str, parent_id: int | None) -> list[Mount]:
        lowers = [] if parent_id is None else [r[0] for r in db.execute(_CHAIN, (parent_id,))]
        own = self._dir(sid)
        lowerdir = ":".join(str(self._dir(i) / "fs") for i in lowers)  # topmost first
        if kind == "active":
            if not lowers:
                return [Mount("bind", str(own / "fs"), ["rbind", "rw"])]
            return [
                Mount(
                    "overlay",
                    "overlay",
                    [
                        # No index/redirect/metacopy: the upper dir must stay a plain OCI-convertible
                        # diff (write_layer_from_upper) whatever the kernel's defaults are.
                        "index=off",
                        "redirect_dir=off",
                        "metacopy=off",
                        f"workdir={own / 'work'}",
                        f"upperdir={own / 'fs'}",
                        "lowerdir=" + lowerdir,
                    ],
                )
            ]
        if len(lowers) <= 1:
            source = own if not lowers else self._dir(lowers[0])
            return [Mount("bind", str(source / "fs"), ["rbind", "ro"])]
        return [Mount("overlay", "overlay", ["ro", "index=off", "lowerdir=" + lowerdir])]

    def _create(self, key: str, parent: str | None, kind: Kind) -> list[Mount]:
        self._check_name(key)
        with self._tx(write=True) as db:
            if self._row(db, key) is not None:
                raise AlreadyExists(f"snapshot {key!r} already exists")
            parent_id = self._parent_id(db, parent)
            sid = self._insert(db, key, kind, parent_id, None)
            own = self._dir(sid)
            try:
                own.mkdir(mode=0o700)
                (own / "fs").mkdir()
                os.chmod(own / "fs", 0o755)  # the container's / (umask-independent)
                if kind == "active":
                    (own / "work").mkdir(mode=0o700)
            except BaseException:
                shutil.rmtree(own, ignore_errors=True)
                raise
            return self._mounts(db, sid, kind, parent_id)

    def prepare(self, key: str, parent: str | None = None) -> list[Mount]:
        """New active snapshot: a read-write bind of an empty dir (no parent) or an overlay."""
        return self._create(key, parent, "active")

    def view(self, key: str, parent: str | None = None) -> list[Mount]:
        """New view: a read-only bind of the parent's layer (one layer) or a lowerdir-only overlay."""
        return self._create(key, parent, "view")

    def mounts(self, key: str, *, volatile: bool = False) -> list[Mount]:
        """The mounts that prepare()/view() returned for ``key``.

        ``volatile`` adds overlay's ``volatile`` option to an active snapshot's overlay (as podman
        does for ``--rm`` containers, containers/podman#10220): no sync of the upper dir, so
        unmounting takes a fraction of a millisecond instead of a filesystem sync.  The kernel marks
        a work dir mounted so (``work/work/incompat/volatile``) and refuses to mount it again; the
        caller declares the upper dir disposable, so the mark is cleared first (a start after a
        reboot mounts it a second time)."""
        with self._tx(write=False) as db:
            sid, kind, parent_id = self._need(db, key)
            if kind == "committed":
                raise FailedPrecondition(f"snapshot {key!r} is committed; create a view of it to mount it")
            mounts = self._mounts(db, sid, kind, parent_id)
        if volatile and kind == "active" and mounts[0].type == "overlay":
            shutil.rmtree(self._dir(sid) / "work" / "work" / "incompat", ignore_errors=True)
            mounts[0].options.append("volatile")
        return mounts

    # -- lifecycle --------------------------------------------------------------------------

    def commit(self, name: str, key: str) -> None:
        """Rename the active row to ``name``: its upper dir becomes the layer dir as it is, since
        overlay whiteouts and opaque xattrs are exactly how layer dirs store deletions."""
        self._check_name(name)
        with self._tx(write=False) as db:
            sid = self._need(db, key)[0]
        size = _disk_usage(self._dir(sid) / "fs", apparent=True)  # outside the write lock: may be slow
        with self._tx(write=True) as db:
            sid, kind, _ = self._need(db, key)
            if kind != "active":
                raise FailedPrecondition(f"snapshot {key!r} is {kind}; only active ones can be committed")
            if self._row(db, name) is not None:
                raise AlreadyExists(f"snapshot {name!r} already exists")
            db.execute(
                "UPDATE snapshots SET name = ?, kind = 'committed', size = ? WHERE id = ?", (name, size, sid)
            )
        shutil.rmtree(self._dir(sid) / "work", ignore_errors=True)

    def diff(self, key: str, out: BinaryIO) -> str:
        """The upper dir (or a committed layer dir) as an OCI layer tar.

        For a committed snapshot this regenerates a tar from the unpacked files: the content is
        the layer's, but the bytes (and so the digest) generally differ from the original blob.
        """
        with self._tx(write=False) as db:
            sid, kind, _ = self._need(db, key)
        if kind == "view":
            raise FailedPrecondition(f"snapshot {key!r} is a view: it has no changes")
        from dockyard.snapshots.tarfs import write_layer_from_upper

        return write_layer_from_upper(self._dir(sid) / "fs", out)

    def remove(self, key: str) -> None:
        """Delete a snapshot; the caller must have unmounted it (its files vanish immediately)."""
        trash: Path | None = None
        with self._tx(write=True) as db:
            sid = self._need(db, key)[0]
            child = db.execute("SELECT name FROM snapshots WHERE parent = ? LIMIT 1", (sid,)).fetchone()
            if child is not None:
                raise FailedPrecondition(
                    f"snapshot {key!r} has children (e.g. {child[0]!r}); remove them first"
                )
            db.execute("DELETE FROM snapshots WHERE id = ?", (sid,))
            if os.path.lexists(self._dir(sid)):
                trash = Path(tempfile.mkdtemp(prefix=f"rm-{sid}-", dir=self.root / "tmp"))
                os.rename(self._dir(sid), trash / "d")
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)  # leftovers (a mount inside?) go at cleanup()

    def apply(self, name: str, parent: str | None, stream: BinaryIO) -> ApplyResult:
        """Unpack into ``tmp/apply-*``, then rename to ``<id>`` in the transaction that adds the row.

        Two processes applying the same name both unpack; the first to commit wins and the other
        gets AlreadyExists and discards its copy, so readers never see a partial layer.
        """
        from dockyard.snapshots.tarfs import apply_layer

        self._check_name(name)
        with self._tx(write=False) as db:  # cheap early answers before unpacking anything
            if self._row(db, name) is not None:
                raise AlreadyExists(f"snapshot {name!r} already exists")
            self._parent_id(db, parent)
        staging = Path(tempfile.mkdtemp(prefix="apply-", dir=self.root / "tmp"))
        lock = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(lock, fcntl.LOCK_EX)  # tells cleanup() this staging dir is in use
        published: Path | None = None
        try:
            os.mkdir(staging / "fs", 0o755)
            os.chmod(staging / "fs", 0o755)
            result = apply_layer(
                stream, staging / "fs", allow_devices=self.allow_devices, overlay_whiteouts=True
            )
            with self._tx(write=True) as db:
                if self._row(db, name) is not None:
                    raise AlreadyExists(f"snapshot {name!r} already exists")
                sid = self._insert(db, name, "committed", self._parent_id(db, parent), result.size)
                os.rename(staging, self._dir(sid))
                published = self._dir(sid)
            return result
        except BaseException:
            if published is not None:  # renamed but the COMMIT failed: the directory is an orphan
                shutil.rmtree(published, ignore_errors=True)
            raise
        finally:
            os.close(lock)
            if published is None:
                shutil.rmtree(staging, ignore_errors=True)

    # -- inspection -------------------------------------------------------------------------

    @staticmethod
    def _info(row: tuple[str, str, str | None, float, int | None]) -> Info:
        name, kind, parent, created, size = row
        when = datetime.fromtimestamp(created, tz=timezone.utc)
        return Info(name, kind, parent, when, size)  # type: ignore[arg-type]

    def stat(self, key: str) -> Info:
        """Info for a key or name; NotFound."""
        with self._tx(write=False) as db:
            row = db.execute(_INFO + " WHERE s.name = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r} not found")
        return self._info(row)

    def walk(self) -> Iterator[Info]:
        """All snapshots in creation order (parents before children)."""
        with self._tx(write=False) as db:
            rows = db.execute(_INFO + " ORDER BY s.id").fetchall()
        for row in rows:
            yield self._info(row)

    def lower_dirs(self, name: str) -> list[Path]:
        """The layer directories of ``name``'s chain, topmost first (Docker's GraphDriver data).

        Informational only (``docker inspect``), so an unknown name gives ``[]``, not NotFound;
        mount through :meth:`view`/:meth:`prepare`.
        """
        with self._tx(write=False) as db:
            row = self._row(db, name)
            if row is None:
                return []
            return [self._dir(r[0]) / "fs" for r in db.execute(_CHAIN, (row[0],))]

    def usage(self, key: str) -> int:
        """Allocated bytes of the snapshot's own fs dir (hard links counted once)."""
        with self._tx(write=False) as db:
            sid = self._need(db, key)[0]
        return _disk_usage(self._dir(sid) / "fs")

    def cleanup(self) -> int:
        """Delete what crashes left behind; returns the number of directories removed.

        Orphan ``<id>`` directories (no row), finished removals (``tmp/rm-*``) and staging
        directories of applies that are no longer running (their flock is free).  Safe to run
        while other processes work.
        """
        doomed: list[Path] = []
        with self._tx(write=True) as db:
            ids = {row[0] for row in db.execute("SELECT id FROM snapshots")}
            for entry in os.scandir(self.root):
                if entry.name.isdigit() and int(entry.name) not in ids:
                    trash = Path(tempfile.mkdtemp(prefix=f"rm-{entry.name}-", dir=self.root / "tmp"))
                    os.rename(entry.path, trash / "d")
        for entry in os.scandir(self.root / "tmp"):
            path = Path(entry.path)
            if entry.name.startswith("rm-"):
                doomed.append(path)
            elif entry.name.startswith("apply-"):
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # an apply is running in it
                finally:
                    os.close(fd)
                doomed.append(path)
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        return len(doomed)


def _disk_usage(path: Path, *, apparent: bool = False) -> int:
    """Bytes below ``path``: allocated blocks (or, ``apparent``, file sizes); hard links once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    pending = [str(path)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except FileNotFoundError:
            continue
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            if apparent:
                total += st.st_size if statmod.S_ISREG(st.st_mode) else 0
            else:
                total += st.st_blocks * 512
            if statmod.S_ISDIR(st.st_mode):
                pending.append(entry.path)
    return total
