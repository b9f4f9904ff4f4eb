"""SQLite metadata: images, tags, repository digests, layer blobs, containers, volumes, networks, leases.

The database is ``<dataroot>/dockyard.db`` in WAL mode, so readers never wait for a writer and
several dockyard processes work at once.  Every write runs in ``BEGIN IMMEDIATE`` (the write lock is
taken up front, so two writers never deadlock upgrading a read lock) with a generous busy timeout.

Schema (version 1)::

    images(id PK = config digest, manifest_digest, manifest_media_type, size, created, added, parent,
           comment)
    image_blobs(image_id, digest)              every blob an image needs: manifest, config, layers
    tags(name PK = normalised "domain/path:tag", image_id, tagged)
    repo_digests(name, digest, image_id)       "domain/path" + manifest digest -> image
    layer_blobs(blob_digest PK, diff_id, media_type, size)
    unpacked(chain_id PK, size)                 layers unpacked into the snapshotter, with their size
    containers(id PK, name UNIQUE, image_id, created, state, spec JSON, pid, conmon_pid, exit_code,
               started_at, finished_at, restart_count, oom_killed, error, health JSON, stopped_by_user,
               generation, exit_handled)        generation counts starts; exit records carry it;
                                                exit_handled = the last generation whose --rm/restart
                                                policy was applied (exactly once)
    volumes(name PK, driver, created, labels JSON, options JSON (secrets masked), mountpoint, scope)
    volume_refs(volume, container, mounted)    a container uses a volume from create to rm (rm and
                                                prune refuse a referenced volume); mounted = the
                                                container's run holds a driver mount of it
    networks(id PK, name UNIQUE, driver, created, subnet, gateway, ip_range, internal, labels JSON,
             options JSON, interface, dns_enabled)
    endpoints(container_id, network_id, endpoint_id, ip, mac, interface, aliases JSON)
                                                a container's address on a network, from create (or
                                                connect) to rm (or disconnect); UNIQUE(network_id, ip)
    port_reservations(host_ip, host_port, protocol PK, container_id, container_port)
                                                published ports of running containers
    leases(id PK, created, expires); lease_resources(lease_id, kind, key)
    build_cache(key PK, image_id, parent, created_by, created, last_used)
                                                the builder's cache: hash of (parent image, step,
                                                args, sources) -> the image the step made

Leases protect content a process has written but not yet referenced from a concurrent garbage
collection: take a lease, add the blobs, reference them from an image, release the lease.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import Unavailable

#: Pages in the WAL before a commit checkpoints it (SQLite's default is 1000, ~4 MiB).  Every
#: dockyard command is a new process, and the first connection of a process rebuilds the WAL index
#: by reading every frame of the WAL ("recovery"): at 1000 pages that was ~9 ms per database per
#: command.  A short WAL makes recovery cheap; the price is a checkpoint every few commands.
WAL_AUTOCHECKPOINT = 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS image_blobs (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE INDEX IF NOT EXISTS image_blobs_digest ON image_blobs(digest);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id),
    tagged REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS repo_digests (
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (name, digest)
);
CREATE TABLE IF NOT EXISTS layer_blobs (
    blob_digest TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS layer_blobs_diff ON layer_blobs(diff_id);
CREATE TABLE IF NOT EXISTS unpacked (
    chain_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    conmon_pid INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL DEFAULT 0,
    finished_at REAL NOT NULL DEFAULT 0,
    restart_count INTEGER NOT NULL DEFAULT 0,
    oom_killed INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    health TEXT NOT NULL DEFAULT '',
    stopped_by_user INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0,
    exit_handled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    created REAL NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    mountpoint TEXT NOT NULL DEFAULT '',
    scope TEXT NOT NULL DEFAULT 'local'
);
CREATE TABLE IF NOT EXISTS volume_refs (
    volume TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
    container TEXT NOT NULL,
    mounted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (volume, container)
);
CREATE INDEX IF NOT EXISTS volume_refs_container ON volume_refs(container);
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    created REAL NOT NULL,
    subnet TEXT NOT NULL DEFAULT '',
    gateway TEXT NOT NULL DEFAULT '',
    ip_range TEXT NOT NULL DEFAULT '',
    internal INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    interface TEXT NOT NULL DEFAULT '',
    dns_enabled INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS endpoints (
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks(id),
    endpoint_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    mac TEXT NOT NULL,
    interface TEXT NOT NULL,
    aliases TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (container_id, network_id),
    UNIQUE (network_id, ip)
);
CREATE TABLE IF NOT EXISTS port_reservations (
    host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    container_id TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (host_ip, host_port, protocol)
);
CREATE INDEX IF NOT EXISTS port_reservations_container ON port_reservations(container_id);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_resources (
    lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (lease_id, kind, key)
);
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    last_used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(image_id);
"""

# Columns added after a table first shipped: (table, column, declaration).  New tables need nothing
# here (CREATE TABLE IF NOT EXISTS); a new column of an existing table must be listed.
ADDED_COLUMNS: list[tuple[str, str, str]] = [
    ("containers", "exit_handled", "INTEGER NOT NULL DEFAULT 0"),
]


def _schema_version() -> int:
    """A fingerprint of SCHEMA and ADDED_COLUMNS, kept in ``PRAGMA user_version`` once applied:
    any change to either makes the next process apply them again (CREATE ... IF NOT EXISTS)."""
    return zlib.crc32(repr((SCHEMA, ADDED_COLUMNS)).encode()) & 0x7FFFFFFF or 1


@dataclass(frozen=True)
class ImageRow:
    """An image's row: its ID (the config digest), its manifest, size, times, parent and comment."""

    id: str
    manifest_digest: str
    manifest_media_type: str
    size: int
    created: str
    added: float
    parent: str
    comment: str


class MetadataDB:
    """Access to dockyard.db.  One connection per thread; cheap to construct."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A database already set up for this SCHEMA (its fingerprint in user_version) costs one
        # read here instead of a write transaction per process; WAL mode is stored in the file.
        version = _schema_version()
        if self._conn().execute("PRAGMA user_version").fetchone()[0] == version:
            return
        self._conn().execute("PRAGMA journal_mode=WAL")
        with self.write() as conn:
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            for table, column, decl in ADDED_COLUMNS:  # data roots made by earlier versions
                have = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            conn.execute(f"PRAGMA user_version={version}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot open metadata database {self.path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE): committed on success, rolled back on error."""
        conn = self._conn()
        if conn.in_transaction:  # nested: join the outer transaction
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def read(self) -> sqlite3.Connection:
        return self._conn()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- images --------------------------------------------------------------------------------
    def image(self, image_id: str) -> ImageRow | None:
        row = self.read().execute("SELECT * FROM images WHERE id=?", (image_id,)).fetchone()
        return ImageRow(**dict(row)) if row else None

    def images(self) -> list[ImageRow]:
        rows = self.read().execute("SELECT * FROM images ORDER BY added DESC").fetchall()
        return [ImageRow(**dict(r)) for r in rows]

    def images_by_prefix(self, prefix: str) -> list[str]:
        rows = self.read().execute(
            "SELECT id FROM images WHERE id >= ? AND id < ?", (prefix, prefix + "\uffff")
        ).fetchall()
        return [r["id"] for r in rows]

    def tags(self, image_id: str | None = None) -> list[tuple[str, str, float]]:
        if image_id is None:
            rows = self.read().execute("SELECT name, image_id, tagged FROM tags ORDER BY name").fetchall()
        else:
            rows = self.read().execute(
                "SELECT name, image_id, tagged FROM tags WHERE image_id=? ORDER BY name", (image_id,)
            ).fetchall()
        return [(r["name"], r["image_id"], r["tagged"]) for r in rows]

    def tag_target(self, name: str) -> str | None:
        row = self.read().execute("SELECT image_id FROM tags WHERE name=?", (name,)).fetchone()
        return row["image_id"] if row else None

    def repo_digests(self, image_id: str | None = None) -> list[tuple[str, str, str]]:
        q = "SELECT name, digest, image_id FROM repo_digests"
        args: tuple = ()
        if image_id is not None:
            q += " WHERE image_id=?"
            args = (image_id,)
        return [(r["name"], r["digest"], r["image_id"]) for r in self.read().execute(q + " ORDER BY name", args)]

    def digest_target(self, name: str, digest: str) -> str | None:
        row = self.read().execute(
            "SELECT image_id FROM repo_digests WHERE name=? AND digest=?", (name, digest)
        ).fetchone()
        return row["image_id"] if row else None

    def image_blobs(self, image_id: str) -> list[str]:
        rows = self.read().execute("SELECT digest FROM image_blobs WHERE image_id=?", (image_id,))
        return [r["digest"] for r in rows]

    # -- layers --------------------------------------------------------------------------------
    def layer_blob(self, blob_digest: str) -> tuple[str, str, int] | None:
        row = self.read().execute(
            "SELECT diff_id, media_type, size FROM layer_blobs WHERE blob_digest=?", (blob_digest,)
        ).fetchone()
        return (row["diff_id"], row["media_type"], row["size"]) if row else None

    def blobs_for_diff_id(self, diff_id: str) -> list[tuple[str, str, int]]:
        rows = self.read().execute(
            "SELECT blob_digest, media_type, size FROM layer_blobs WHERE diff_id=?", (diff_id,)
        )
        return [(r["blob_digest"], r["media_type"], r["size"]) for r in rows]

    def record_layer_blob(self, blob_digest: str, diff_id: str, media_type: str, size: int) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO layer_blobs VALUES (?, ?, ?, ?)", (blob_digest, diff_id, media_type, size)
            )

    # -- leases --------------------------------------------------------------------------------
    @contextmanager
    def lease(self, ttl: float = 6 * 3600) -> Iterator[Lease]:
        """Hold a lease for the duration of the block; resources added to it survive GC."""
        lease_id = uuid.uuid4().hex
        now = time.time()
        with self.write() as conn:
            conn.execute("INSERT INTO leases VALUES (?, ?, ?)", (lease_id, now, now + ttl))
        try:
            yield Lease(self, lease_id)
        finally:
            with self.write() as conn:
                conn.execute("DELETE FROM leases WHERE id=?", (lease_id,))

    def leased(self, kind: str) -> set[str]:
        rows = self.read().execute(
            "SELECT key FROM lease_resources r JOIN leases l ON l.id = r.lease_id "
            "WHERE r.kind=? AND l.expires > ?",
            (kind, time.time()),
        )
        return {r["key"] for r in rows}


    def lease_resources(self, lease_id: str, kind: str) -> list[str]:
        rows = self.read().execute(
            "SELECT key FROM lease_resources WHERE lease_id=? AND kind=?", (lease_id, kind)
        )
        return [r["key"] for r in rows]


class Lease:
    def __init__(self, db: MetadataDB, lease_id: str) -> None:
        self.db = db
        self.id = lease_id

    def add(self, kind: str, key: str) -> None:
        with self.db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO lease_resources VALUES (?, ?, ?)", (self.id, kind, key))
