"""runc + conmon driver against the real tools, over a busybox root filesystem.

Each test has its own runc state root and directories under /var/tmp; the ``rt`` fixture deletes
every container runc knows there (``runc delete -f``) and SIGKILLs every conmon whose pid file is
under the test directory (checked to be a live conmon first), even when the test fails.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from dockyard.images.bootstrap import build_busybox_rootfs
from dockyard.runtime.conmon import process_alive, read_pid_file
from dockyard.runtime.logs import read_log
from dockyard.runtime.runc import RuncRuntime

pytestmark = [
    pytest.mark.root,
    pytest.mark.root,
    pytest.mark.root,
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rootfs():
    d = Path(tempfile.mkdtemp(prefix="dockyard-rootfs-", dir="/var/tmp"))
    try:
        build_busybox_rootfs(d / "rootfs")
        yield d / "rootfs"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def base_spec():
    d = Path(tempfile.mkdtemp(prefix="dockyard-spec-", dir="/var/tmp"))
    try:
        subprocess.run(["runc", "spec"], cwd=d, check=True)
        yield json.loads((d / "config.json").read_text())
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Box:
    """Paths of one test container."""

    cid: str
    bundle: Path
    log: Path
    exit_dir: Path
    persist: Path


class Env:
    def __init__(self, root: Path, rootfs: Path, spec: dict) -> None:
        self.root = root
        self.rootfs = rootfs
        self.spec = spec
        self.rt = RuncRuntime(root / "runc")
        self.exit_dir = root / "exits"
        self._n = 0
        self._lock = threading.Lock()

    def box(self, args: list[str], *, tty: bool = False, memory: int | None = None) -> Box:
        with self._lock:
            self._n += 1
            cid = f"t{os.getpid()}-{self._n}"
        bundle = self.root / "containers" / cid
        bundle.mkdir(parents=True)
        spec = json.loads(json.dumps(self.spec))
        spec["process"]["args"] = args
        spec["process"]["terminal"] = tty
        spec["root"] = {"path": str(self.rootfs), "readonly": True}
        spec["hostname"] = cid
        if memory:
            spec["linux"].setdefault("resources", {})["memory"] = {"limit": memory, "swap": memory}
        (bundle / "config.json").write_text(json.dumps(spec))
        return Box(cid, bundle, bundle / "ctr.log", self.exit_dir, bundle / "persist")

    def create(self, box: Box, *, tty: bool = False, stdin: bool = False, exit_command=None):
        return self.rt.create(box.cid, box.bundle, log_path=box.log, exit_dir=box.exit_dir,
                              persist_dir=box.persist, tty=tty, stdin=stdin, exit_command=exit_command)

    def run(self, args: list[str], **kw) -> Box:
        box = self.box(args, tty=kw.get("tty", False))
        self.create(box, **kw)
        self.rt.start(box.cid)
        return box

    def wait_exit(self, box: Box, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.rt.read_exit_code(box.exit_dir, box.cid)
            if code is not None:
                return code
            time.sleep(0.05)
        raise AssertionError(f"{box.cid} did not exit in {timeout}s")

    def cleanup(self) -> None:
        for st in self.rt.list_containers():
            subprocess.run(["runc", "--root", str(self.rt.state_root), "delete", "-f", st.id],
                           capture_output=True, check=False)
        for pidfile in self.root.rglob("conmon.pid"):
            pid = read_pid_file(pidfile)
            if pid and process_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def env(rootfs, base_spec):
    root = Path(tempfile.mkdtemp(prefix="dockyard-rt-", dir="/var/tmp"))
    e = Env(root, rootfs, base_spec)
    try:
        yield e
    finally:
        e.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_exit_code_log_streams_and_state(env):
    box = env.box(["sh", "-c", "echo out; echo err >&2; exit 3"])
    proc = env.create(box)
    assert proc.pid > 0 and process_alive(proc.conmon_pid)
    assert env.rt.state(box.cid).status == "created"
    env.rt.start(box.cid)
    assert env.wait_exit(box) == 3
    assert (box.persist / "exit").read_text() == "3"
    assert env.rt.state(box.cid).status == "stopped"
    frames = list(read_log(box.log))
    assert [(f.stream, f.data) for f in frames] == [("stdout", b"out\n"), ("stderr", b"err\n")]
    assert abs(frames[0].time - time.time()) < 60
    assert not env.rt.oom_killed(box.persist, box.bundle)
    wait_for(lambda: not process_alive(proc.conmon_pid), what="conmon to exit")
    env.rt.delete(box.cid)
    with pytest.raises(NotFound):
        env.rt.state(box.cid)


CREATOR = """
import json, sys
from pathlib import Path
from dockyard.runtime.runc import RuncRuntime
root, cid, bundle = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
rt = RuncRuntime(root / "runc")
p = rt.create(cid, bundle, log_path=bundle / "ctr.log", exit_dir=root / "exits",
              persist_dir=bundle / "persist", tty=False, stdin=False, exit_command=None)
rt.start(cid)
print(json.dumps({"pid": p.pid, "conmon_pid": p.conmon_pid}))
"""


def test_container_outlives_its_creator_and_its_conmon(env):
    box = env.box(["sleep", "1000"])
    out = subprocess.run([sys.executable, "-c", CREATOR, str(env.root), box.cid, str(box.bundle)],
                         check=True, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    info = json.loads(out.stdout)
    st = env.rt.state(box.cid)
    assert st.status == "running" and st.pid == info["pid"]
    assert process_alive(info["conmon_pid"])
    assert env.rt.conmon_pid(box.bundle) == info["conmon_pid"]

    # The monitor dies: runc still knows the container runs, then that it stopped.
    os.kill(info["conmon_pid"], signal.SIGKILL)
    wait_for(lambda: not process_alive(info["conmon_pid"]), what="conmon to die")
    assert env.rt.state(box.cid).status == "running"
    assert process_alive(info["pid"], None)
    env.rt.kill(box.cid, "KILL")
    wait_for(lambda: env.rt.state(box.cid).status == "stopped", what="runc state stopped")
    assert env.rt.read_exit_code(box.exit_dir, box.cid) is None  # nobody was left to record it


def test_sigkill_gives_137_and_errors_by_state(env):
    box = env.run(["sleep", "1000"])
    assert env.rt.state(box.cid).status == "running"
    with pytest.raises(Conflict):
        env.rt.delete(box.cid)
    env.rt.kill(box.cid, signal.SIGKILL)
    assert env.wait_exit(box) == 137
    with pytest.raises(FailedPrecondition):
        env.rt.kill(box.cid, "TERM")
    with pytest.raises(FailedPrecondition):
        env.rt.start(box.cid)
    env.rt.delete(box.cid)
    with pytest.raises(NotFound):
        env.rt.kill(box.cid, "TERM")
    with pytest.raises(NotFound):
        env.rt.state("nosuch")
    with pytest.raises(InvalidArgument):
        env.rt.state("../etc")


def test_pause_resume_ps_update(env):
    box = env.run(["sleep", "1000"])
    pid = env.rt.state(box.cid).pid
    assert env.rt.ps(box.cid) == [pid]
    env.rt.pause(box.cid)
    assert env.rt.state(box.cid).status == "paused"
    env.rt.resume(box.cid)
    assert env.rt.state(box.cid).status == "running"
    env.rt.update(box.cid, {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}})
    cgroup = next(line.split(":")[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                  if line.split(":")[1] == "memory")
    assert int(Path(f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes").read_text()) == 64 << 20
    assert [s.id for s in env.rt.list_containers()] == [box.cid]
    with pytest.raises(Conflict):
        env.create(box)


def test_exit_command_runs_with_its_args(env):
    marker = env.root / "marker"
    tmp = f"{marker}.tmp"
    script = f'printf "%s\\n" "$@" > {tmp}; cat {env.exit_dir}/"$1" >> {tmp}; mv {tmp} {marker}'
    box = env.box(["sh", "-c", "exit 5"])
    env.create(box, exit_command=["sh", "-c", script, "sh", box.cid, "two words"])
    env.rt.start(box.cid)
    assert env.wait_exit(box) == 5
    wait_for(marker.exists, what="exit command marker")
    assert marker.read_text() == f"{box.cid}\ntwo words\n5"


def test_missing_command_is_a_clear_error_and_leaves_nothing(env):
    box = env.box(["nosuch", "arg"])
    with pytest.raises(InvalidArgument) as info:
        env.create(box)
    assert info.value.exit_code == 127
    assert 'exec: "nosuch": executable file not found in $PATH' in str(info.value)
    assert "level=" not in str(info.value) and "{" not in str(info.value)
    with pytest.raises(NotFound):
        env.rt.state(box.cid)
    pid = read_pid_file(box.bundle / "conmon.pid")
    assert pid
    wait_for(lambda: not process_alive(pid), what="conmon to go away")
    assert env.rt.list_containers() == []

    box = env.box(["/etc/passwd"])
    with pytest.raises(FailedPrecondition) as info:
        env.create(box)
    assert info.value.exit_code == 126 and "permission denied" in str(info.value)


ROOT_PROCESS = {"cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}


def test_exec_without_tty(env):
    box = env.run(["sleep", "1000"])
    out, err = io.BytesIO(), io.BytesIO()
    code = env.rt.exec(box.cid, {**ROOT_PROCESS, "args": ["sh", "-c", "echo hi; echo oops >&2; exit 4"]},
                       tty=False, detach=False, stdin=False, stdout_stream=out, stderr_stream=err)
    assert (code, out.getvalue(), err.getvalue()) == (4, b"hi\n", b"oops\n")

    out = io.BytesIO()
    code = env.rt.exec(box.cid, {**ROOT_PROCESS, "args": ["cat"]},
                       tty=False, detach=False, stdin=True, stdin_stream=io.BytesIO(b"abc\x00def"),
                       stdout_stream=out, stderr_stream=io.BytesIO())
    assert (code, out.getvalue()) == (0, b"abc\x00def")

    with pytest.raises(InvalidArgument) as info:
        env.rt.exec(box.cid, {**ROOT_PROCESS, "args": ["nosuch"]},
                    tty=False, detach=False, stdin=False, stdout_stream=io.BytesIO(),
                    stderr_stream=io.BytesIO())
    assert info.value.exit_code == 127

    code = env.rt.exec(box.cid, {**ROOT_PROCESS, "args": ["sleep", "30"]},
                       tty=True, detach=True, stdin=False)
    assert code == 0
    wait_for(lambda: len(env.rt.ps(box.cid)) == 2, what="detached exec to show in ps")
    sessions = list((box.bundle / "exec").iterdir())
    assert len(sessions) == 1  # the foreground sessions cleaned up after themselves


EXEC_TTY = """
import sys
from pathlib import Path
from dockyard.runtime.runc import RuncRuntime
rt = RuncRuntime(Path(sys.argv[1]))
sys.exit(rt.exec(sys.argv[2], {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin", "TERM=xterm"],
                               "user": {"uid": 0, "gid": 0}}, tty=True, detach=False, stdin=True))
"""


def _read_until(fd: int, needle: bytes, timeout: float = 15.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_exec_with_tty_under_a_real_terminal(env):
    box = env.run(["sleep", "1000"])
    master, slave = pty.openpty()
    os.set_blocking(master, True)
    import fcntl
    import struct
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 27, 91, 0, 0))
    p = subprocess.Popen([sys.executable, "-c", EXEC_TTY, str(env.rt.state_root), box.cid],
                         stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    os.close(slave)
    try:
        _read_until(master, b"#")  # the shell's prompt
        os.write(master, b"echo hi$((40+2)); stty size\r")
        out = _read_until(master, b"27 91")
        assert b"hi42" in out and b"27 91" in out
        os.write(master, b"exit 7\r")
        assert p.wait(timeout=20) == 7
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def test_attach_to_interactive_container(env):
    box = env.run(["sh"], stdin=True)
    out, err = io.BytesIO(), io.BytesIO()
    detached = env.rt.attach(box.cid, stdin=io.BytesIO(b"echo hello\nexit 6\n"), stdout=out, stderr=err,
                             tty=False)
    assert detached is False
    assert out.getvalue() == b"hello\n"
    assert env.wait_exit(box) == 6
    with pytest.raises(FailedPrecondition):
        env.rt.attach(box.cid, stdin=None, stdout=out, stderr=err, tty=False)


def test_attach_before_start_sees_the_first_output(env):
    box = env.box(["sh", "-c", "echo early; echo warn >&2; read x; echo got $x; exit 9"])
    env.create(box, stdin=True)
    out, err = io.BytesIO(), io.BytesIO()
    detached = env.rt.attach(box.cid, stdin=io.BytesIO(b"it\n"), stdout=out, stderr=err, tty=False,
                             on_attached=lambda: env.rt.start(box.cid))
    assert (detached, out.getvalue(), err.getvalue()) == (False, b"early\ngot it\n", b"warn\n")
    assert env.wait_exit(box) == 9


def test_created_container_can_be_killed_or_deleted(env):
    box = env.box(["sleep", "1000"])
    proc = env.create(box)
    env.rt.kill(box.cid, "KILL")
    assert env.wait_exit(box) == 137
    box2 = env.box(["sleep", "1000"])
    proc = env.create(box2)
    env.rt.delete(box2.cid, force=True)
    with pytest.raises(NotFound):
        env.rt.state(box2.cid)
    wait_for(lambda: not process_alive(proc.conmon_pid), what="conmon to exit")
    assert not process_alive(proc.pid, None)


def test_attach_detach_keys_leave_container_running(env):
    box = env.run(["sh"], stdin=True, tty=True)
    out = io.BytesIO()
    typed = io.BytesIO(b"echo a$((1+1))b\r\x10\x11echo never\r")
    detached = env.rt.attach(box.cid, stdin=typed, stdout=out, stderr=out, tty=True)
    assert detached is True
    wait_for(lambda: b"a2b" in box.log.read_bytes(), what="the command's output in the log")
    assert env.rt.state(box.cid).status == "running"
    out = io.BytesIO()
    assert env.rt.attach(box.cid, stdin=io.BytesIO(b"exit 2\r"), stdout=out, stderr=out, tty=True) is False
    assert env.wait_exit(box) == 2
    assert b"never" not in box.log.read_bytes()


def test_resize_is_seen_inside(env):
    box = env.run(["sh"], stdin=True, tty=True)
    env.rt.resize(box.cid, 33, 111)
    time.sleep(0.3)
    out = io.BytesIO()
    env.rt.attach(box.cid, stdin=io.BytesIO(b"stty size\rexit\r"), stdout=out, stderr=out, tty=True)
    assert b"33 111" in out.getvalue()
    with pytest.raises(InvalidArgument):
        env.rt.resize(box.cid, 0, 10)


def test_logs_follow_streams_while_running_and_stops_at_exit(env):
    box = env.run(["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done; printf tail"])
    seen = []
    for frame in read_log(box.log, follow=True,
                          is_running=lambda: env.rt.read_exit_code(box.exit_dir, box.cid) is None):
        seen.append((frame.data, env.rt.read_exit_code(box.exit_dir, box.cid)))
    assert [d for d, _ in seen] == [b"line1\n", b"line2\n", b"line3\n", b"line4\n", b"line5\n", b"tail"]
    assert seen[0][1] is None  # the first line came while the container was still running
    assert [f.data for f in read_log(box.log, tail=2)] == [b"line5\n", b"tail"]


def test_log_max_size_keeps_the_log_small(env):
    box = env.box(["sh", "-c", "i=0; while [ $i -lt 500 ]; do echo line$i; i=$((i+1)); done"])
    env.rt.create(box.cid, box.bundle, log_path=box.log, exit_dir=box.exit_dir, persist_dir=box.persist,
                  tty=False, stdin=False, exit_command=None, log_max_size=4096)
    env.rt.start(box.cid)
    assert env.wait_exit(box) == 0
    assert box.log.stat().st_size <= 4096
    frames = list(read_log(box.log))
    assert frames and frames[-1].data == b"line499\n"


def test_oom_kill_is_reported(env):
    box = env.box(["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"], memory=32 << 20)
    env.create(box)
    env.rt.start(box.cid)
    assert env.wait_exit(box) == 137
    assert env.rt.oom_killed(box.persist, box.bundle)


def test_twenty_containers_created_concurrently(env):
    boxes = [env.box(["sleep", "1000"]) for _ in range(20)]

    def go(box: Box) -> int:
        proc = env.create(box)
        env.rt.start(box.cid)
        return proc.conmon_pid

    with ThreadPoolExecutor(20) as pool:
        conmons = list(pool.map(go, boxes))
    assert len(set(conmons)) == 20
    states = {st.id: st.status for st in env.rt.list_containers()}
    assert states == {b.cid: "running" for b in boxes}
    rss = [int(line.split()[1]) for pid in conmons
           for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")]
    assert max(rss) < 4096  # KiB; an idle conmon is about 2 MiB, most of it shared libraries
