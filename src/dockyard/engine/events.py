"""The event log: what happened to containers, images, volumes and networks, for ``docker events``.

dockyard has no daemon to keep events in memory, so events are an append-only file that every
dockyard process writes (the facade emits an event when an operation has taken effect) and any
process reads: ``dockyard events``, the Engine API's ``/events`` and its container waits.

On-disk layout (in the data root)::

    events.log      one JSON object per line, appended with O_APPEND under a flock:
                    {"t": <time in ns>, "type": "container", "action": "die", "id": "<actor id>",
                     "attrs": {"name": "web", "image": "busybox", "exitCode": "0", ...}}
    events.log.1    the previous file: when events.log passes MAX_BYTES it is renamed here (one
                    generation is kept, as Docker keeps a bounded number of events)

A line is written with one ``write(2)`` on an O_APPEND descriptor, so concurrent writers never
interleave; readers skip a torn or foreign line.  Readers follow the file with a :class:`Cursor`
(an open descriptor + offset), which notices rotation by the inode of the path and drains the old
file before switching.  Writers in this process also tell in-process listeners
(:meth:`EventLog.add_listener`), so a server waiting for an event it caused itself wakes at once
instead of at its next poll.

Errors: emitting never fails an operation (an unwritable log loses the event, logged at debug);
reading raises InvalidArgument for bad filters.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.engine.options import Filters

MAX_BYTES = 4 << 20
POLL_INTERVAL = 0.1
FILTER_KEYS = {"container", "event", "image", "label", "network", "type", "volume", "scope", "daemon"}
TYPES = ("container", "image", "volume", "network", "daemon", "plugin", "builder")


def _log():
    import logging  # only when something goes wrong: keeps logging off every command's start-up

    return logging.getLogger("dockyard.events")


@dataclass(frozen=True)
class Event:
    """One event: ``type`` (container, image, volume, network), ``action`` (create, start, die, ...),
    the actor's id and its attributes (name, image, labels, exitCode, ...), the time in ns."""

    type: str
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0

    @property
    def key(self) -> tuple[int, str, str, str]:
        return self.time_nano, self.type, self.action, self.actor_id

    def to_line(self) -> bytes:
        return json.dumps({"t": self.time_nano, "type": self.type, "action": self.action, "id": self.actor_id,
                           "attrs": self.attributes}, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> Event | None:
        try:
            d = json.loads(line)
            return cls(type=str(d["type"]), action=str(d["action"]), actor_id=str(d["id"]),
                       attributes={str(k): str(v) for k, v in (d.get("attrs") or {}).items()},
                       time_nano=int(d["t"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def event_view(ev: Event) -> dict[str, Any]:
    """Docker's events.Message shape (with the legacy status/id/from fields for containers and
    images, which docker-py and docker-compose 1.x still read)."""
    out: dict[str, Any] = {}
    if ev.type in ("container", "image"):
        out["status"] = ev.action
        out["id"] = ev.actor_id
        if ev.type == "container" and "image" in ev.attributes:
            out["from"] = ev.attributes["image"]
    out.update({"Type": ev.type, "Action": ev.action,
                "Actor": {"ID": ev.actor_id, "Attributes": dict(ev.attributes)},
                "scope": "local", "time": ev.time_nano // 1_000_000_000, "timeNano": ev.time_nano})
    return out


def matches(ev: Event, f: Filters) -> bool:
    """Docker's events filter (daemon/events/filter.go): AND across keys, OR within one; container,
    network and volume match the actor's id (prefix) or name, image the image id or name."""
    if not f.values:
        return True

    def fuzzy(key: str, *values: str) -> bool:
        wanted = f.get(key)
        return not wanted or any(v and (v == w or v.startswith(w)) for w in wanted for v in values)

    def exact(key: str, *values: str) -> bool:
        wanted = f.get(key)
        return not wanted or any(v and v == w for w in wanted for v in values)

    actions = f.get("event")
    if actions:
        if any(a in ("health_status", "exec_create", "exec_start") for a in actions):
            if not any(ev.action.startswith(a) for a in actions):
                return False
        elif ev.action not in actions:
            return False
    if not exact("type", ev.type) or not exact("scope", "local"):
        return False
    name = ev.attributes.get("name", "")
    if not fuzzy("container", ev.actor_id, name) or not fuzzy("network", ev.actor_id, name):
        return False
    if not exact("volume", ev.actor_id, name):
        return False
    if f.get("image"):
        image = name if ev.type == "image" else ev.attributes.get("image", "")
        if not exact("image", ev.actor_id, image, _strip_tag(ev.actor_id), _strip_tag(image)):
            return False
    for want in f.get("label"):
        k, eq, v = want.partition("=")
        if k not in ev.attributes or (eq and ev.attributes[k] != v):
            return False
    return True


def _strip_tag(ref: str) -> str:
    name, _, tag = ref.rpartition(":")
    return name if name and "/" not in tag else ref


def check_filters(f: Filters) -> None:
    f.check(FILTER_KEYS)
    from dockyard.errors import InvalidArgument

    for t in f.get("type"):
        if t not in TYPES:
            raise InvalidArgument(f"invalid filter 'type={t}'")


def parse_time_nano(value: str | float | None, now: float | None = None) -> int | None:
    """``--since``/``--until`` and the API's ``since``/``until``: Unix seconds (``1700000000`` or
    ``1700000000.000000001``), RFC 3339, or a duration before now (``10m``)."""
    if value is None or value == "":
        return None
    s = str(value)
    whole, dot, frac = s.partition(".")
    if whole.lstrip("-").isdigit() and (not dot or frac.isdigit()):
        return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    from dockyard.engine.container_io import parse_since

    t = parse_since(s, now)
    return None if t is None else int(t * 1_000_000_000)


class Cursor:
    """A reader positioned in the log; :meth:`poll` returns the events written since the last
    poll, following rotation.  Not thread-safe; close it (or use it as a context manager)."""

    def __init__(self, path: Path, *, at_end: bool = True) -> None:
        self.path = path
        self._fh = None
        self._ino = 0
        self._buf = b""
        self._open(at_end)

    def _open(self, at_end: bool) -> None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across polls; closed by close()
        except FileNotFoundError:
            self._fh, self._ino = None, 0
            return
        st = os.fstat(fh.fileno())
        self._fh, self._ino, self._buf = fh, st.st_ino, b""
        if at_end:
            fh.seek(0, os.SEEK_END)

    def _read(self) -> list[Event]:
        assert self._fh is not None
        data = self._fh.read()
        if not data:
            return []
        data = self._buf + data
        lines = data.split(b"\n")
        self._buf = lines.pop()
        return [ev for ev in map(Event.from_line, lines) if ev is not None]

    def poll(self) -> list[Event]:
        out: list[Event] = []
        if self._fh is None:
            self._open(at_end=False)
            if self._fh is None:
                return out
        out += self._read()
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return out
        if ino != self._ino:  # rotated: the old file is complete; continue with the new one
            self._fh.close()
            self._open(at_end=False)
            if self._fh is not None:
                out += self._read()
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventLog:
    """The events of one data root (``<root>/events.log``).  Thread-safe."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._listeners: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------------
    def emit(self, type: str, action: str, actor_id: str, attributes: dict[str, Any] | None = None) -> Event:
        """Record an event now; never raises (an event is not worth failing the operation for)."""
        attrs = {str(k): str(v) for k, v in (attributes or {}).items() if v is not None}
        ev = Event(type, action, actor_id, attrs, time.time_ns())
        try:
            self._append(ev.to_line())
        except OSError as exc:
            _log().debug("cannot write event %s %s: %s", type, action, exc)
        for cb in list(self._listeners):
            try:
                cb(ev)
            except Exception:  # noqa: BLE001 - a listener's bug must not break the operation
                _log().exception("event listener failed")
        return ev

    def container(self, action: str, rec: Any, **extra: Any) -> Event:
        """A container event with Docker's attributes: the container's labels, image and name."""
        spec = rec.spec
        return self.emit("container", action, rec.id,
                         {**spec.labels, "image": spec.image_name, "name": rec.name, **extra})

    def _append(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size >= self.max_bytes:
                # Rotate under the lock; re-check that no other writer rotated it already.
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                os.close(fd)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)

    # -- in-process listeners --------------------------------------------------------------------
    def add_listener(self, cb: Callable[[Event], None]) -> None:
        """``cb(event)`` after every event this process emits (called in the emitting thread)."""
        with self._lock:
            self._listeners = [*self._listeners, cb]

    def remove_listener(self, cb: Callable[[Event], None]) -> None:
        with self._lock:
            self._listeners = [c for c in self._listeners if c is not cb]

    # -- reading ---------------------------------------------------------------------------------
    def cursor(self, *, at_end: bool = True) -> Cursor:
        return Cursor(self.path, at_end=at_end)

    def read(self, since: int | None = None, until: int | None = None,
             filters: Filters | None = None) -> list[Event]:
        """Stored events with ``since <= time <= until`` (ns) matching ``filters``, oldest first."""
        f = filters or Filters()
        out = []
        for p in (self.path.with_name(self.path.name + ".1"), self.path):
            try:
                data = p.read_bytes()
            except FileNotFoundError:
                continue
            for line in data.splitlines():
                ev = Event.from_line(line)
                if ev is None or (since is not None and ev.time_nano < since):
                    continue
                if until is not None and ev.time_nano > until:
                    continue
                if matches(ev, f):
                    out.append(ev)
        out.sort(key=lambda e: e.time_nano)
        return out

    def follow(self, since: int | None = None, until: int | None = None, filters: Filters | None = None,
               stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
        """Stored events from ``since`` (none without it), then new ones as they are written, until
        ``until`` passes or ``stop()`` is true (blocking; polls every POLL_INTERVAL)."""
        f = filters or Filters()
        check_filters(f)
        with self.cursor() as cur:
            seen = set()
            if since is not None:
                for ev in self.read(since, until, f):
                    seen.add(ev.key)
                    yield ev
            while not stop():
                if until is not None and time.time_ns() > until:
                    return
                for ev in cur.poll():
                    if ev.key in seen or not matches(ev, f):
                        continue
                    if until is not None and ev.time_nano > until:
                        return
                    yield ev
                seen.clear()
                time.sleep(POLL_INTERVAL)
