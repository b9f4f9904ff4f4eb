"""A container's cgroup as runc lays it out, and the figures ``docker stats`` shows from it.

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

The numbers follow Docker exactly (moby ``daemon/stats``, docker/cli ``stats_helpers.go``):
system CPU usage is the sum of the first seven fields of ``/proc/stat``'s ``cpu`` line in
nanoseconds, online CPUs is the number of ``cpuN`` lines, an unlimited memory limit is reported as
the host's MemTotal, and memory usage shown excludes ``total_inactive_file`` (v1) or
``inactive_file`` (v2).  Missing files count as zero (a v2 controller may not be enabled); a
missing cgroup directory raises :class:`~dockyard.errors.NotFound`.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import FailedPrecondition, NotFound

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Docker's ``clockTicksPerSecond``: the unit of /proc/stat (USER_HZ, 100 on Linux).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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


# -- stats -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkStats:
    """Counters of one interface, as /proc/<pid>/net/dev has them (and Docker's API reports them)."""

    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


@dataclass(frozen=True)
class Stats:
    """One reading of a container's resource use; two readings give :func:`cpu_percent`.

    ``memory_limit`` is the host's total memory when the container is unlimited.
    ``memory_cache`` is what Docker subtracts from ``memory_usage`` for display
    (v1 ``total_inactive_file``, v2 ``inactive_file``); ``memory_stat`` is the raw memory.stat.
    """

    read_at: float
    cpu_total_ns: int
    cpu_percpu_ns: tuple[int, ...]
    system_cpu_ns: int
    online_cpus: int
    memory_usage: int
    memory_limit: int
    memory_cache: int
    memory_stat: dict[str, int]
    pids_current: int
    networks: dict[str, NetworkStats]
    blkio_read: int
    blkio_write: int

    @property
    def memory_usage_no_cache(self) -> int:
        """The MEM USAGE column: usage minus inactive file pages (docker/cli's calculation)."""
        return self.memory_usage - self.memory_cache if self.memory_cache < self.memory_usage \
            else self.memory_usage

    @property
    def memory_percent(self) -> float:
        return self.memory_usage_no_cache / self.memory_limit * 100.0 if self.memory_limit else 0.0

    @property
    def net_rx(self) -> int:
        return sum(n.rx_bytes for n in self.networks.values())

    @property
    def net_tx(self) -> int:
        return sum(n.tx_bytes for n in self.networks.values())


def cpu_percent(prev: Stats, cur: Stats) -> float:
    """Docker's calculateCPUPercentUnix: container CPU time share of all CPUs, times the CPU count."""
    cpu_delta = cur.cpu_total_ns - prev.cpu_total_ns
    system_delta = cur.system_cpu_ns - prev.system_cpu_ns
    online = cur.online_cpus or len(cur.cpu_percpu_ns)
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def read_stats(paths: CgroupPaths, pid: int | None, *, proc: Path = Path("/proc")) -> Stats:
    """Read the container's counters now.  ``pid`` is its init process (for network counters);
    None or a vanished pid gives no networks.  Raises NotFound if the cgroup is gone."""
    main = paths.dir_for("memory") or paths.dir_for("cpuacct") or paths.unified
    if main is None or not main.is_dir():
        raise NotFound(f"cgroup {main} does not exist (the container is not running)")
    system_ns, online = _system_cpu(proc)
    host_memory = _meminfo_total(proc)
    percpu: tuple[int, ...] = ()
    if paths.version == 2:
        cpu_total = _v2_cpu(paths.unified)
        usage, limit, stat, cache = _v2_memory(paths.unified)
        pids = _int(_read(paths.unified, "pids.current"))
        blk_read, blk_write = _v2_io(paths.unified)
    else:
        cpuacct = paths.dir_for("cpuacct")
        cpu_total = _int(_read(cpuacct, "cpuacct.usage"))
        percpu = tuple(int(v) for v in (_read(cpuacct, "cpuacct.usage_percpu") or "").split())
        usage, limit, stat, cache = _v1_memory(paths.dir_for("memory"))
        pids = _int(_read(paths.dir_for("pids"), "pids.current"))
        blk_read, blk_write = _v1_blkio(paths.dir_for("blkio"))
    if limit is None or (host_memory and limit > host_memory):
        limit = host_memory
    return Stats(
        read_at=time.time(), cpu_total_ns=cpu_total, cpu_percpu_ns=percpu, system_cpu_ns=system_ns,
        online_cpus=online, memory_usage=usage, memory_limit=limit or 0, memory_cache=cache,
        memory_stat=stat, pids_current=pids, networks=_networks(proc, pid),
        blkio_read=blk_read, blkio_write=blk_write,
    )


def oom_kill_count(paths: CgroupPaths) -> int:
    """How many processes the kernel OOM-killed in this cgroup (0 if unknown or gone).

    v1 ``memory.oom_control`` has an ``oom_kill N`` line since Linux 4.13; v2 ``memory.events``.
    """
    if paths.version == 2:
        text = _read(paths.unified, "memory.events")
    else:
        text = _read(paths.dir_for("memory"), "memory.oom_control")
    return _keyed(text or "").get("oom_kill", 0)


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


def _read(directory: Path | None, name: str) -> str | None:
    if directory is None:
        return None
    try:
        return (directory / name).read_text()
    except OSError:  # missing file, controller not enabled, cgroup removed meanwhile
        return None


def _int(text: str | None) -> int:
    try:
        return int((text or "0").split()[0])
    except (ValueError, IndexError):
        return 0


def _keyed(text: str) -> dict[str, int]:
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


def _system_cpu(proc: Path) -> tuple[int, int]:
    """moby's getSystemCPUUsage: (sum of the first 7 ``cpu`` fields in ns, number of cpuN lines)."""
    total, cpus = 0, 0
    for line in (proc / "stat").read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "cpu" and len(parts) >= 8:
            total = sum(int(v) for v in parts[1:8]) * 1_000_000_000 // CLOCK_TICKS
        elif parts[0].startswith("cpu") and len(parts[0]) > 3:
            cpus += 1
    return total, cpus


def _meminfo_total(proc: Path) -> int:
    for line in (proc / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _v1_memory(directory: Path | None) -> tuple[int, int | None, dict[str, int], int]:
    stat = _keyed(_read(directory, "memory.stat") or "")
    usage = _int(_read(directory, "memory.usage_in_bytes"))
    limit_text = _read(directory, "memory.limit_in_bytes")
    limit = _int(limit_text) if limit_text else None
    return usage, limit, stat, stat.get("total_inactive_file", 0)


def _v2_memory(directory: Path | None) -> tuple[int, int | None, dict[str, int], int]:
    stat = _keyed(_read(directory, "memory.stat") or "")
    usage = _int(_read(directory, "memory.current"))
    limit_text = (_read(directory, "memory.max") or "max").strip()
    limit = None if limit_text == "max" else _int(limit_text)
    return usage, limit, stat, stat.get("inactive_file", 0)


def _v2_cpu(directory: Path | None) -> int:
    return _keyed(_read(directory, "cpu.stat") or "").get("usage_usec", 0) * 1000


def _v1_blkio(directory: Path | None) -> tuple[int, int]:
    """Sum Read and Write over devices; the recursive file counts nested cgroups too."""
    text = _read(directory, "blkio.throttle.io_service_bytes_recursive")
    if text is None:
        text = _read(directory, "blkio.throttle.io_service_bytes")
    read = write = 0
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue  # "Total N"
        op, value = parts[1].lower(), _int(parts[2])
        if op == "read":
            read += value
        elif op == "write":
            write += value
    return read, write


def _v2_io(directory: Path | None) -> tuple[int, int]:
    read = write = 0
    for line in (_read(directory, "io.stat") or "").splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                read += _int(value)
            elif key == "wbytes":
                write += _int(value)
    return read, write


def _networks(proc: Path, pid: int | None) -> dict[str, NetworkStats]:
    """Per-interface counters from the container's network namespace, ``lo`` excluded."""
    if pid is None:
        return {}
    try:
        text = (proc / str(pid) / "net" / "dev").read_text()
    except OSError:
        return {}
    out: dict[str, NetworkStats] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        values = rest.split()
        if not sep or name == "lo" or len(values) < 16:
            continue
        v = [int(x) for x in values[:16]]
        out[name] = NetworkStats(rx_bytes=v[0], rx_packets=v[1], rx_errors=v[2], rx_dropped=v[3],
                                 tx_bytes=v[8], tx_packets=v[9], tx_errors=v[10], tx_dropped=v[11])
    return out
