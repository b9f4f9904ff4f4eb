"""docker-py (PyPI ``docker``) driving dockyard through ``dockyard system service``: the high-level
client's container and exec workflow, then the low-level APIClient calls it is built on
(create_container, start, attach, logs, exec_create/exec_start, wait, remove), hijacked stdin
included.  docker-py's expectations are the spec."""

from __future__ import annotations

import io
import socket
import struct
import tarfile
import time

import docker
import pytest
from docker.errors import APIError, ContainerError, NotFound
from helpers.apiservice import ApiService

pytestmark = pytest.mark.root


@pytest.fixture
def svc(busybox, tmp_root):
    s = ApiService(tmp_root, tmp_root.parent)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def client(svc):
    c = docker.DockerClient(base_url=f"unix://{svc.socket}", version="auto", timeout=120)
    try:
        yield c
    finally:
        c.close()


def read_frames(sock, want_exit: bool = True, timeout: float = 20) -> list[tuple[int, bytes]]:
    """Multiplexed frames from a hijacked socket until it closes."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    frames = []
    while data:
        stream, size = struct.unpack(">BxxxI", data[:8])
        frames.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return frames


def test_high_level_container_and_exec_workflow(client):
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.43"
    assert client.containers.run("busybox", ["echo", "hello from docker-py"], remove=True) == \
        b"hello from docker-py\n"
    with pytest.raises(ContainerError) as err:
        client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True, stderr=True)
    assert err.value.exit_status == 3

    c = client.containers.run("busybox", ["sh", "-c", "echo started; sleep 300"], detach=True, name="py1",
                              labels={"suite": "py"}, environment={"GREETING": "hi"})
    c.reload()
    assert c.status == "running" and c.name == "py1" and c.labels["suite"] == "py"
    assert [x.name for x in client.containers.list(filters={"label": "suite=py"})] == ["py1"]
    assert client.containers.get("py1").id == c.id

    r = c.exec_run(["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"], demux=True)
    assert r.exit_code == 3 and r.output == (b"hi\n", b"oops\n")
    r = c.exec_run("cat /etc/hostname", user="nobody", workdir="/tmp")
    assert r.exit_code == 0 and r.output.strip() == c.id[:12].encode()
    chunks = list(c.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; done"], stream=True).output)
    assert b"".join(chunks) == b"1\n2\n3\n"
    r = c.exec_run("tty", tty=True)
    assert r.output.startswith(b"/dev/pts/")

    assert b"started" in c.logs()
    top = c.top()
    assert "sleep 300" in " ".join(" ".join(p) for p in top["Processes"])
    s = c.stats(stream=False)
    assert s["name"] == "/py1" and s["pids_stats"]["current"] >= 1

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"put by docker-py\n"
        info = tarfile.TarInfo("put.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    assert c.put_archive("/tmp", buf.getvalue()) is True
    bits, stat = c.get_archive("/tmp/put.txt")
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
        assert tf.extractfile("put.txt").read() == b"put by docker-py\n"
    assert stat["name"] == "put.txt" and stat["size"] == len(b"put by docker-py\n")
    assert {"Path": "/tmp/put.txt", "Kind": 1} in c.diff()

    c.pause()
    c.reload()
    assert c.status == "paused"
    c.unpause()
    c.rename("py2")
    c.reload()
    assert c.name == "py2"
    c.update(mem_limit="64m")
    assert c.attrs["HostConfig"]["Memory"] in (0, 64 << 20)
    c.reload()
    assert c.attrs["HostConfig"]["Memory"] == 64 << 20
    c.restart(timeout=1)
    c.reload()
    assert c.status == "running" and c.attrs["RestartCount"] == 0
    c.kill()
    assert c.wait()["StatusCode"] == 137
    c.remove()
    with pytest.raises(NotFound):
        client.containers.get("py2")
    info = client.info()
    assert info["Containers"] == 0
    df = client.df()
    assert df["Containers"] == [] and len(df["Images"]) == 1
    pruned = client.containers.prune()
    assert pruned["SpaceReclaimed"] == 0


def test_low_level_api_client(svc, client):
    api = client.api
    hc = api.create_host_config(restart_policy={"Name": "no"}, binds=None)
    cid = api.create_container("busybox", ["sh", "-c", "echo a; echo b >&2; exit 2"], host_config=hc,
                               name="ll1")["Id"]
    sock = api.attach_socket(cid, params={"stdout": 1, "stderr": 1, "stream": 1})
    api.start(cid)
    frames = read_frames(sock._sock)
    sock.close()
    assert frames == [(1, b"a\n"), (2, b"b\n")]
    assert api.wait(cid) == {"StatusCode": 2, "Error": None}
    assert api.logs(cid, stdout=True, stderr=False) == b"a\n"
    assert api.logs(cid, stdout=False, stderr=True) == b"b\n"
    assert api.logs(cid, stderr=False, timestamps=True).split(b" ", 1)[1] == b"a\n"
    assert api.inspect_container(cid)["State"]["ExitCode"] == 2
    api.remove_container(cid)

    # stdin through a hijacked attach: written, half-closed, and the output still comes back
    cid = api.create_container("busybox", ["sh", "-c", "tr a-z A-Z; echo done"], stdin_open=True,
                               name="ll2")["Id"]  # docker-py sets AttachStdin and StdinOnce with it
    sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    api.start(cid)
    raw = sock._sock
    raw.sendall(b"shout this\n")
    raw.shutdown(socket.SHUT_WR)
    frames = read_frames(raw)
    sock.close()
    assert b"".join(d for s, d in frames if s == 1) == b"SHOUT THIS\ndone\n"
    assert api.wait(cid)["StatusCode"] == 0
    api.remove_container(cid)

    # exec: create, start (detached and attached), inspect, resize a tty session
    cid = api.create_container("busybox", ["sleep", "300"], name="ll3")["Id"]
    api.start(cid)
    ex = api.exec_create(cid, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert api.exec_inspect(ex["Id"])["Running"] is False
    out = api.exec_start(ex["Id"], demux=True)
    assert out == (b"out\n", b"err\n")
    info = api.exec_inspect(ex["Id"])
    assert info["ExitCode"] == 5 and info["ProcessConfig"]["entrypoint"] == "sh"
    ex = api.exec_create(cid, ["sh", "-c", "sleep 1; stty size"], tty=True)
    sock = api.exec_start(ex["Id"], tty=True, socket=True)
    for _ in range(50):
        try:
            api.exec_resize(ex["Id"], height=33, width=111)
            break
        except APIError:
            time.sleep(0.05)  # the session is not up yet
    data = b""
    raw = sock._sock
    raw.settimeout(20)
    while chunk := raw.recv(4096):
        data += chunk
    sock.close()
    assert b"33 111" in data
    ex = api.exec_create(cid, ["touch", "/tmp/detached"])
    assert not api.exec_start(ex["Id"], detach=True)  # docker-py returns the (empty) body as text
    time.sleep(0.5)
    assert api.exec_start(api.exec_create(cid, ["ls", "/tmp/detached"])["Id"]) == b"/tmp/detached\n"
    api.kill(cid)
    assert api.wait(cid)["StatusCode"] == 137
    api.remove_container(cid, v=True)
    assert api.containers(all=True) == []

    since = int(time.time()) - 5
    evs = list(api.events(since=since, until=int(time.time()) + 1, decode=True,
                          filters={"container": "ll3", "event": ["create", "start", "die", "destroy"]}))
    assert [e["Action"] for e in evs] == ["create", "start", "die", "destroy"]
