"""Container records in the metadata DB, and the per-container directory.

Per container, under ``<dataroot>/containers/<id>/``::

    bundle/config.json     the OCI runtime config (written at every start)
    bundle/rootfs/         mount point of the container's overlay root filesystem
    bundle/pidfile, bundle/conmon.pid, ctl/winsz fifos (conmon)
    exits/<id>             exit code written by conmon
    persist/               conmon's persist dir (oom marker)
    ctr.log                the container's log (k8s-file format, written by conmon)
    hostname, hosts, resolv.conf   bind-mounted into the container
    lock                   flock held while a process changes the container's lifecycle

State transitions are conditional updates on ``generation`` (incremented at every start), so the
exit of generation N recorded by conmon's exit command, by ``dockyard stop`` and by a reconciling
``ps`` all land once, and a late record for an old generation never clobbers a newer run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.containers.model import ContainerSpec
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.metadata.db import MetadataDB

ACTIVE = ("running", "paused", "restarting")
RUNNING = ("running", "paused")  # a run whose process may still be alive (ACTIVE but "restarting")


@dataclass
class ContainerRecord:
    """A container as the database has it: its spec and the state of its current run."""

    id: str
    name: str
    image_id: str
    created: float
    state: str                 # created | running | paused | restarting | exited | dead | removing
    spec: ContainerSpec
    pid: int = 0
    conmon_pid: int = 0
    exit_code: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    restart_count: int = 0
    oom_killed: bool = False
    error: str = ""
    health: dict[str, Any] | None = None
    stopped_by_user: bool = False
    generation: int = 0
    exit_handled: int = 0

    @classmethod
    def from_row(cls, row) -> ContainerRecord:
        d = dict(row)
        d["spec"] = ContainerSpec.from_dict(json.loads(d["spec"]))
        d["oom_killed"] = bool(d["oom_killed"])
        d["stopped_by_user"] = bool(d["stopped_by_user"])
        d["health"] = json.loads(d["health"]) if d["health"] else None
        return cls(**d)

    @property
    def running(self) -> bool:
        return self.state in ACTIVE


class ContainerStore:
    def __init__(self, db: MetadataDB, root: Path) -> None:
        self.db = db
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def dir(self, cid: str) -> Path:
        return self.root / cid

    # -- lookup --------------------------------------------------------------------------------
    def get(self, name_or_id: str) -> ContainerRecord:
        """By full ID, unique ID prefix or name (with or without the leading "/"), as Docker does."""
        rec = self.find(name_or_id)
        if rec is None:
            raise NotFound(f"No such container: {name_or_id}")
        return rec

    def find(self, name_or_id: str) -> ContainerRecord | None:
        conn = self.db.read()
        key = name_or_id.lstrip("/")
        if not key:
            return None
        row = conn.execute("SELECT * FROM containers WHERE id=?", (key,)).fetchone()
        if row is None:
            row = conn.execute("SELECT * FROM containers WHERE name=?", (key,)).fetchone()
        if row is None and all(c in "0123456789abcdef" for c in key):
            rows = conn.execute(
                "SELECT * FROM containers WHERE id >= ? AND id < ?", (key, key + "g")
            ).fetchall()
            if len(rows) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {key}")
            row = rows[0] if rows else None
        return ContainerRecord.from_row(row) if row else None

    def list(self) -> list[ContainerRecord]:
        rows = self.db.read().execute("SELECT * FROM containers ORDER BY created DESC").fetchall()
        return [ContainerRecord.from_row(r) for r in rows]

    # -- changes -------------------------------------------------------------------------------
    def add(self, spec: ContainerSpec) -> ContainerRecord:
        with self.db.write() as conn:
            other = conn.execute("SELECT id FROM containers WHERE name=?", (spec.name,)).fetchone()
            if other:
                raise Conflict(
                    f'Conflict. The container name "/{spec.name}" is already in use by container '
                    f'"{other["id"]}". You have to remove (or rename) that container to be able to reuse that name.'
                )
            conn.execute(
                "INSERT INTO containers (id, name, image_id, created, state, spec) VALUES (?, ?, ?, ?, ?, ?)",
                (spec.id, spec.name, spec.image_id, spec.created, "created", json.dumps(spec.to_dict())),
            )
        return self.get(spec.id)

    def update(self, cid: str, *, where_generation: int | None = None, where_states: tuple[str, ...] | None = None,
               where_not_stopped: bool = False, **values: Any) -> bool:
        """Conditional update; returns whether a row changed."""
        if "spec" in values and isinstance(values["spec"], ContainerSpec):
            values["spec"] = json.dumps(values["spec"].to_dict())
        if "health" in values and not isinstance(values["health"], str):
            values["health"] = json.dumps(values["health"]) if values["health"] is not None else ""
        for k in ("oom_killed", "stopped_by_user"):
            if k in values:
                values[k] = int(bool(values[k]))
        sets = ", ".join(f"{k}=?" for k in values)
        q = f"UPDATE containers SET {sets} WHERE id=?"
        args: list[Any] = [*values.values(), cid]
        if where_generation is not None:
            q += " AND generation=?"
            args.append(where_generation)
        if where_not_stopped:
            q += " AND stopped_by_user=0"
        if where_states is not None:
            q += f" AND state IN ({','.join('?' * len(where_states))})"
            args.extend(where_states)
        with self.db.write() as conn:
            return conn.execute(q, args).rowcount > 0

    def rename(self, cid: str, new_name: str) -> None:
        with self.db.write() as conn:
            other = conn.execute("SELECT id FROM containers WHERE name=?", (new_name,)).fetchone()
            if other and other["id"] != cid:
                raise Conflict(
                    f'Error when allocating new name: Conflict. The container name "/{new_name}" is already in '
                    f'use by container "{other["id"]}". You have to remove (or rename) that container to be able '
                    "to reuse that name."
                )
            row = conn.execute("SELECT spec FROM containers WHERE id=?", (cid,)).fetchone()
            spec = json.loads(row["spec"])
            spec["name"] = new_name
            conn.execute("UPDATE containers SET name=?, spec=? WHERE id=?", (new_name, json.dumps(spec), cid))

    def delete(self, cid: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM containers WHERE id=?", (cid,))
        shutil.rmtree(self.dir(cid), ignore_errors=True)

    @contextmanager
    def locked(self, cid: str) -> Iterator[None]:
        """Serialise lifecycle changes of one container across processes."""
        d = self.dir(cid)
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def now() -> float:
    return time.time()
