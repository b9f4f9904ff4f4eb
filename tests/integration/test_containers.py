"""Containers end to end on real runc and conmon, driven through the dockyard command."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import runtimeschema

pytestmark = pytest.mark.root


def inspect(d, name: str) -> dict:
    return json.loads(d("inspect", name).stdout)[0]


def wait_for(pred, timeout: float = 15.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def container_ids(d) -> list[str]:
    return d("ps", "-aq", "--no-trunc").stdout.split()


def test_run_output_exit_code_and_logs(busybox):
    p = busybox("run", "--name", "t1", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3
    assert p.stdout == "out\n" and p.stderr == "err\n"
    logs = busybox("logs", "t1")
    assert logs.stdout == "out\n" and logs.stderr == "err\n"
    assert busybox("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.startswith("t1 Exited (3)")
    assert busybox("wait", "t1").stdout.strip() == "3"
    ts = busybox("logs", "-t", "t1").stdout
    assert ts.split(" ", 1)[0].endswith("Z") and ts.split(" ", 1)[1] == "out\n"
    p = busybox("run", "--rm", "busybox", "echo", "hi")
    assert p.stdout == "hi\n" and p.returncode == 0
    assert busybox("ps", "-a", "-q").stdout.split() == [inspect(busybox, "t1")["Id"][:12]]


def test_isolation_from_inside(busybox):
    out = busybox("run", "--rm", "--hostname", "box1", "busybox", "sh", "-c",
                  "echo pid=$$; hostname; ps -o pid | wc -l; grep CapEff /proc/self/status; "
                  "grep Seccomp: /proc/self/status; grep NoNewPrivs /proc/self/status").stdout.split("\n")
    assert out[0] == "pid=1"
    assert out[1] == "box1"
    assert int(out[2]) <= 4  # header + sh + ps (+ wc): no host process is visible
    assert out[3].split()[1] == "00000000a80425fb"  # Docker's default capability set
    assert out[4].split()[1] == "2"  # a seccomp filter is on
    out = busybox("run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--security-opt",
                  "no-new-privileges", "busybox", "sh", "-c",
                  "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status").stdout.split("\n")
    assert out[0].split()[1] == "0000000000001000"
    assert out[1].split()[1] == "1"
    p = busybox("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c",
                "touch /x 2>&1; echo rc=$?; touch /scratch/ok && echo tmpfs-ok", check=False)
    assert "Read-only file system" in p.stdout and "tmpfs-ok" in p.stdout
    out = busybox("run", "--rm", "--shm-size", "16m", "busybox", "df", "-k", "/dev/shm").stdout
    assert out.split("\n")[1].split()[1] == "16384"
    # /proc is masked as Docker masks it
    assert busybox("run", "--rm", "busybox", "cat", "/proc/keys", check=False).stdout == ""


def test_memory_limit_oom_killed(busybox):
    p = busybox("run", "--name", "oom", "-m", "32m", "--memory-swap", "32m", "busybox", "sh", "-c",
                "dd if=/dev/zero of=/dev/null bs=128M count=1", check=False)
    assert p.returncode == 137
    info = inspect(busybox, "oom")
    assert info["State"]["OOMKilled"] is True
    assert info["HostConfig"]["Memory"] == 32 * 1024 * 1024


def test_limits_and_ulimits(busybox):
    cid = busybox("run", "-d", "--cpus", "0.5", "--pids-limit", "50", "--cpu-shares", "512",
                  "--cpuset-cpus", "0", "--ulimit", "nofile=256:512", "busybox", "sleep", "60").stdout.strip()
    assert busybox("exec", cid, "sh", "-c", "ulimit -n; ulimit -Hn").stdout.split() == ["256", "512"]
    cg = Path("/sys/fs/cgroup")
    if (cg / "cgroup.controllers").exists():
        assert (cg / "dockyard" / cid / "pids.max").read_text().strip() == "50"
    else:
        assert (cg / "pids" / "dockyard" / cid / "pids.max").read_text().strip() == "50"
        assert (cg / "cpu" / "dockyard" / cid / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cg / "cpu" / "dockyard" / cid / "cpu.shares").read_text().strip() == "512"
        assert (cg / "cpuset" / "dockyard" / cid / "cpuset.cpus").read_text().strip() == "0"
    # the bundle's config validates against the OCI runtime schema
    config = json.loads((busybox.root / "containers" / cid / "bundle" / "config.json").read_text())
    runtimeschema.validate(config)
    busybox("update", "--pids-limit", "70", cid)
    assert inspect(busybox, cid)["HostConfig"]["PidsLimit"] == 70
    busybox("rm", "-f", cid)
    hard = int(subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout)
    p = busybox("run", "--rm", "--ulimit", f"nofile={hard * 2}:{hard * 2}", "busybox", "true", check=False)
    assert p.returncode == 125 and "nofile" in p.stderr


def test_bad_input_leaves_nothing(busybox):
    cases = [
        (("run", "nosuch"), 125, "Unable to find image 'nosuch:latest' locally"),
        (("run", "busybox", "nosuchcmd"), 127, 'exec: "nosuchcmd": executable file not found in $PATH'),
        (("run", "-m", "12XB", "busybox", "true"), 125, 'invalid argument "12XB" for "-m, --memory" flag'),
        (("run", "-u", "nosuch", "busybox", "true"), 125, "unable to find user nosuch"),
        (("run", "--restart", "sometimes", "busybox", "true"), 125, "invalid restart policy"),
        (("run", "--cap-add", "FOO", "busybox", "true"), 125, "unknown capability"),
    ]
    for args, code, message in cases:
        p = busybox(*args, check=False)
        assert p.returncode == code, (args, p.stderr)
        assert message in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) <= 2
    assert container_ids(busybox) == []
    assert not any((busybox.root / "containers").glob("[0-9a-f]*"))
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(busybox.root) not in mounts
    busybox("run", "--name", "dup", "busybox", "true")
    p = busybox("run", "--name", "dup", "busybox", "true", check=False)
    assert p.returncode == 125
    assert 'The container name "/dup" is already in use by container' in p.stderr
    assert len(container_ids(busybox)) == 1


def test_detached_lifecycle_exec_stop_kill(busybox):
    cid = busybox("run", "-d", "--name", "svc", "-e", "GREETING=hello", "busybox", "sh", "-c",
                  "trap 'exit 0' TERM; while true; do sleep 0.2; done").stdout.strip()
    assert len(cid) == 64
    assert busybox("exec", "svc", "sh", "-c", "echo $GREETING from $(hostname)").stdout == f"hello from {cid[:12]}\n"
    assert busybox("exec", "-e", "X=1", "-w", "/tmp", "svc", "sh", "-c", "echo $X $PWD").stdout == "1 /tmp\n"
    assert busybox("exec", "-u", "nobody", "svc", "id", "-u").stdout.strip() == "65534"
    p = busybox("exec", "svc", "nosuch", check=False)
    assert p.returncode == 127
    top = busybox("top", "svc").stdout.splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and any("while true" in l for l in top[1:])
    stats = busybox("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "svc").stdout.split()
    assert stats[0] == "svc" and int(stats[1]) >= 1
    busybox("pause", "svc")
    assert inspect(busybox, "svc")["State"]["Status"] == "paused"
    busybox("unpause", "svc")
    busybox("rename", "svc", "svc2")
    assert inspect(busybox, cid)["Name"] == "/svc2"
    t0 = time.monotonic()
    busybox("stop", "svc2")
    assert time.monotonic() - t0 < 5  # the trap exits on SIGTERM: no 10 s wait
    info = inspect(busybox, cid)
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    busybox("start", "svc2")
    assert inspect(busybox, cid)["State"]["Running"] is True
    busybox("kill", "-s", "KILL", "svc2")
    wait_for(lambda: inspect(busybox, cid)["State"]["Status"] == "exited")
    assert inspect(busybox, cid)["State"]["ExitCode"] == 137
    p = busybox("rm", "nosuch", check=False)
    assert p.returncode == 1 and "No such container: nosuch" in p.stderr
    busybox("rm", "svc2")
    assert container_ids(busybox) == []


def test_rm_running_refused_and_forced(busybox):
    busybox("run", "-d", "--name", "busy", "busybox", "sleep", "100")
    p = busybox("rm", "busy", check=False)
    assert p.returncode == 1 and "You cannot remove a running container" in p.stderr
    busybox("rm", "-f", "busy")
    assert container_ids(busybox) == []
    assert str(busybox.root) not in Path("/proc/self/mountinfo").read_text()


def test_container_outlives_killed_dockyard_and_ps_tells_truth(busybox):
    proc = busybox.popen("run", "--name", "survivor", "busybox", "sh", "-c", "sleep 100",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: busybox("ps", "-q").stdout.strip())
    proc.kill()  # SIGKILL the attached dockyard run
    proc.wait()
    time.sleep(0.3)
    assert busybox("ps", "--format", "{{.Names}} {{.State}}").stdout.strip() == "survivor running"
    info = inspect(busybox, "survivor")
    conmon_pid = int((busybox.root / "containers" / info["Id"] / "bundle" / "conmon.pid").read_text())
    os.kill(conmon_pid, signal.SIGKILL)  # the monitor dies: the container keeps running
    time.sleep(0.3)
    assert inspect(busybox, "survivor")["State"]["Running"] is True
    os.kill(info["State"]["Pid"], signal.SIGKILL)  # then the container dies, with nobody watching
    wait_for(lambda: inspect(busybox, "survivor")["State"]["Status"] == "exited")
    assert busybox("ps", "-q").stdout == ""
    # a container killed while its monitor lives: conmon records 137
    busybox("run", "-d", "--name", "victim", "busybox", "sleep", "100")
    os.kill(inspect(busybox, "victim")["State"]["Pid"], signal.SIGKILL)
    wait_for(lambda: inspect(busybox, "victim")["State"]["Status"] == "exited")
    assert inspect(busybox, "victim")["State"]["ExitCode"] == 137


def test_restart_policies(busybox):
    busybox("run", "-d", "--name", "onfail", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
    busybox("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", "sleep 0.3")
    busybox("run", "-d", "--name", "never", "busybox", "sh", "-c", "exit 1")
    wait_for(lambda: inspect(busybox, "onfail")["RestartCount"] == 2
             and inspect(busybox, "onfail")["State"]["Status"] == "exited", timeout=20)
    time.sleep(1)
    assert inspect(busybox, "onfail")["RestartCount"] == 2  # never more than the maximum
    wait_for(lambda: inspect(busybox, "always")["RestartCount"] >= 2, timeout=20)
    assert inspect(busybox, "never")["RestartCount"] == 0
    busybox("stop", "always")
    count = inspect(busybox, "always")["RestartCount"]
    time.sleep(1.5)
    assert inspect(busybox, "always")["State"]["Status"] == "exited"
    assert inspect(busybox, "always")["RestartCount"] == count  # a manual stop is not restarted
    busybox("run", "-d", "--name", "unless", "--restart", "unless-stopped", "busybox", "sleep", "100")
    # after a host reboot (simulated: containers and monitors gone), `system boot` brings back
    # "always" and "unless-stopped" ones, not the stopped-by-user "unless" one.
    busybox("stop", "unless")
    before = inspect(busybox, "always")["State"]["StartedAt"]
    started = busybox("system", "boot").stdout.split()
    assert "always" in started and "unless" not in started and "never" not in started
    assert inspect(busybox, "always")["State"]["StartedAt"] > before


def test_stop_during_restart_back_off(busybox):
    """A stop between two runs of the restart policy cancels the pending restart at once."""
    busybox("run", "-d", "--name", "flap", "--restart", "always", "busybox", "sh", "-c", "exit 1")
    # From the third restart on, the back-off is >= 0.8 s: the container is mostly "restarting".
    wait_for(lambda: (s := inspect(busybox, "flap"))["RestartCount"] >= 3
             and s["State"]["Status"] == "restarting", timeout=30, interval=0.05)
    busybox("stop", "flap")
    state = inspect(busybox, "flap")
    assert state["State"]["Status"] == "exited"
    time.sleep(2)
    later = inspect(busybox, "flap")
    assert later["State"]["Status"] == "exited" and later["RestartCount"] == state["RestartCount"]


def test_health_check_turns_unhealthy_and_back(busybox):
    busybox("run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok", "--health-interval", "0.5s",
            "--health-retries", "2", "busybox", "sleep", "100")
    assert "(health: starting)" in busybox("ps", "--format", "{{.Status}}").stdout
    wait_for(lambda: inspect(busybox, "hc")["State"]["Health"]["Status"] == "unhealthy")
    assert "(unhealthy)" in busybox("ps", "--format", "{{.Status}}").stdout
    assert busybox("ps", "-q", "--filter", "health=unhealthy").stdout.strip() == inspect(busybox, "hc")["Id"][:12]
    busybox("exec", "hc", "touch", "/tmp/ok")
    wait_for(lambda: inspect(busybox, "hc")["State"]["Health"]["Status"] == "healthy")
    log = inspect(busybox, "hc")["State"]["Health"]["Log"]
    assert log[-1]["ExitCode"] == 0 and log[0]["ExitCode"] == 1
    busybox("run", "-d", "--name", "nohc", "--no-healthcheck", "busybox", "sleep", "100")
    assert "Health" not in inspect(busybox, "nohc")["State"]


def _pty_session(d, args, script: list[bytes], wait: float = 2.0) -> tuple[bytes, int]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "dockyard", "--root", str(d.root), *args])
    out = b""

    def read(t: float) -> None:
        nonlocal out
        end = time.time() + t
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    return

    read(wait)
    for line in script:
        os.write(fd, line)
        read(1.0)
    read(1.0)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out, os.waitstatus_to_exitcode(status)


def test_interactive_terminal_and_detach_keys(busybox):
    out, code = _pty_session(busybox, ["run", "-it", "--name", "tty1", "busybox", "sh"],
                             [b"echo hi-$((40+2))\r", b"exit 7\r"])
    assert b"hi-42" in out and code == 7
    out, code = _pty_session(busybox, ["run", "-it", "--name", "tty2", "busybox", "sh"],
                             [b"echo before\r", b"\x10\x11"])
    assert code == 0 and b"before" in out
    assert inspect(busybox, "tty2")["State"]["Running"] is True  # Ctrl-P Ctrl-Q detached, still running
    out, code = _pty_session(busybox, ["exec", "-it", "tty2", "sh"], [b"echo in-exec\r", b"exit 3\r"], wait=1.0)
    assert b"in-exec" in out and code == 3
    p = busybox("exec", "-i", "tty2", "cat", input="piped\n")
    assert p.stdout.replace("\r", "") == "piped\n"


def test_cp_commit_export(busybox, tmp_path):
    busybox("run", "-d", "--name", "box", "busybox", "sleep", "100")
    (tmp_path / "in.txt").write_text("payload\n")
    busybox("cp", str(tmp_path / "in.txt"), "box:/tmp/")
    assert busybox("exec", "box", "cat", "/tmp/in.txt").stdout == "payload\n"
    busybox("cp", "box:/etc/passwd", str(tmp_path / "pw"))
    assert (tmp_path / "pw").read_text().startswith("root:")
    p = busybox("cp", "box:/nosuch", str(tmp_path), check=False)
    assert p.returncode != 0 and "Could not find the file /nosuch in container box" in p.stderr
    image_id = busybox("commit", "-c", "ENV COMMITTED=1", "-m", "snapshot", "box", "committed:1").stdout.strip()
    assert image_id.startswith("sha256:")
    out = busybox("run", "--rm", "committed:1", "sh", "-c", "cat /tmp/in.txt; echo $COMMITTED").stdout
    assert out == "payload\n1\n"
    tar = busybox("export", "box", binary=True).stdout
    import io
    import tarfile

    names = tarfile.open(fileobj=io.BytesIO(tar)).getnames()
    assert "tmp/in.txt" in names and "bin/busybox" in names
    p = busybox("rmi", "busybox", check=False)
    assert p.returncode == 1 and "container" in p.stderr and "is using its referenced image" in p.stderr


def test_init_and_cidfile_and_prune(busybox, tmp_path):
    cidfile = tmp_path / "cid"
    busybox("run", "--init", "--cidfile", str(cidfile), "--name", "withinit", "busybox", "sh", "-c",
            "cat /proc/1/comm")
    assert len(cidfile.read_text()) == 64
    assert busybox("logs", "withinit").stdout.strip() in ("catatonit", "tini", "docker-init")
    busybox("create", "--name", "fresh", "busybox", "true")
    assert busybox("ps", "-a", "--filter", "status=created", "--format", "{{.Names}}").stdout.strip() == "fresh"
    out = busybox("container", "prune", "-f").stdout
    assert "Deleted Containers:" in out and "Total reclaimed space:" in out
    assert container_ids(busybox) == []


def test_fifty_concurrent_runs(busybox):
    procs = [busybox.popen("run", "-d", "--name", f"c{i}", "busybox", "sleep", "60",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(50)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        ids.append(out.decode().strip())
    assert len(set(ids)) == 50
    listed = busybox("ps", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}").stdout.splitlines()
    assert len(listed) == 50
    assert sorted(l.split()[0] for l in listed) == sorted(ids)
    assert {l.split()[2] for l in listed} == {"running"}
    busybox("rm", "-f", *ids, timeout=600)
    assert container_ids(busybox) == []


def _root_mount_options(text: str) -> set[str]:
    """The options of the container's / in ``cat /proc/self/mountinfo`` from inside it."""
    for line in text.splitlines():
        fields = line.split(" - ", 1)
        if fields[0].split()[4] == "/":
            return set(fields[0].split()[5].split(",")) | set(fields[1].split()[2].split(","))
    raise AssertionError(f"no / in {text!r}")


def test_rm_containers_have_a_volatile_root(busybox):
    """--rm writes are thrown away, so their overlay skips syncs (as podman's); others keep them."""
    opts = _root_mount_options(busybox("run", "--rm", "busybox", "cat", "/proc/self/mountinfo").stdout)
    assert "volatile" in opts or "fsync=volatile" in opts, opts
    kept = _root_mount_options(busybox("run", "--name", "kept", "busybox", "cat", "/proc/self/mountinfo").stdout)
    assert not {"volatile", "fsync=volatile"} & kept, kept
    # A created --rm container whose rootfs was unmounted (a reboot before its start) still starts:
    # the kernel's mark on the volatile work dir is cleared for a disposable upper dir.
    cid = busybox("create", "--rm", "busybox", "echo", "started").stdout.strip()
    rootfs = busybox.root / "containers" / cid / "bundle" / "rootfs"
    subprocess.run(["umount", str(rootfs)], check=True)
    assert busybox("start", "-a", cid).stdout == "started\n"
    wait_for(lambda: cid not in container_ids(busybox))
