"""The figures ``docker stats`` shows, read from a container's cgroup (:mod:`dockyard.runtime.cgroups`
says where its directories are) and from its network namespace.

The numbers follow Docker exactly (moby ``daemon/stats``, docker/cli ``stats_helpers.go``):
system CPU usage is the sum of the first seven fields of ``/proc/stat``'s ``cpu`` line in
nanoseconds, online CPUs is the number of ``cpuN`` lines, an unlimited memory limit is reported as
the host's MemTotal, and memory usage shown excludes ``total_inactive_file`` (v1) or
``inactive_file`` (v2).  Missing files count as zero (a v2 controller may not be enabled); a
missing cgroup directory raises :class:`~dockyard.errors.NotFound`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import NotFound
from dockyard.runtime.cgroups import CgroupPaths, first_int, keyed_values, read_value

#: Docker's ``clockTicksPerSecond``: the unit of /proc/stat (USER_HZ, 100 on Linux).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
        pids = first_int(read_value(paths.unified, "pids.current"))
        blk_read, blk_write = _v2_io(paths.unified)
    else:
        cpuacct = paths.dir_for("cpuacct")
        cpu_total = first_int(read_value(cpuacct, "cpuacct.usage"))
        percpu = tuple(int(v) for v in (read_value(cpuacct, "cpuacct.usage_percpu") or "").split())
        usage, limit, stat, cache = _v1_memory(paths.dir_for("memory"))
        pids = first_int(read_value(paths.dir_for("pids"), "pids.current"))
        blk_read, blk_write = _v1_blkio(paths.dir_for("blkio"))
    if limit is None or (host_memory and limit > host_memory):
        limit = host_memory
    return Stats(
        read_at=time.time(), cpu_total_ns=cpu_total, cpu_percpu_ns=percpu, system_cpu_ns=system_ns,
        online_cpus=online, memory_usage=usage, memory_limit=limit or 0, memory_cache=cache,
        memory_stat=stat, pids_current=pids, networks=_networks(proc, pid),
        blkio_read=blk_read, blkio_write=blk_write,
    )


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
    stat = keyed_values(read_value(directory, "memory.stat") or "")
    usage = first_int(read_value(directory, "memory.usage_in_bytes"))
    limit_text = read_value(directory, "memory.limit_in_bytes")
    limit = first_int(limit_text) if limit_text else None
    return usage, limit, stat, stat.get("total_inactive_file", 0)


def _v2_memory(directory: Path | None) -> tuple[int, int | None, dict[str, int], int]:
    stat = keyed_values(read_value(directory, "memory.stat") or "")
    usage = first_int(read_value(directory, "memory.current"))
    limit_text = (read_value(directory, "memory.max") or "max").strip()
    limit = None if limit_text == "max" else first_int(limit_text)
    return usage, limit, stat, stat.get("inactive_file", 0)


def _v2_cpu(directory: Path | None) -> int:
    return keyed_values(read_value(directory, "cpu.stat") or "").get("usage_usec", 0) * 1000


def _v1_blkio(directory: Path | None) -> tuple[int, int]:
    """Sum Read and Write over devices; the recursive file counts nested cgroups too."""
    text = read_value(directory, "blkio.throttle.io_service_bytes_recursive")
    if text is None:
        text = read_value(directory, "blkio.throttle.io_service_bytes")
    read = write = 0
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue  # "Total N"
        op, value = parts[1].lower(), first_int(parts[2])
        if op == "read":
            read += value
        elif op == "write":
            write += value
    return read, write


def _v2_io(directory: Path | None) -> tuple[int, int]:
    read = write = 0
    for line in (read_value(directory, "io.stat") or "").splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                read += first_int(value)
            elif key == "wbytes":
                write += first_int(value)
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
