"""A container's cgroup as runc lays it out: where its directories are, its OOM kills, and removing it.
(The figures ``docker stats`` shows from it are read by :mod:`dockyard.runtime.cgroup_stats`.)

runc's cgroupfs driver puts the spec's ``linux.cgroupsPath`` (dockyard uses ``/dockyard/<id>``)
under every hierarchy it finds in ``/proc/self/mountinfo``::

    cgroup v1 (and hybrid)                         cgroup v2 (unified only)
    /sys/fs/cgroup/cpu/dockyard/<id>/              /sys/fs/cgroup/dockyard/<id>/
    /sys/fs/cgroup/cpuacct/dockyard/<id>/            cpu.stat          usage_usec
        cpuacct.usage, cpuacct.usage_percpu          memory.current, memory.max, memory.stat
    /sys/fs/cgroup/memory/dockyard/<id>/             memory.events     oom_kill N
        memory.usage_in_bytes, memory.limit_in_bytes pids.current
        memory.stat, memory.oom_control              io.stat           MAJ:MIN rbytes= wbytes= ...
    /sys/fs/cgroup/pids/dockyard/<id>/pids.current
    /sys/fs/cgroup/blkio/dockyard/<id>/blkio.throttle.io_service_bytes[_recursive]
    /sys/fs/cgroup/{cpuset,devices,freezer,systemd,...}/dockyard/<id>/
    /sys/fs/cgroup/unified/dockyard/<id>/   (hybrid hosts; runc joins it too when present)

The host is detected from mountinfo, not from a fixed list: controllers may be co-mounted
(``cpu,cpuacct``) and named hierarchies (``name=systemd``) count too, because :func:`remove` has to
delete every directory runc created.  A relative cgroupsPath is relative to dockyard's own cgroup
in each hierarchy, as in runc.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import FailedPrecondition, NotFound

CGROUP_ROOT = Path("/sys/fs/cgroup")
_GENERIC_OPTIONS = {"rw", "ro", "xattr", "clone_children", "noprefix", "cpuset_v2_mode"}


@dataclass(frozen=True)
class CgroupPaths:
    """The directories of one container's cgroup (they need not exist yet, or any more).

    ``version`` is 2 only on a pure v2 host; hybrid hosts are v1 for accounting, with the unified
    directory kept in ``unified`` so that :func:`remove` can delete it too.  ``hierarchies`` maps
    each v1 controller (and named hierarchy, ``name=systemd``) to the container's directory in it;
    co-mounted controllers map to the same directory.
    """

    version: int
    hierarchies: dict[str, Path] = field(default_factory=dict)
    unified: Path | None = None

    @classmethod
    def for_container(
        cls,
        cgroups_path: str,
        *,
        mountinfo: Path = Path("/proc/self/mountinfo"),
        own_cgroup: Path = Path("/proc/self/cgroup"),
    ) -> CgroupPaths:
        """runc's cgroupfs layout for ``cgroups_path`` (an OCI ``linux.cgroupsPath``) on this host."""
        v1, v2 = _cgroup_mounts(mountinfo)
        relative = not cgroups_path.startswith("/")
        own = _own_cgroups(own_cgroup) if relative else {}

        def place(mountpoint: Path, key: str) -> Path:
            inner = _clean(own.get(key, "/") + "/" + cgroups_path if relative else cgroups_path)
            return mountpoint.joinpath(*inner.split("/")) if inner else mountpoint

        hierarchies: dict[str, Path] = {}
        for mountpoint, names in v1:
            for name in names:
                hierarchies.setdefault(name, place(mountpoint, name))
        unified = place(v2, "") if v2 is not None else None
        if not hierarchies and unified is None:
            raise NotFound("no cgroup filesystem is mounted")
        return cls(version=1 if hierarchies else 2, hierarchies=hierarchies, unified=unified)

    def dir_for(self, controller: str) -> Path | None:
        """Where ``controller``'s files are: its v1 hierarchy, or the v2 directory."""
        if self.version == 2:
            return self.unified
        return self.hierarchies.get(controller)

    def all_dirs(self) -> list[Path]:
        """Every distinct directory runc may have created for the container."""
        seen: list[Path] = []
        for path in [*self.hierarchies.values(), *([self.unified] if self.unified else [])]:
            if path not in seen:
                seen.append(path)
        return seen


def _clean(path: str) -> str:
    """runc's CleanPath: lexically clean, never climbing above the hierarchy root."""
    return os.path.normpath("/" + path).lstrip("/")


def _cgroup_mounts(mountinfo: Path) -> tuple[list[tuple[Path, list[str]]], Path | None]:
    """v1 hierarchies (mountpoint, controller names) and the v2 mountpoint, first mount wins."""
    v1: list[tuple[Path, list[str]]] = []
    v2: Path | None = None
    seen: set[str] = set()
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mountpoint = Path(fields[4].replace("\\040", " "))
        if tail[0] == "cgroup2" and v2 is None:
            v2 = mountpoint
        elif tail[0] == "cgroup":
            names = [o for o in tail[2].split(",") if o not in _GENERIC_OPTIONS
                     and not o.startswith("release_agent=")]
            names = [n for n in names if n not in seen]
            if names:
                seen.update(names)
                v1.append((mountpoint, names))
    return v1, v2


def _own_cgroups(own_cgroup: Path) -> dict[str, str]:
    """Controller -> this process's cgroup path ("" for the v2 line), from /proc/self/cgroup."""
    own: dict[str, str] = {}
    try:
        text = own_cgroup.read_text()
    except OSError:
        return own
    for line in text.splitlines():
        _, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        for name in names.split(",") if names else [""]:
            own[name] = path
    return own


def oom_kill_count(paths: CgroupPaths) -> int:
    """How many processes the kernel OOM-killed in this cgroup (0 if unknown or gone).

    v1 ``memory.oom_control`` has an ``oom_kill N`` line since Linux 4.13; v2 ``memory.events``.
    """
    if paths.version == 2:
        text = read_value(paths.unified, "memory.events")
    else:
        text = read_value(paths.dir_for("memory"), "memory.oom_control")
    return keyed_values(text or "").get("oom_kill", 0)


def remove(paths: CgroupPaths, *, attempts: int = 5) -> None:
    """Remove the container's cgroup directories that still exist, deepest first.

    Nested cgroups (made inside the container) go before their parents; the shared parent
    (``/dockyard``) is left alone.  rmdir is retried briefly on EBUSY, because the last processes
    may still be exiting (runc does the same); after that FailedPrecondition is raised.
    """
    for top in paths.all_dirs():
        if not top.is_dir():
            continue
        nested = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
        for directory in nested:
            _rmdir(directory, attempts)


def _rmdir(directory: Path, attempts: int) -> None:
    delay = 0.01
    for attempt in range(attempts):
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == attempts - 1:
                raise FailedPrecondition(f"cannot remove cgroup {directory}: {exc.strerror}") from exc
        time.sleep(delay)
        delay *= 2


# -- file readers ----------------------------------------------------------------------------


def read_value(directory: Path | None, name: str) -> str | None:
    if directory is None:
        return None
    try:
        return (directory / name).read_text()
    except OSError:  # missing file, controller not enabled, cgroup removed meanwhile
        return None


def first_int(text: str | None) -> int:
    try:
        return int((text or "0").split()[0])
    except (ValueError, IndexError):
        return 0


def keyed_values(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, memory.events, cpu.stat, oom_control) as a dict."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out
