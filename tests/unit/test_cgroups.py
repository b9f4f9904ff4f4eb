"""cgroup paths and stats from fixture trees: v1 (and hybrid) and v2 layouts, /proc files, Docker's maths."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.errors import NotFound
from dockyard.runtime import cgroup_stats, cgroups
from dockyard.runtime.cgroup_stats import NetworkStats, Stats, cpu_percent, read_stats
from dockyard.runtime.cgroups import CgroupPaths, oom_kill_count

HYBRID_MOUNTINFO = """\
25 1 0:23 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""

V2_MOUNTINFO = """\
25 1 0:23 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

OWN_CGROUP = "4:memory:/user.slice/me\n3:cpu,cpuacct:/\n0::/user.slice/me\n"

PROC_STAT = """\
cpu  100 0 50 800 10 5 5 30 0 0
cpu0 50 0 25 400 5 3 2 15 0 0
cpu1 50 0 25 400 5 2 3 15 0 0
intr 12345
ctxt 999
"""

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    5000      50    1    2    0     0          0         0     7000      70    3    4    0     0       0          0
  eth1:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0
"""


def write(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    write(root, {"stat": PROC_STAT, "meminfo": "MemTotal:        2048000 kB\nMemFree: 1 kB\n",
                 "4242/net/dev": NET_DEV})
    return root


def test_paths_hybrid(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(HYBRID_MOUNTINFO)
    paths = CgroupPaths.for_container("/dockyard/abc", mountinfo=tmp_path / "mountinfo")
    root = Path("/sys/fs/cgroup")
    assert paths.version == 1
    assert paths.hierarchies["cpu"] == paths.hierarchies["cpuacct"] == root / "cpu,cpuacct/dockyard/abc"
    assert paths.hierarchies["memory"] == root / "memory/dockyard/abc"
    assert paths.hierarchies["name=systemd"] == root / "systemd/dockyard/abc"
    assert "clone_children" not in paths.hierarchies and "xattr" not in paths.hierarchies
    assert paths.unified == root / "unified/dockyard/abc"
    assert paths.dir_for("pids") == root / "pids/dockyard/abc"
    assert len(paths.all_dirs()) == 6  # cpu,cpuacct counted once; plus the unified directory


def test_paths_v2_and_relative(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(V2_MOUNTINFO)
    paths = CgroupPaths.for_container("/dockyard/abc", mountinfo=tmp_path / "mountinfo")
    assert paths.version == 2 and paths.hierarchies == {}
    assert paths.unified == paths.dir_for("memory") == Path("/sys/fs/cgroup/dockyard/abc")
    # relative paths hang below dockyard's own cgroup in each hierarchy, as in runc
    (tmp_path / "own").write_text(OWN_CGROUP)
    rel = CgroupPaths.for_container("dockyard/abc", mountinfo=tmp_path / "mountinfo", own_cgroup=tmp_path / "own")
    assert rel.unified == Path("/sys/fs/cgroup/user.slice/me/dockyard/abc")
    (tmp_path / "mountinfo").write_text(HYBRID_MOUNTINFO)
    rel1 = CgroupPaths.for_container("x", mountinfo=tmp_path / "mountinfo", own_cgroup=tmp_path / "own")
    assert rel1.hierarchies["memory"] == Path("/sys/fs/cgroup/memory/user.slice/me/x")
    assert rel1.hierarchies["cpu"] == Path("/sys/fs/cgroup/cpu,cpuacct/x")
    # ".." cannot climb out of the hierarchy
    esc = CgroupPaths.for_container("/../../etc", mountinfo=tmp_path / "mountinfo")
    assert esc.hierarchies["memory"] == Path("/sys/fs/cgroup/memory/etc")


def v1_paths(tmp_path: Path) -> CgroupPaths:
    base = tmp_path / "v1"
    write(base, {
        "cpuacct/c/cpuacct.usage": "123456789\n",
        "cpuacct/c/cpuacct.usage_percpu": "100000000 23456789 \n",
        "memory/c/memory.usage_in_bytes": "10485760\n",
        "memory/c/memory.limit_in_bytes": "9223372036854771712\n",
        "memory/c/memory.stat": "cache 4096\nrss 8192\ntotal_inactive_file 2097152\ntotal_rss 8192\n",
        "memory/c/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        "pids/c/pids.current": "7\n",
        "blkio/c/blkio.throttle.io_service_bytes": (
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\n"
            "8:16 Read 100\n8:16 Write 0\n8:16 Total 100\nTotal 12388\n"),
    })
    return CgroupPaths(version=1, hierarchies={k: base / k / "c" for k in ("cpuacct", "memory", "pids", "blkio")})


def test_read_stats_v1(tmp_path: Path, proc: Path) -> None:
    s = read_stats(v1_paths(tmp_path), 4242, proc=proc)
    assert s.cpu_total_ns == 123456789
    assert s.cpu_percpu_ns == (100000000, 23456789)
    # (100+0+50+800+10+5+5) ticks; steal/guest are not counted, as in moby
    assert s.system_cpu_ns == 970 * 1_000_000_000 // cgroup_stats.CLOCK_TICKS
    assert s.online_cpus == 2
    assert s.memory_usage == 10485760
    assert s.memory_limit == 2048000 * 1024  # unlimited: the host's MemTotal
    assert s.memory_cache == 2097152 and s.memory_usage_no_cache == 10485760 - 2097152
    assert s.memory_stat["rss"] == 8192
    assert s.pids_current == 7
    assert (s.blkio_read, s.blkio_write) == (4196, 8192)
    assert set(s.networks) == {"eth0", "eth1"}
    assert s.networks["eth0"] == NetworkStats(5000, 50, 1, 2, 7000, 70, 3, 4)
    assert (s.net_rx, s.net_tx) == (5100, 7200)
    assert oom_kill_count(v1_paths(tmp_path)) == 3


def test_recursive_blkio_file_preferred_and_limit_kept(tmp_path: Path, proc: Path) -> None:
    paths = v1_paths(tmp_path)
    write(paths.hierarchies["blkio"], {"blkio.throttle.io_service_bytes_recursive": "8:0 Read 1\n8:0 Write 2\n"})
    write(paths.hierarchies["memory"], {"memory.limit_in_bytes": "67108864\n"})
    s = read_stats(paths, None, proc=proc)
    assert (s.blkio_read, s.blkio_write) == (1, 2)
    assert s.memory_limit == 64 << 20
    assert s.networks == {}


def v2_paths(tmp_path: Path) -> CgroupPaths:
    base = tmp_path / "v2" / "dockyard" / "c"
    write(base, {
        "cpu.stat": "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        "memory.current": "5000000\n",
        "memory.max": "max\n",
        "memory.stat": "anon 1000\nfile 4000\ninactive_file 1500000\nactive_file 10\n",
        "memory.events": "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n",
        "pids.current": "3\n",
        "io.stat": "8:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n"
                   "8:16 rbytes=10 wbytes=20 rios=1 wios=1 dbytes=0 dios=0\n",
    })
    return CgroupPaths(version=2, unified=base)


def test_read_stats_v2(tmp_path: Path, proc: Path) -> None:
    paths = v2_paths(tmp_path)
    s = read_stats(paths, 4242, proc=proc)
    assert s.cpu_total_ns == 2_500_000 and s.cpu_percpu_ns == ()
    assert s.memory_usage == 5_000_000 and s.memory_limit == 2048000 * 1024
    assert s.memory_cache == 1_500_000 and s.memory_usage_no_cache == 3_500_000
    assert s.pids_current == 3
    assert (s.blkio_read, s.blkio_write) == (1010, 2020)
    assert oom_kill_count(paths) == 1
    write(paths.unified, {"memory.max": "104857600\n"})  # type: ignore[arg-type]
    assert read_stats(paths, 4242, proc=proc).memory_limit == 100 << 20


def test_missing_controller_files_count_as_zero(tmp_path: Path, proc: Path) -> None:
    base = tmp_path / "v2" / "bare"
    base.mkdir(parents=True)
    s = read_stats(CgroupPaths(version=2, unified=base), None, proc=proc)
    assert (s.cpu_total_ns, s.memory_usage, s.pids_current, s.blkio_read) == (0, 0, 0, 0)
    assert oom_kill_count(CgroupPaths(version=2, unified=base)) == 0


def test_missing_cgroup_is_not_found(tmp_path: Path, proc: Path) -> None:
    with pytest.raises(NotFound):
        read_stats(CgroupPaths(version=2, unified=tmp_path / "gone"), None, proc=proc)


def _stats(cpu: int, system: int, online: int = 4, percpu: tuple[int, ...] = ()) -> Stats:
    return Stats(read_at=0.0, cpu_total_ns=cpu, cpu_percpu_ns=percpu, system_cpu_ns=system, online_cpus=online,
                 memory_usage=0, memory_limit=0, memory_cache=0, memory_stat={}, pids_current=0, networks={},
                 blkio_read=0, blkio_write=0)


def test_cpu_percent_formula() -> None:
    # container used 2 s of CPU while the 4-CPU system accumulated 4 s in total: half of all
    # CPU time, shown (like docker stats) as 50% of 4 CPUs = 200%
    prev, cur = _stats(1_000_000_000, 100_000_000_000), _stats(3_000_000_000, 104_000_000_000)
    assert cpu_percent(prev, cur) == pytest.approx(200.0)
    # 0.3 s over 12 s on 2 CPUs: 0.3/12*2*100 = 5%
    assert cpu_percent(_stats(0, 0, 2), _stats(300_000_000, 12_000_000_000, 2)) == pytest.approx(5.0)
    # online_cpus unknown: the per-CPU list's length stands in
    assert cpu_percent(_stats(0, 0, 0), _stats(1, 10, 0, (1, 2, 3))) == pytest.approx(30.0)
    assert cpu_percent(prev, prev) == 0.0  # no time passed
    assert cpu_percent(cur, prev) == 0.0   # counters went backwards (restart): 0, never negative


def test_remove_deletes_leaf_first(tmp_path: Path) -> None:
    a = tmp_path / "memory" / "dockyard" / "c"
    (a / "nested" / "deeper").mkdir(parents=True)
    b = tmp_path / "pids" / "dockyard" / "c"
    b.mkdir(parents=True)
    paths = CgroupPaths(version=1, hierarchies={"memory": a, "pids": b, "cpu": tmp_path / "cpu" / "gone"})
    cgroups.remove(paths)
    assert not a.exists() and not b.exists()
    assert (tmp_path / "memory" / "dockyard").is_dir()  # the shared parent stays
    cgroups.remove(paths)  # idempotent
