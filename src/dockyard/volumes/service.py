"""The volume service: volume records in SQLite, the drivers behind them, and containers' use of them.

Every volume has a row in ``volumes`` (name, driver, labels, options with secrets masked, created)
and its data with its driver (:mod:`dockyard.volumes.registry`).  A volume exists for dockyard iff
its row does: ``create`` asks the driver first and writes the row only when the driver succeeded,
so a failed create leaves nothing; ``remove`` asks the driver, then deletes the row.

Containers use volumes in two steps, which are different things in Docker too:

- *reference* (``volume_refs`` row) from container create to container rm: ``volume rm`` and
  ``prune`` refuse a referenced volume (``remove NAME: volume is in use - [ID]``), ``ls
  --filter dangling=true`` shows unreferenced ones, ``system df`` counts links;
- *mount* (``volume_refs.mounted``) for each run: :meth:`mount_container` asks each driver to mount
  (ref = container id) before the container starts and :meth:`unmount_container` releases them when
  it stops.  The ``mounted`` flag is claimed in a transaction, so the exit recorded by conmon, by
  ``stop`` and by ``rm`` unmounts exactly once.

Create and remove of volumes, and adding references, run under one flock (``<dataroot>/volumes.lock``)
so that a volume being removed cannot gain a user meanwhile; mounts take only the driver's own lock.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from dockyard.containers.model import MountSpec
from dockyard.errors import Conflict, DockyardError, FailedPrecondition, InvalidArgument, NotFound
from dockyard.metadata.db import MetadataDB
from dockyard.volumes import VolumeDriver
from dockyard.volumes.registry import canonical, get_driver

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
MASK = "********"
_SECRET_KEY = re.compile(r"(key|secret|password|passwd|token|sas|credential|connection_string)", re.IGNORECASE)
_PASSWORD_IN_O = re.compile(r"((?:^|,)(?:password|pass|secret)=)([^,]*)", re.IGNORECASE)


def mask_options(opts: Mapping[str, str]) -> dict[str, str]:
    """Options as they may be shown and stored: secret values replaced by ``********``."""
    out = {}
    for k, v in opts.items():
        if _SECRET_KEY.search(k) and v:
            out[k] = MASK
        elif k == "o":
            out[k] = _PASSWORD_IN_O.sub(lambda m: m.group(1) + MASK, v)
        else:
            out[k] = v
    return out


def _wrap(op: str, name: str, exc: DockyardError) -> DockyardError:
    """Docker's OpErr wording: ``create NAME: <cause>``, keeping the error kind."""
    err = type(exc)(f"{op} {name}: {exc}")
    err.exit_code = exc.exit_code
    return err


@dataclass
class VolumeRecord:
    name: str
    driver: str
    created: float
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)   # secrets masked
    mountpoint: str = ""
    scope: str = "local"
    status: dict[str, object] = field(default_factory=dict)
    refs: list[str] = field(default_factory=list)            # ids of the containers using it

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels


@dataclass
class VolumeUsage:
    volume: VolumeRecord
    size: int            # bytes; -1 when the driver cannot tell (not local)
    links: int           # containers referencing it


class VolumeService:
    def __init__(self, db: MetadataDB, root: Path) -> None:
        self.db = db
        self.root = Path(root)

    def driver(self, name: str) -> VolumeDriver:
        return get_driver(name, self.root)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "volumes.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- records -------------------------------------------------------------------------------
    def _record(self, row) -> VolumeRecord:
        refs = [r["container"] for r in self.db.read().execute(
            "SELECT container FROM volume_refs WHERE volume=? ORDER BY container", (row["name"],))]
        return VolumeRecord(name=row["name"], driver=row["driver"], created=row["created"],
                            labels=json.loads(row["labels"]), options=json.loads(row["options"]),
                            mountpoint=row["mountpoint"], scope=row["scope"], refs=refs)

    def find(self, name: str) -> VolumeRecord | None:
        row = self.db.read().execute("SELECT * FROM volumes WHERE name=?", (name,)).fetchone()
        return self._record(row) if row else None

    def get(self, name: str) -> VolumeRecord:
        rec = self.find(name)
        if rec is None:
            raise NotFound(f"get {name}: no such volume")
        return rec

    def all(self) -> list[VolumeRecord]:
        return [self._record(r) for r in self.db.read().execute("SELECT * FROM volumes ORDER BY name")]

    # -- create / remove -----------------------------------------------------------------------
    def create(self, name: str = "", driver: str = "local", opts: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> VolumeRecord:
        """Create (or return the existing volume of that name and driver).  No name: 64 hex digits.

        Raises InvalidArgument (bad name/option, unknown driver), Conflict (the name is taken by
        another driver), or the driver's error -- all worded ``create NAME: <cause>``."""
        with self._locked():
            return self._create(name or os.urandom(32).hex(), driver or "local", dict(opts or {}),
                                dict(labels or {}))

    def _create(self, name: str, driver: str, opts: dict[str, str], labels: dict[str, str]) -> VolumeRecord:
        existing = self.find(name)
        if existing is not None:
            if canonical(existing.driver) != canonical(driver):
                raise Conflict(f"create {name}: a volume with the name {name} already exists with driver "
                               f"{existing.driver!r}: volume name must be unique")
            return existing
        try:
            drv = self.driver(driver)
            vol = drv.create(name, opts)
        except DockyardError as exc:
            raise _wrap("create", name, exc) from None
        try:
            with self.db.write() as conn:
                conn.execute("INSERT INTO volumes (name, driver, created, labels, options, mountpoint, scope) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (name, driver, vol.created or time.time(), json.dumps(labels),
                              json.dumps(mask_options(opts)), vol.mountpoint, vol.scope or "local"))
        except BaseException:
            try:
                drv.remove(name)
            except DockyardError:
                pass
            raise
        return self.get(name)

    def remove(self, name: str, *, force: bool = False) -> None:
        """Remove an unused volume and its data.  ``force``: a missing volume is no error, and the
        record goes even when the driver fails.  An in-use volume is refused either way."""
        with self._locked():
            rec = self.find(name)
            if rec is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            self._remove(rec, force=force)

    def _remove(self, rec: VolumeRecord, *, force: bool = False) -> None:
        if rec.refs:
            raise Conflict(f"remove {rec.name}: volume is in use - [{', '.join(rec.refs)}]")
        try:
            self.driver(rec.driver).remove(rec.name)
        except NotFound:
            pass
        except DockyardError as exc:
            if not force:
                raise _wrap("remove", rec.name, exc) from None
        with self.db.write() as conn:
            conn.execute("DELETE FROM volumes WHERE name=?", (rec.name,))

    # -- queries -------------------------------------------------------------------------------
    def list(self, filters: Mapping[str, Sequence[str]] | None = None) -> builtins.list[VolumeRecord]:
        """Volumes matching Docker's filters: dangling, driver, label (k or k=v), name (regexp)."""
        f = {k: list(v) for k, v in (filters or {}).items()}
        for k in f:
            if k not in ("dangling", "driver", "label", "name"):
                raise InvalidArgument(f"invalid filter '{k}'")
        dangling = None
        for v in f.get("dangling", []):
            if v.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={v}'")
            dangling = v.lower() in ("true", "1")
        out = []
        for rec in self.all():
            if dangling is not None and (not rec.refs) != dangling:
                continue
            if f.get("driver") and rec.driver not in f["driver"] and canonical(rec.driver) not in f["driver"]:
                continue
            if f.get("name") and not any(_search(n, rec.name) for n in f["name"]):
                continue
            if not labels_match(rec.labels, f.get("label", [])):
                continue
            out.append(rec)
        return out

    def inspect(self, name: str) -> VolumeRecord:
        """The record with what the driver knows now (a plugin's mountpoint and status)."""
        rec = self.get(name)
        if canonical(rec.driver) != "local":
            try:
                vol = self.driver(rec.driver).get(name)
                rec.mountpoint = vol.mountpoint or rec.mountpoint
                rec.status = dict(vol.status)
                rec.scope = vol.scope or rec.scope
            except DockyardError:
                pass
        return rec

    def size(self, rec: VolumeRecord) -> int:
        if canonical(rec.driver) != "local":
            return -1
        try:
            return self.driver(rec.driver).size(rec.name)  # type: ignore[attr-defined]
        except (DockyardError, OSError):
            return 0

    def usage(self) -> builtins.list[VolumeUsage]:
        return [VolumeUsage(r, self.size(r), len(r.refs)) for r in self.all()]

    def prune(self, *, all_: bool = False, labels: Sequence[str] = ()) -> tuple[builtins.list[str], int]:
        """Remove unused local volumes: anonymous ones, or all with ``all_`` (Docker 23+).
        ``labels``: Docker's ``label=k[=v]`` and ``label!=k[=v]`` filters (prefix ``!`` = negated)."""
        removed: builtins.list[str] = []
        reclaimed = 0
        with self._locked():
            for rec in self.all():
                if rec.refs or canonical(rec.driver) != "local" or not (all_ or rec.anonymous):
                    continue
                if not labels_match(rec.labels, [x for x in labels if not x.startswith("!")]):
                    continue
                if any(labels_match(rec.labels, [x[1:]]) for x in labels if x.startswith("!")):
                    continue
                size = max(self.size(rec), 0)
                try:
                    self._remove(rec)
                except DockyardError:
                    continue
                removed.append(rec.name)
                reclaimed += size
        return removed, reclaimed

    def sync(self, name: str) -> None:
        """Ask the driver to push/pull now (drivers with a remote store); a no-op for others."""
        rec = self.get(name)
        drv = self.driver(rec.driver)
        fn = getattr(drv, "sync", None)
        if fn is not None:
            try:
                fn(name)
            except DockyardError as exc:
                raise _wrap("sync", name, exc) from None

    # -- containers ----------------------------------------------------------------------------
    def attach(self, cid: str, mounts: Sequence[MountSpec], default_driver: str = "") -> builtins.list[MountSpec]:
        """Container create: make the missing volumes (anonymous ones labelled as such), reference
        them all, and return the mounts with names and drivers filled in.  All or nothing."""
        out: builtins.list[MountSpec] = []
        made: builtins.list[str] = []
        with self._locked():
            try:
                for m in mounts:
                    if m.type != "volume":
                        out.append(m)
                        continue
                    m = replace(m, name=m.name or os.urandom(32).hex())
                    rec = self.find(m.name)
                    if rec is None:
                        labels = {**m.labels, **({ANONYMOUS_LABEL: ""} if m.anonymous else {})}
                        rec = self._create(m.name, m.driver or default_driver or "local", m.driver_opts, labels)
                        made.append(rec.name)
                    elif m.driver and canonical(m.driver) != canonical(rec.driver):
                        raise Conflict(f"create {m.name}: a volume with the name {m.name} already exists with "
                                       f"driver {rec.driver!r}: volume name must be unique")
                    with self.db.write() as conn:
                        conn.execute("INSERT OR IGNORE INTO volume_refs (volume, container) VALUES (?, ?)",
                                     (rec.name, cid))
                    out.append(replace(m, source=m.name, driver=rec.driver))
            except BaseException:
                self._release(cid, made)
                raise
        return out

    def detach(self, cid: str, remove: Sequence[str] = ()) -> None:
        """Container rm: drop its references; remove the volumes named in ``remove`` (its anonymous
        ones, for ``rm -v``/``--rm``) unless another container still uses them."""
        self.unmount_container(cid)
        with self._locked():
            self._release(cid, remove)

    def _release(self, cid: str, remove: Sequence[str]) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM volume_refs WHERE container=?", (cid,))
        for name in remove:
            rec = self.find(name)
            if rec is not None and not rec.refs:
                try:
                    self._remove(rec, force=True)
                except DockyardError:
                    pass

    def mount_container(self, cid: str, mounts: Sequence[MountSpec], rootfs: Path | None = None) -> builtins.list[MountSpec]:
        """Container start: mount every volume (ref = ``cid``), fill new empty ones from the image
        (``rootfs`` mounted), and return the mounts with volume sources as host paths.  On failure
        the volumes mounted so far are unmounted and the error names the volume and the cause."""
        from dockyard.volumes.copyup import copy_up

        out: builtins.list[MountSpec] = []
        paths: dict[str, Path] = {}
        try:
            for m in mounts:
                if m.type == "bind" and m.create_source and not os.path.exists(m.source):
                    os.makedirs(m.source, 0o755, exist_ok=True)  # -v /new/dir:/x, as Docker does
                if m.type != "volume":
                    out.append(m)
                    continue
                try:
                    if m.name not in paths:
                        rec = self.get(m.name)
                        paths[m.name] = self.driver(rec.driver).mount(m.name, cid)
                        with self.db.write() as conn:
                            conn.execute("INSERT OR IGNORE INTO volume_refs (volume, container) VALUES (?, ?)",
                                         (m.name, cid))
                            conn.execute("UPDATE volume_refs SET mounted=1 WHERE volume=? AND container=?",
                                         (m.name, cid))
                    path = paths[m.name]
                    if rootfs is not None and not m.nocopy:
                        copy_up(Path(rootfs), m.target, path)
                except OSError as exc:
                    raise FailedPrecondition(f"error while mounting volume '{m.name}': {exc.strerror or exc}") from None
                except DockyardError as exc:
                    err = type(exc)(f"error while mounting volume '{m.name}': {exc}")
                    raise err from None
                out.append(replace(m, source=str(path)))
        except BaseException:
            self.unmount_container(cid)
            raise
        return out

    def unmount_container(self, cid: str) -> builtins.list[str]:
        """Release every mount ``cid`` holds (exactly once across processes); returns the errors
        (best effort: an unreachable plugin must not block recording an exit)."""
        errors = []
        rows = self.db.read().execute(
            "SELECT r.volume, v.driver FROM volume_refs r JOIN volumes v ON v.name = r.volume "
            "WHERE r.container=? AND r.mounted=1", (cid,)).fetchall()
        for row in rows:
            with self.db.write() as conn:
                claimed = conn.execute("UPDATE volume_refs SET mounted=0 WHERE volume=? AND container=? "
                                       "AND mounted=1", (row["volume"], cid)).rowcount
            if not claimed:
                continue
            try:
                self.driver(row["driver"]).unmount(row["volume"], cid)
            except DockyardError as exc:
                errors.append(f"error while unmounting volume '{row['volume']}': {exc}")
        return errors

    def host_path(self, name: str) -> Path | None:
        """Where a volume's data is on the host now (None: a plugin volume not mounted)."""
        rec = self.find(name)
        if rec is None:
            return None
        try:
            return self.driver(rec.driver).path(name)
        except DockyardError:
            return Path(rec.mountpoint) if rec.mountpoint else None


def _search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def labels_match(labels: Mapping[str, str], wanted: Sequence[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True
