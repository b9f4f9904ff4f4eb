"""The machine's docker CLI (28.x) driving dockyard through ``dockyard system service``: the CLI's
expectations are the spec.  Each test gets its own data root with busybox loaded and its own
service process on a unix socket (DOCKER_HOST), stopped by its PID at teardown; containers left
behind are killed by the data root's cleanup.

Also here, because they need a real service: OpenAPI validation of the responses that only a
running container produces (list, inspect, top, stats, changes, exec inspect, wait).
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.apiservice import ApiService
from helpers.openapi import validate

pytestmark = pytest.mark.root

DOCKER = shutil.which("docker")
if DOCKER is None:  # the test set-up installs it; a missing docker CLI is a broken machine, not a skip
    raise RuntimeError("the docker CLI is not installed: run scripts/setup.sh")


@pytest.fixture
def svc(busybox, tmp_root):
    s = ApiService(tmp_root, tmp_root.parent)
    try:
        yield s
    finally:
        s.stop()
        assert not os.path.exists(s.socket), "the service left its socket behind"


def docker(svc: ApiService, *args: str, input: bytes | None = None, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run([DOCKER, *args], input=input, capture_output=True, env=svc.env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {p.returncode}\nstdout: {p.stdout!r}\n"
                             f"stderr: {p.stderr!r}\nservice log:\n{svc.log()}")
    return p


def out(svc: ApiService, *args: str, **kw) -> str:
    return docker(svc, *args, **kw).stdout.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float = 20.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


class Terminal:
    """``docker ...`` on a pseudo-terminal, typed into like a person."""

    def __init__(self, svc: ApiService, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(DOCKER, [DOCKER, *args], svc.env)
        self.out = b""

    def expect(self, needle: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.out!r}")
            r, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if r:
                try:
                    self.out += os.read(self.fd, 4096)
                except OSError:
                    raise AssertionError(f"{needle!r} not seen before the end; got {self.out!r}") from None

    def type(self, text: bytes) -> None:
        os.write(self.fd, text)

    def exit_code(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    self.out += os.read(self.fd, 4096)
                except OSError:
                    pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"docker did not exit; output {self.out!r}")


def test_version_and_info_negotiate_api_1_43(svc):
    v = json.loads(out(svc, "version", "--format", "{{json .}}"))
    assert v["Server"]["ApiVersion"] == "1.43" and v["Client"]["ApiVersion"] == "1.43"
    assert out(svc, "info", "--format", "{{.Swarm.LocalNodeState}} {{.OSType}}").strip() == "inactive linux"


def test_run_rm_passes_output_and_exit_codes_through(svc):
    p = docker(svc, "run", "--rm", "busybox", "echo", "hi")
    assert p.stdout == b"hi\n" and p.returncode == 0
    p = docker(svc, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3 and p.stdout == b"out\n" and p.stderr == b"err\n"
    p = docker(svc, "run", "--rm", "busybox", "nosuchcommand", check=False)
    assert p.returncode == 127 and b"nosuchcommand" in p.stderr
    p = docker(svc, "run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input=b"piped in\n")
    assert p.stdout == b"PIPED IN\n"
    assert out(svc, "ps", "-aq") == ""  # --rm: nothing left


def test_run_detached_with_a_published_port(svc):
    port = free_port()
    cid = out(svc, "run", "-d", "--name", "web", "-p", f"{port}:80", "busybox",
              "sh", "-c", "echo hello-from-dockyard > /index.html && exec httpd -f -p 80 -h /").strip()
    assert len(cid) == 64

    def fetch():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return r.read()
        except OSError:
            return None

    assert wait_for(fetch) == b"hello-from-dockyard\n"
    line = out(svc, "ps", "--format", "{{.Names}}|{{.Ports}}|{{.State}}|{{.Image}}")
    assert line == f"web|0.0.0.0:{port}->80/tcp|running|busybox\n"
    assert out(svc, "port", "web", "80").strip() == f"0.0.0.0:{port}"
    docker(svc, "rm", "-f", "web")
    assert out(svc, "ps", "-aq") == ""


def test_run_it_is_a_real_terminal(svc):
    t = Terminal(svc, "run", "-it", "--rm", "--name", "tty", "busybox", "sh")
    t.expect(b"# ")
    t.type(b"echo in-tty-$((6*7)); tty\r")
    t.expect(b"in-tty-42")
    t.expect(b"/dev/pts/")
    t.type(b"exit 5\r")
    assert t.exit_code() == 5


def test_exec_it_and_exec_exit_codes(svc):
    docker(svc, "run", "-d", "--name", "box", "busybox", "sleep", "300")
    t = Terminal(svc, "exec", "-it", "box", "sh")
    t.expect(b"# ")
    t.type(b"echo exec-$((6*7))\r")
    t.expect(b"exec-42")
    t.type(b"exit 4\r")
    assert t.exit_code() == 4
    p = docker(svc, "exec", "box", "sh", "-c", "echo o; echo e >&2; exit 9", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (9, b"o\n", b"e\n")
    p = docker(svc, "exec", "-i", "box", "cat", input=b"through exec stdin\n")
    assert p.stdout == b"through exec stdin\n"
    assert out(svc, "exec", "-e", "X=1", "-w", "/tmp", "box", "sh", "-c", "echo $X $(pwd)") == "1 /tmp\n"
    p = docker(svc, "exec", "box", "nosuchcommand", check=False)
    assert p.returncode == 127
    docker(svc, "rm", "-f", "box")


def test_logs_follow_ends_with_the_container(svc):
    docker(svc, "run", "-d", "--name", "ticker", "busybox", "sh", "-c",
           "for i in 1 2 3; do echo tick $i; echo tock $i >&2; sleep 0.3; done")
    p = docker(svc, "logs", "-f", "ticker", timeout=30)
    assert p.stdout == b"tick 1\ntick 2\ntick 3\n" and p.stderr == b"tock 1\ntock 2\ntock 3\n"
    p = docker(svc, "logs", "--tail", "2", "ticker")  # the last two lines of the log, one per stream
    assert (p.stdout, p.stderr) == (b"tick 3\n", b"tock 3\n")
    stamped = out(svc, "logs", "-t", "ticker").splitlines()
    assert stamped[0].endswith("Z tick 1") and stamped[0][:4].isdigit()
    assert out(svc, "wait", "ticker").strip() == "0"


def test_ps_format_and_inspect(svc):
    docker(svc, "run", "-d", "--name", "a1", "--label", "app=shop", "-e", "K=V", "busybox", "sleep", "300")
    docker(svc, "create", "--name", "a2", "busybox", "true")
    assert out(svc, "ps", "--format", "{{.Names}}") == "a1\n"
    rows = out(svc, "ps", "-a", "--format", "{{.Names}} {{.Status}}").splitlines()
    assert sorted(r.split()[0] for r in rows) == ["a1", "a2"]
    assert any(r.startswith("a2 Created") for r in rows) and any(r.startswith("a1 Up") for r in rows)
    assert out(svc, "ps", "--filter", "label=app=shop", "-q") != ""
    info = json.loads(out(svc, "inspect", "a1"))[0]
    assert info["Name"] == "/a1" and info["State"]["Running"] is True
    assert "K=V" in info["Config"]["Env"] and info["Config"]["Labels"]["app"] == "shop"
    assert out(svc, "inspect", "-f", "{{.State.Status}} {{.Config.Image}}", "a1", "a2").split("\n")[:2] == \
        ["running busybox", "created busybox"]
    p = docker(svc, "inspect", "nosuch", check=False)
    assert p.returncode == 1 and b"No such object: nosuch" in p.stderr
    docker(svc, "rm", "-f", "a1", "a2")


def test_cp_both_ways(svc, tmp_path):
    docker(svc, "run", "-d", "--name", "files", "busybox", "sleep", "300")
    src = tmp_path / "hello.txt"
    src.write_text("from the host\n")
    docker(svc, "cp", str(src), "files:/tmp/")
    assert out(svc, "exec", "files", "cat", "/tmp/hello.txt") == "from the host\n"
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("deep\n")
    docker(svc, "cp", str(tree), "files:/tmp/tree")  # the parent must exist, as in docker
    assert out(svc, "exec", "files", "cat", "/tmp/tree/sub/f") == "deep\n"
    docker(svc, "exec", "files", "sh", "-c", "mkdir -p /data && echo made-inside > /data/x")
    dst = tmp_path / "back"
    docker(svc, "cp", "files:/data", str(dst))
    assert (dst / "x").read_text() == "made-inside\n"
    raw = docker(svc, "cp", "files:/data/x", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        assert tf.extractfile("x").read() == b"made-inside\n"
    p = docker(svc, "cp", "files:/nonexistent", str(tmp_path / "none"), check=False)
    assert p.returncode != 0 and b"Could not find the file /nonexistent" in p.stderr
    docker(svc, "rm", "-f", "files")


def test_stats_top_wait_and_rm_f(svc):
    docker(svc, "run", "-d", "--name", "busy", "busybox", "sh", "-c", "sleep 300")
    stats = out(svc, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}").split()
    assert stats[0] == "busy" and int(stats[1]) >= 1 and "/" in stats
    top = out(svc, "top", "busy")
    assert top.splitlines()[0].split()[:2] == ["UID", "PID"] and "sleep 300" in top
    assert "sleep" in out(svc, "top", "busy", "-o", "pid,comm")
    docker(svc, "run", "-d", "--name", "quitter", "busybox", "sh", "-c", "sleep 0.5; exit 4")
    assert out(svc, "wait", "quitter") == "4\n"
    docker(svc, "rm", "-f", "busy", "quitter")
    assert out(svc, "ps", "-aq") == ""
    p = docker(svc, "rm", "busy", check=False)
    assert p.returncode == 1 and b"No such container: busy" in p.stderr


def test_events_between_since_and_until(svc):
    since = int(time.time()) - 1
    docker(svc, "run", "--rm", "--name", "evented", "busybox", "true")
    docker(svc, "volume", "create", "evvol", check=False)
    until = int(time.time()) + 2
    p = docker(svc, "events", "--since", str(since), "--until", str(until), "--filter", "container=evented",
               "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}", timeout=30)
    assert p.stdout.decode().splitlines() == ["container create evented", "container attach evented",
                                              "container start evented", "container die evented",
                                              "container destroy evented"]
    p = docker(svc, "events", "--since", str(since), "--until", str(until), "--filter", "event=die",
               "--format", "{{json .}}", timeout=30)
    msg = json.loads(p.stdout.splitlines()[0])
    assert msg["Actor"]["Attributes"]["exitCode"] == "0" and msg["status"] == "die"


def test_system_df(svc):
    docker(svc, "run", "-d", "--name", "dfbox", "busybox", "sleep", "300")
    rows = {line.split()[0]: line.split() for line in out(svc, "system", "df").splitlines()[1:]}
    assert rows["Images"][1:3] == ["1", "1"]
    assert rows["Containers"][1:3] == ["1", "1"]
    assert "Local" in rows and "Build" in rows
    verbose = out(svc, "system", "df", "-v")
    assert "dfbox" in verbose and "busybox" in verbose
    docker(svc, "rm", "-f", "dfbox")


def test_responses_of_a_real_container_fit_the_reference(svc):
    docker(svc, "run", "-d", "--name", "spec", "-p", "80", "-v", "/data", "busybox", "sleep", "300")
    docker(svc, "exec", "spec", "sh", "-c", "echo x > /tmp/new")
    cid = out(svc, "inspect", "-f", "{{.Id}}", "spec").strip()

    def check(method: str, path: str, template: str, status: int = 200, body=None):
        got, _, data = svc.request(method, "/v1.43" + path, body)
        assert got == status, data
        validate(template, method.lower(), status, data)
        return json.loads(data) if data else None

    ctrs = check("GET", "/containers/json?all=1&size=1", "/containers/json")
    assert ctrs[0]["Names"] == ["/spec"] and ctrs[0]["Ports"][0]["PrivatePort"] == 80
    ins = check("GET", f"/containers/{cid}/json?size=1", "/containers/{id}/json")
    assert ins["HostConfig"]["LogConfig"]["Type"] == "json-file"
    check("GET", f"/containers/{cid}/top", "/containers/{id}/top")
    stats = check("GET", f"/containers/{cid}/stats?stream=0", "/containers/{id}/stats")
    assert stats["cpu_stats"]["system_cpu_usage"] > 0 and stats["memory_stats"]["usage"] > 0
    changes = check("GET", f"/containers/{cid}/changes", "/containers/{id}/changes")
    assert {"Path": "/tmp/new", "Kind": 1} in changes and {"Path": "/tmp", "Kind": 0} in changes
    ex = check("POST", f"/containers/{cid}/exec", "/containers/{id}/exec", 201,
               {"Cmd": ["true"], "AttachStdout": False})
    check("POST", f"/exec/{ex['Id']}/start", "/exec/{id}/start", 200, {"Detach": True})
    ei = check("GET", f"/exec/{ex['Id']}/json", "/exec/{id}/json")
    assert ei["ContainerID"] == cid
    check("POST", f"/containers/{cid}/kill", "/containers/{id}/kill", 204)
    w = check("POST", f"/containers/{cid}/wait", "/containers/{id}/wait")
    assert w["StatusCode"] == 137
    check("POST", f"/containers/{cid}/start", "/containers/{id}/start", 204)
    check("POST", f"/containers/{cid}/stop?t=1", "/containers/{id}/stop", 204)
    check("POST", f"/containers/{cid}/stop", "/containers/{id}/stop", 304)
    check("DELETE", f"/containers/{cid}?v=1", "/containers/{id}", 204)
    pruned = check("POST", "/containers/prune", "/containers/prune")
    assert pruned["SpaceReclaimed"] >= 0


def test_service_socket_is_root_only(svc):
    st = os.stat(svc.socket)
    assert st.st_uid == 0 and st.st_gid == 0 and st.st_mode & 0o777 in (0o600, 0o660)
    assert Path(svc.socket).is_socket()


def test_docker_over_tcp_with_tlsverify(svc, busybox, tmp_root, tmp_path):
    from helpers.apiservice import make_tls_files

    files = make_tls_files(tmp_path / "tls")
    port = free_port()
    tls_svc = ApiService(tmp_root, tmp_path / "tls-svc", "-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
                         "--tlscacert", str(files["ca"]), "--tlscert", str(files["cert"]),
                         "--tlskey", str(files["key"]))
    try:
        env = {**tls_svc.env, "DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1",
               "DOCKER_CERT_PATH": str(files["ccert"].parent)}
        p = subprocess.run([DOCKER, "run", "--rm", "busybox", "echo", "over-tls"], env=env, capture_output=True,
                           timeout=120)
        assert (p.returncode, p.stdout) == (0, b"over-tls\n"), p.stderr
        no_cert = {**env, "DOCKER_CERT_PATH": str(tmp_path / "nothing")}
        (tmp_path / "nothing").mkdir()
        files["cca"].rename(tmp_path / "nothing" / "ca.pem")  # trusts the server, has no client cert
        p = subprocess.run([DOCKER, "version"], env=no_cert, capture_output=True, timeout=60)
        assert p.returncode != 0 and b"certificate required" in p.stderr
    finally:
        tls_svc.stop()


def test_containers_outlive_the_service_and_the_cli_sees_its_events(svc, busybox):
    since = int(time.time()) - 1
    cid = out(svc, "run", "-d", "--name", "survivor", "busybox", "sleep", "300").strip()
    assert svc.stop() == 0 and not os.path.exists(svc.socket)  # SIGTERM: a clean stop
    assert busybox("ps", "--format", "{{.Names}} {{.State}}").stdout == "survivor running\n"
    again = ApiService(svc.root, Path(svc.socket).parent)
    try:
        assert out(again, "ps", "-q", "--no-trunc").strip() == cid
        docker(again, "rm", "-f", "survivor")
    finally:
        again.stop()
    lines = busybox("events", "--since", str(since), "--until", str(int(time.time()) + 1), "--filter",
                    "container=survivor", "--format", "{{.Action}}").stdout.split()
    assert lines == ["create", "start", "kill", "die", "destroy"]
