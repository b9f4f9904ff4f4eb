"""The real docker CLI (28.x) driving dockyard's Engine API: build (the classic builder: there is no
buildx here), volumes, networks, images, save/load, login/push/pull against dockyard's registry,
system df.

Each test starts ``dockyard system service`` (helpers/service.py) on a unix socket under its own data root (busybox
loaded) and points DOCKER_HOST at it; HOME and DOCKER_CONFIG are private, so logins land in a
throwaway config.json.  Containers the tests need are made with the dockyard command on the same
root (it is daemonless); every server is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Dockyard
from helpers.service import start_service, stop

pytestmark = pytest.mark.root

DOCKER = shutil.which("docker") or "docker"


@dataclass
class DockerCLI:
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, input: bytes | str | None = None, check: bool = True, timeout: float = 300,
                 binary: bool = False) -> subprocess.CompletedProcess:
        data = input.encode() if isinstance(input, str) else input
        p = subprocess.run([DOCKER, *args], input=data, capture_output=True, env=self.env, cwd=self.cwd,
                           timeout=timeout, start_new_session=True,  # no terminal: the CLI never prompts
                           **({} if data is not None else {"stdin": subprocess.DEVNULL}))
        p.stderr = p.stderr.decode(errors="replace")
        if not binary:
            p.stdout = p.stdout.decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {p.returncode}\n"
                                 f"stdout: {p.stdout!r}\nstderr: {p.stderr}")
        return p


@pytest.fixture
def docker(busybox: Dockyard, tmp_root: Path, scratch: Path) -> Iterator[DockerCLI]:
    proc, sock = start_service(tmp_root, scratch)
    home = scratch / "home"
    (home / ".docker").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update({"DOCKER_HOST": f"unix://{sock}", "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"),
                "DOCKER_CLI_HINTS": "false"})
    try:
        yield DockerCLI(env, scratch)
    finally:
        stop(proc)
        print((scratch / "d-service.log").read_text(errors="replace"))  # shown when the test failed


def test_volumes(docker: DockerCLI) -> None:
    assert docker("volume", "create", "--label", "team=a", "shared").stdout.strip() == "shared"
    anon = docker("volume", "create").stdout.strip()
    assert len(anon) == 64
    out = docker("volume", "ls").stdout.splitlines()
    assert out[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(line.split()[1] for line in out[1:]) == sorted([anon, "shared"])
    assert docker("volume", "ls", "-q", "--filter", "label=team=a").stdout.split() == ["shared"]
    [vol] = json.loads(docker("volume", "inspect", "shared").stdout)
    assert vol["Name"] == "shared" and vol["Driver"] == "local" and vol["Labels"] == {"team": "a"}
    assert docker("volume", "inspect", "-f", "{{.Mountpoint}}", "shared").stdout.strip().endswith(
        "/volumes/shared/_data")
    assert docker("volume", "rm", "shared", anon).stdout.split() == ["shared", anon]
    p = docker("volume", "inspect", "shared", check=False)
    assert p.returncode == 1 and "no such volume" in p.stderr
    p = docker("volume", "rm", "shared", check=False)
    assert p.returncode == 1 and p.stderr.startswith("Error response from daemon: get shared: no such volume")


def test_networks(docker: DockerCLI, busybox: Dockyard) -> None:
    busybox("create", "--name", "c1", "busybox", "true")
    net_id = docker("network", "create", "--subnet", "10.88.0.0/24", "--label", "app=shop", "shop").stdout.strip()
    assert len(net_id) == 64
    p = docker("network", "create", "shop", check=False)
    assert p.returncode == 1 and "network with name shop already exists" in p.stderr
    out = docker("network", "ls").stdout.splitlines()
    assert out[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert {line.split()[1] for line in out[1:]} == {"bridge", "host", "none", "shop"}
    assert docker("network", "ls", "-q", "--filter", "label=app=shop").stdout.split() == [net_id[:12]]
    [net] = json.loads(docker("network", "inspect", "shop").stdout)
    assert net["Id"] == net_id and net["IPAM"]["Config"][0]["Subnet"] == "10.88.0.0/24"

    docker("network", "connect", "--alias", "db", "--ip", "10.88.0.5", "shop", "c1")
    networks = json.loads(busybox("inspect", "c1").stdout)[0]["NetworkSettings"]["Networks"]
    assert networks["shop"]["Aliases"] == ["db"]
    docker("network", "disconnect", "shop", "c1")
    networks = json.loads(busybox("inspect", "c1").stdout)[0]["NetworkSettings"]["Networks"]
    assert "shop" not in networks
    assert docker("network", "rm", "shop").stdout.strip() == "shop"
    p = docker("network", "inspect", "shop", check=False)
    assert p.returncode == 1 and "network shop not found" in p.stderr
    p = docker("network", "rm", "bridge", check=False)
    assert p.returncode == 1 and "bridge is a pre-defined network and cannot be removed" in p.stderr
    busybox("rm", "c1")


def test_images_tag_rmi_save_load(docker: DockerCLI) -> None:
    out = docker("images").stdout.splitlines()
    assert out[0].split()[:4] == ["REPOSITORY", "TAG", "IMAGE", "ID"]
    assert out[1].split()[:2] == ["busybox", "latest"]
    image_id = docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    docker("tag", "busybox", "tools/box:1.0")
    assert docker("images", "--format", "{{.Repository}}:{{.Tag}}", "tools/box").stdout.split() == ["tools/box:1.0"]
    assert docker("images", "-q", "--no-trunc", "tools/box").stdout.strip() == image_id
    history = docker("history", "--format", "{{.ID}}", "busybox").stdout.split()
    assert history[0] == image_id[7:19]

    saved = docker("save", "busybox", "tools/box:1.0", binary=True).stdout
    assert len(saved) > 100_000
    assert docker("rmi", "tools/box:1.0").stdout.strip() == "Untagged: tools/box:1.0"
    out = docker("rmi", "busybox").stdout.splitlines()
    assert out[0] == "Untagged: busybox:latest" and f"Deleted: {image_id}" in out
    assert docker("images", "-q").stdout.strip() == ""
    p = docker("rmi", "busybox", check=False)
    assert p.returncode == 1 and "No such image: busybox" in p.stderr

    out = docker("load", input=saved).stdout.splitlines()
    assert sorted(out) == ["Loaded image: busybox:latest", "Loaded image: tools/box:1.0"]
    assert docker("image", "inspect", "-f", "{{.Id}}", "tools/box:1.0").stdout.strip() == image_id
    # docker save | docker load through files, as users type it
    docker("save", "-o", "bb.tar", "busybox")
    assert docker("load", "-q", "-i", "bb.tar").stdout.strip() == "Loaded image: busybox:latest"


def test_build_classic_builder(docker: DockerCLI) -> None:
    ctx = docker.cwd / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "ARG GREETING=hello\n"
        "COPY greeting.txt /greeting.txt\n"
        "RUN echo \"$GREETING from RUN\" > /run.txt; echo ran\n"
        "LABEL stage=test\n"
        'CMD ["cat", "/greeting.txt", "/run.txt"]\n')
    (ctx / "greeting.txt").write_text("hi from COPY\n")
    (ctx / "ignored.txt").write_text("secret\n")
    (ctx / ".dockerignore").write_text("ignored.txt\n")
    p = docker("build", "-t", "built:1", "-t", "built:latest", "--build-arg", "GREETING=howdy",
               "--label", "extra=yes", str(ctx))
    out = p.stdout
    # the classic builder's lines for the steps that make layers (FROM, COPY, RUN) and their output
    assert "Step 1/3 : FROM docker.io/library/busybox:latest\n ---> " in out
    assert "Step 2/3 : COPY greeting.txt /greeting.txt\n ---> " in out
    assert 'Step 3/3 : RUN echo "$GREETING from RUN" > /run.txt; echo ran\nran\n ---> ' in out
    assert "Successfully built " in out
    assert "Successfully tagged built:1" in out and "Successfully tagged built:latest" in out
    short = out.split("Successfully built ")[1].split()[0]
    [img] = json.loads(docker("image", "inspect", "built:1").stdout)
    assert img["Id"][7:19] == short
    labels = img["Config"]["Labels"]
    assert labels["stage"] == "test" and labels["extra"] == "yes"     # busybox's own labels stay too
    assert img["Config"]["Cmd"] == ["cat", "/greeting.txt", "/run.txt"]

    # the cache answers a second build; -q prints only the ID
    again = docker("build", "-q", "-t", "built:1", "--build-arg", "GREETING=howdy", "--label", "extra=yes",
                   str(ctx)).stdout.strip()
    assert again == img["Id"]

    (ctx / "Dockerfile.bad").write_text("FROM busybox\nRUN exit 3\n")
    p = docker("build", "-f", str(ctx / "Dockerfile.bad"), str(ctx), check=False)
    assert p.returncode == 3          # the classic builder's errorDetail code: the CLI exits with it
    assert "The command '/bin/sh -c exit 3' returned a non-zero code: 3" in p.stderr
    assert docker("run", "--rm", "built:1").stdout == "hi from COPY\nhowdy from RUN\n"
    p = docker("build", "-f", str(ctx / "Dockerfile.bad"), "--target", "nope", str(ctx), check=False)
    assert p.returncode == 1 and 'target stage "nope" could not be found' in p.stderr


def test_login_push_pull(docker: DockerCLI, scratch: Path) -> None:
    htpasswd = scratch / "htpasswd"
    subprocess.run([sys.executable, "-m", "dockyard", "registry", "user", "--htpasswd", str(htpasswd), "add",
                    "alice", "--password-stdin"], input=b"s3cret", check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = scratch / "registry.log"
    with open(log, "wb") as out:
        registry = subprocess.Popen([sys.executable, "-m", "dockyard", "registry", "serve", "--root",
                                     str(scratch / "reg"), "--addr", f"127.0.0.1:{port}", "--auth", "htpasswd",
                                     "--htpasswd", str(htpasswd)], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert registry.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        host = f"127.0.0.1:{port}"
        name = f"{host}/team/bb:v1"
        docker("tag", "busybox", name)
        p = docker("push", name, check=False)
        assert p.returncode == 1 and "unauthorized" in p.stderr

        p = docker("login", "-u", "alice", "--password-stdin", host, input="wrong\n", check=False)
        assert p.returncode == 1
        assert p.stderr.strip().startswith(f'Error response from daemon: Get "http://{host}/v2/": unauthorized')
        p = docker("login", "-u", "alice", "--password-stdin", host, input="s3cret\n")
        assert "Login Succeeded" in p.stdout
        config = json.loads((Path(docker.env["DOCKER_CONFIG"]) / "config.json").read_text())
        assert host in config["auths"]

        out = docker("push", name).stdout
        assert f"The push refers to repository [{host}/team/bb]" in out
        assert ": Pushed" in out and "v1: digest: sha256:" in out
        digest = out.split("v1: digest: ")[1].split()[0]
        assert "Layer already exists" in docker("push", name).stdout

        out = docker("pull", name).stdout
        assert "v1: Pulling from team/bb" in out
        assert f"Digest: {digest}" in out and f"Status: Image is up to date for {name}" in out
        # the last tag of a repository takes its digest reference along, as with dockerd
        assert docker("rmi", name).stdout.splitlines() == [f"Untagged: {name}", f"Untagged: {host}/team/bb@{digest}"]
        docker("rmi", "busybox")
        assert docker("images", "-q").stdout.strip() == ""
        out = docker("pull", name).stdout
        assert "Pull complete" in out and f"Status: Downloaded newer image for {name}" in out
        assert docker("image", "inspect", "-f", "{{index .RepoDigests 0}}", name).stdout.strip() == \
            f"{host}/team/bb@{digest}"
        p = docker("pull", f"{host}/team/missing:v1", check=False)
        assert p.returncode == 1 and p.stderr.startswith("Error response from daemon:")

        docker("logout", host)
        p = docker("pull", name, check=False)
        assert p.returncode == 1 and "unauthorized" in p.stderr
    finally:
        stop(registry)


def test_system_df(docker: DockerCLI, busybox: Dockyard) -> None:
    docker("volume", "create", "dfvol")
    busybox("create", "--name", "dfc", "-v", "dfvol:/data", "busybox", "true")
    out = docker("system", "df").stdout.splitlines()
    assert out[0].split()[:2] == ["TYPE", "TOTAL"]
    rows = {line.split("  ")[0].strip(): line.split() for line in out[1:]}
    assert rows["Images"][1] == "1" and rows["Containers"][1] == "1" and rows["Local Volumes"][2] == "1"
    out = docker("system", "df", "-v").stdout
    assert "busybox" in out and "dfvol" in out and "dfc" in out
    busybox("rm", "dfc")
