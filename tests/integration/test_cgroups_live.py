"""Real cgroups: a test cgroup in each controller, children moved into it, stats read back.

Each test makes ``/dockyard-test-<rand>`` in the cpu, cpuacct, memory, pids and blkio hierarchies
(cgroup v1 and hybrid hosts) or under the unified root (pure v2), and always cleans up: every
process it put there is killed and the directories are removed, even when an assertion fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import FailedPrecondition, NotFound
from dockyard.runtime import cgroups
from dockyard.runtime.cgroup_stats import cpu_percent, read_stats
from dockyard.runtime.cgroups import CgroupPaths, oom_kill_count

pytestmark = [
    pytest.mark.root,
    pytest.mark.root,
]

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")


class LiveCgroup:
    def __init__(self) -> None:
        self.paths = CgroupPaths.for_container(f"/dockyard-test-{uuid.uuid4().hex[:12]}")
        self.dirs: list[Path] = []
        self.children: list[subprocess.Popen[bytes]] = []

    def create(self) -> None:
        if self.paths.version == 2:
            assert self.paths.unified is not None
            parent = self.paths.unified.parent
            for ctrl in ("+memory", "+pids", "+cpu", "+io"):
                try:  # usually enabled already on a v2 host
                    (parent / "cgroup.subtree_control").write_text(ctrl)
                except OSError:
                    pass
            wanted = [self.paths.unified]
        else:
            wanted = [self.paths.hierarchies[c] for c in V1_CONTROLLERS if c in self.paths.hierarchies]
        for d in wanted:
            if d not in self.dirs:
                d.mkdir()
                self.dirs.append(d)

    def spawn(self, code: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        self.children.append(child)
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(child.pid))
        return child

    def set_memory_limit(self, limit: int) -> None:
        if self.paths.version == 2:
            (self.paths.unified / "memory.max").write_text(str(limit))  # type: ignore[operator]
        else:
            (self.paths.hierarchies["memory"] / "memory.limit_in_bytes").write_text(str(limit))

    def cleanup(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
        for d in reversed(self.dirs):
            # anything left in the test cgroup is ours (a child's children): kill it by pid
            try:
                for pid in (d / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            except OSError:
                pass
        for _ in range(50):
            left = [d for d in self.dirs if d.exists()]
            for d in left:
                try:
                    d.rmdir()
                except OSError:
                    pass
            if not any(d.exists() for d in self.dirs):
                return
            time.sleep(0.1)
        raise AssertionError(f"cgroups left behind: {[d for d in self.dirs if d.exists()]}")


@pytest.fixture
def live() -> Iterator[LiveCgroup]:
    cg = LiveCgroup()
    try:
        cg.create()
        yield cg
    finally:
        cg.cleanup()


def test_stats_see_pids_limit_and_cpu(live: LiveCgroup) -> None:
    live.set_memory_limit(64 << 20)
    busy = live.spawn("import time\nwhile True: pass")
    live.spawn("import time; time.sleep(120)")
    first = read_stats(live.paths, busy.pid)
    time.sleep(0.5)
    second = read_stats(live.paths, busy.pid)
    assert second.pids_current == 2
    assert second.memory_limit == 64 << 20
    assert 0 < second.memory_usage <= 64 << 20
    assert second.cpu_total_ns > first.cpu_total_ns
    assert second.system_cpu_ns > first.system_cpu_ns
    assert second.online_cpus == os.cpu_count()
    # one busy-looping process: about one CPU's worth (100%), whatever else the host does
    assert 20.0 < cpu_percent(first, second) <= 100.0 * second.online_cpus + 1
    # the children share the host's network namespace here: its interfaces, without lo
    assert "lo" not in second.networks
    assert oom_kill_count(live.paths) == 0


def test_oom_kill_is_counted(live: LiveCgroup) -> None:
    live.set_memory_limit(48 << 20)
    hog = live.spawn("import sys\nsys.stdin.readline()\nb = bytearray(512 << 20)\nprint(len(b))")
    assert hog.stdin is not None
    hog.stdin.write(b"go\n")
    hog.stdin.flush()
    assert hog.wait(timeout=60) == -signal.SIGKILL
    assert oom_kill_count(live.paths) >= 1


def test_remove_deletes_the_cgroup_dirs(live: LiveCgroup) -> None:
    child = live.spawn("import time; time.sleep(120)")
    with pytest.raises(FailedPrecondition):  # a live process keeps the cgroup busy (EBUSY)
        cgroups.remove(live.paths, attempts=2)
    child.kill()
    child.wait(timeout=10)
    cgroups.remove(live.paths)
    assert not any(d.exists() for d in live.dirs)
    with pytest.raises(NotFound):
        read_stats(live.paths, None)
