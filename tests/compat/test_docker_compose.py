"""Debian's docker-compose 1.29 (docker-py underneath, speaking the Engine API) bringing a two-service
project up and down through ``dockyard system service``: a user network, a named volume and a
published port.  The web service (busybox httpd) serves a page it wrote into the volume; the client
service fetches it by service name over the project network; the test fetches it from the host on
the published port.  ``down -v`` must leave no container, network or volume behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Dockyard
from helpers.service import start_service, stop

pytestmark = pytest.mark.root

COMPOSE = shutil.which("docker-compose") or "docker-compose"

COMPOSE_FILE = """\
version: "3.8"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hello-from-the-volume > /www/index.html && exec httpd -f -p 80 -h /www"]
    volumes:
      - site:/www
    ports:
      - "127.0.0.1:{port}:80"
    networks:
      - shop
  client:
    image: busybox
    command: ["sh", "-c", "for i in $$(seq 1 30); do timeout 5 wget -qO- http://web/ && exit 0; sleep 1; done; exit 1"]
    depends_on:
      - web
    networks:
      - shop
networks:
  shop: {{}}
volumes:
  site: {{}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def compose(busybox: Dockyard, tmp_root: Path, scratch: Path) -> Iterator[tuple[callable, int]]:
    proc, sock = start_service(tmp_root, scratch)
    project = scratch / "shop"
    project.mkdir()
    port = free_port()
    (project / "docker-compose.yml").write_text(COMPOSE_FILE.format(port=port))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env.update({"DOCKER_HOST": f"unix://{sock}", "HOME": str(scratch), "COMPOSE_PROJECT_NAME": "shop"})

    def run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        p = subprocess.run([COMPOSE, "--no-ansi", *args], cwd=project, env=env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, start_new_session=True)
        if check and p.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} exited {p.returncode}\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    try:
        yield run, port
    finally:
        run("down", "-v", "--timeout", "1", check=False)
        stop(proc)
        print((scratch / "d-service.log").read_text(errors="replace"))  # shown when the test failed


def fetch(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback, the test's own port
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_up_and_down(compose, busybox: Dockyard) -> None:
    run, port = compose
    up = run("up", "-d")
    assert "Creating network \"shop_shop\"" in up.stderr and "Creating volume \"shop_site\"" in up.stderr

    assert fetch(f"http://127.0.0.1:{port}/", time.monotonic() + 60) == "hello-from-the-volume\n"

    # the client found the web service by its name on the project network
    deadline = time.monotonic() + 90
    while True:
        logs = run("logs", "--no-color", "client").stdout
        if "hello-from-the-volume" in logs:
            break
        assert time.monotonic() < deadline, logs
        time.sleep(1)
    ps = run("ps").stdout
    assert "shop_web_1" in ps and "Up" in ps and f"127.0.0.1:{port}->80/tcp" in ps

    names = {n["Name"] for n in json.loads(busybox("network", "inspect", "shop_shop").stdout)}
    assert names == {"shop_shop"}
    [vol] = json.loads(busybox("volume", "inspect", "shop_site").stdout)
    assert vol["Labels"]["com.docker.compose.project"] == "shop"

    down = run("down", "-v", "--timeout", "1")
    assert "Removing network shop_shop" in down.stderr and "Removing volume shop_site" in down.stderr
    assert busybox("ps", "-a", "-q").stdout.strip() == ""
    assert "shop_shop" not in busybox("network", "ls").stdout
    assert busybox("volume", "ls", "-q").stdout.strip() == ""
