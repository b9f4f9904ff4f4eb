"""dockyard compose end to end: real containers (runc), networks (netavark, aardvark-dns), volumes.

One data root with busybox serves the module; every test makes its own project (its own name,
network and volumes) and takes it down in ``finally`` — and checks nothing of it is left.
busybox's ``wget -T`` segfaults here: fetches are ``timeout N wget``.

The shop examples are built from examples/ on python:3.11-slim (the test image cache) and an order
is made through each (marked slow: builds with pip).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import Dockyard, cached_image_archive, cleanup_root

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="dockyard-test-compose-", dir="/var/tmp"))
    dy = Dockyard(base / "root")
    dy("load", "-i", str(cached_image_archive("busybox")))
    try:
        yield dy
    finally:
        cleanup_root(base)


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


class Project:
    """One compose project in its own directory, driven through `dockyard compose`."""

    def __init__(self, d: Dockyard, directory: Path, name: str, text: str) -> None:
        self.d, self.name, self.dir = d, name, directory / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file = self.dir / "compose.yaml"
        self.file.write_text(text)

    def __call__(self, *args: str, check: bool = True, timeout: float = 600, env: dict | None = None):
        return self.d("compose", "-f", str(self.file), "-p", self.name, *args, check=check, timeout=timeout,
                      env=env)

    def ids(self) -> dict[str, str]:
        out = self("ps", "-a", "--format", "{{.Name}} {{.ID}}").stdout.split()
        return dict(zip(out[::2], out[1::2]))

    def inspect(self, container: str) -> dict:
        return json.loads(self.d("inspect", container).stdout)[0]

    def down(self) -> None:
        self("down", "-v", "--remove-orphans", "-t", "1", check=False)
        left = self.d("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={self.name}").stdout.split()
        nets = self.d("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.name}").stdout
        vols = self.d("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.name}").stdout
        assert not left and not nets.split() and not vols.split(), (left, nets, vols)


def wait_for(pred, timeout: float = 60.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


SERVER_CLIENT = """
services:
  server:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
    healthcheck:
      test: ["CMD-SHELL", "timeout 3 wget -qO- http://127.0.0.1/ >/dev/null"]
      interval: 2s
      start_period: 30s
      start_interval: 1s
  client:
    image: busybox
    command: ["sh", "-c", "while true; do timeout 5 wget -qO- http://server/ > /tmp/last 2>&1; sleep 1; done"]
    depends_on:
      server: {condition: service_healthy}
"""


def test_services_by_name_scale_idempotence_and_recreate(d, workdir):
    p = Project(d, workdir, "cy-two", SERVER_CLIENT)
    try:
        r = p("up", "-d")
        assert "Container cy-two-server-1  Started" in r.stderr and "Container cy-two-client-1  Started" in r.stderr
        # the client reaches the server by its service name
        server_host = p("exec", "-T", "server", "hostname").stdout.strip()
        assert wait_for(lambda: p("exec", "-T", "client", "cat", "/tmp/last", check=False).stdout.strip()
                        == server_host)
        ids = p.ids()
        assert set(ids) == {"cy-two-server-1", "cy-two-client-1"}
        labels = p.inspect("cy-two-server-1")["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == "cy-two" and labels["com.docker.compose.service"] == "server"
        assert labels["com.docker.compose.container-number"] == "1" and labels["com.docker.compose.oneoff"] == "False"
        assert len(labels["com.docker.compose.config-hash"]) == 64
        assert labels["com.docker.compose.project.config_files"] == str(p.file)

        # up again: nothing changes
        r = p("up", "-d")
        assert "Recreate" not in r.stderr and "Creating" not in r.stderr
        assert p.ids() == ids

        # --scale 3: three replicas, all answering under the service name
        p("up", "-d", "--scale", "server=3")
        ids3 = p.ids()
        assert {n for n in ids3 if "server" in n} == {"cy-two-server-1", "cy-two-server-2", "cy-two-server-3"}
        assert ids3["cy-two-server-1"] == ids["cy-two-server-1"] and ids3["cy-two-client-1"] == ids["cy-two-client-1"]

        def addresses() -> set[str]:
            out = p("exec", "-T", "client", "nslookup", "server", check=False).stdout
            answers = out.split("Non-authoritative answer:", 1)[-1]
            return {line.split()[-1] for line in answers.splitlines() if line.startswith("Address")}

        addrs = wait_for(lambda: (lambda a: a if len(a) == 3 else None)(addresses()), timeout=60)
        hosts = {p("exec", "-T", "client", "sh", "-c", f"timeout 5 wget -qO- http://{ip}/").stdout.strip()
                 for ip in addrs}
        assert len(hosts) == 3  # three different replicas behind the one name

        # a change to one service recreates only it (and the scale comes back to the file's)
        p.file.write_text(SERVER_CLIENT.replace("sleep 1; done", "sleep 2; done"))
        r = p("up", "-d", "--scale", "server=3")
        after = p.ids()
        assert after["cy-two-client-1"] != ids["cy-two-client-1"]
        assert all(after[n] == ids3[n] for n in ids3 if "server" in n)
        assert "Container cy-two-client-1  Recreate" in r.stderr
        p("up", "-d")
        assert set(p.ids()) == {"cy-two-server-1", "cy-two-client-1"}

        # logs carry compose's prefixes
        logs = p("logs", "--no-color", "server").stdout
        assert logs == "" or all(line.startswith("server-1  | ") for line in logs.splitlines())
        out = p("run", "--rm", "-T", "--no-deps", "client", "echo", "hello-from-run").stdout
        assert out.strip() == "hello-from-run"
        assert not any("run" in n for n in p.ids())  # --rm left nothing
        ps = p("ps", "--format", "json").stdout.splitlines()
        assert {json.loads(line)["Service"] for line in ps} == {"server", "client"}
    finally:
        p.down()


def test_depends_on_conditions_and_logs(d, workdir):
    text = """
services:
  slow:
    image: busybox
    command: ["sh", "-c", "echo slow starting; sleep 3; mkdir -p /www; echo ready > /www/index.html; exec httpd -f -p 80 -h /www"]
    healthcheck:
      test: ["CMD-SHELL", "timeout 3 wget -qO- http://127.0.0.1/ >/dev/null"]
      interval: 1s
      start_period: 30s
      start_interval: 1s
  migrate:
    image: busybox
    command: ["sh", "-c", "echo migrated > /shared/done; echo migration finished"]
    volumes: [shared:/shared]
  app:
    image: busybox
    command: ["sh", "-c", "timeout 5 wget -qO- http://slow/ > /tmp/first 2>&1 || echo FAIL > /tmp/first; cat /shared/done; echo app up; sleep 1000"]
    volumes: [shared:/shared]
    depends_on:
      slow: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
volumes:
  shared: {}
"""
    p = Project(d, workdir, "cy-deps", text)
    try:
        p("up", "-d")
        # app started only after slow was healthy and migrate had exited 0
        assert p("exec", "-T", "app", "cat", "/tmp/first").stdout.strip() == "ready"
        app = p.inspect("cy-deps-app-1")["State"]
        migrate = p.inspect("cy-deps-migrate-1")["State"]
        assert migrate["Status"] == "exited" and migrate["ExitCode"] == 0
        assert app["StartedAt"] > migrate["FinishedAt"]
        logs = wait_for(lambda: (lambda o: o if "app up" in o else None)(p("logs", "--no-color").stdout))
        lines = logs.splitlines()
        assert "app-1      | migrated" in lines and "app-1      | app up" in lines
        assert "migrate-1  | migration finished" in lines and "slow-1     | slow starting" in lines
        tail = p("logs", "--no-color", "--tail", "1", "app").stdout
        assert tail.strip() == "app-1  | app up"
    finally:
        p.down()


def test_wait_fails_naming_the_service_and_its_last_check(d, workdir):
    text = """
services:
  ok:
    image: busybox
    command: ["sleep", "1000"]
  sick:
    image: busybox
    command: ["sleep", "1000"]
    healthcheck:
      test: ["CMD-SHELL", "echo probe-says-no-$$((1+1)); exit 1"]
      interval: 1s
      retries: 2
"""
    p = Project(d, workdir, "cy-wait", text)
    try:
        r = p("up", "-d", "--wait", "--wait-timeout", "60", check=False)
        assert r.returncode != 0
        assert "'sick'" in r.stderr and "cy-wait-sick-1" in r.stderr and "probe-says-no-2" in r.stderr
        assert "unhealthy" in r.stderr
    finally:
        p.down()


def test_named_volume_persists_across_down_and_goes_with_down_v(d, workdir):
    text = """
services:
  writer:
    image: busybox
    command: ["sh", "-c", "date +%s%N >> /data/boots; sleep 1000"]
    volumes: ["data:/data"]
volumes:
  data: {}
"""
    p = Project(d, workdir, "cy-vol", text)
    try:
        p("up", "-d")
        first = p("exec", "-T", "writer", "cat", "/data/boots").stdout.split()
        assert len(first) == 1
        p("down", "-t", "1")
        assert "cy-vol_data" in d("volume", "ls", "-q").stdout.split()
        assert d("volume", "inspect", "--format", '{{index .Labels "com.docker.compose.volume"}}',
                 "cy-vol_data").stdout.strip() == "data"
        p("up", "-d")
        second = p("exec", "-T", "writer", "cat", "/data/boots").stdout.split()
        assert second[0] == first[0] and len(second) == 2
        p("down", "-v", "-t", "1")
        assert "cy-vol_data" not in d("volume", "ls", "-q").stdout.split()
    finally:
        p.down()


def test_down_after_a_partial_up_removes_everything(d, workdir):
    text = """
services:
  good:
    image: busybox
    command: ["sleep", "1000"]
    volumes: ["keep:/keep"]
    networks: [front, back]
  broken:
    image: busybox
    command: ["/no/such/program"]
    depends_on: [good]
    networks: [back]
  missing:
    image: registry.invalid/nothing-here:1
    profiles: [extra]
volumes:
  keep: {}
networks:
  front: {}
  back: {}
"""
    p = Project(d, workdir, "cy-partial", text)
    try:
        r = p("up", "-d", check=False)  # broken cannot start: good is up, broken is created
        assert r.returncode != 0
        names = set(p.ids())
        assert {"cy-partial-good-1", "cy-partial-broken-1"} <= names
        r = p("--profile", "extra", "up", "-d", "missing", check=False)  # the image cannot be pulled
        assert r.returncode != 0
        nets = d("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert {"cy-partial_front", "cy-partial_back"} <= set(nets)
        p("down", "-v", "-t", "1")
        assert not p.ids()
        nets = d("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert not any(n.startswith("cy-partial") for n in nets)
        assert "cy-partial_keep" not in d("volume", "ls", "-q").stdout.split()
    finally:
        p.down()


def test_invalid_file_reports_file_and_path_and_starts_nothing(d, workdir):
    text = """
services:
  web:
    image: busybox
    command: ["sleep", "1000"]
  bad:
    image: busybox
    ports:
      - true
    restart: sometimes-maybe
"""
    p = Project(d, workdir, "cy-bad", text)
    before = d("ps", "-a", "-q").stdout
    r = p("up", "-d", check=False)
    assert r.returncode == 15, r.stderr
    assert str(p.file) in r.stderr and "services.bad.ports.0" in r.stderr
    assert d("ps", "-a", "-q").stdout == before
    assert not any(n.startswith("cy-bad") for n in d("network", "ls", "--format", "{{.Name}}").stdout.split())
    r = d("compose", "-f", str(workdir / "nope.yaml"), "up", "-d", check=False)
    assert r.returncode == 14 and "nope.yaml" in r.stderr
    r = p("config", "-q", check=False)
    assert r.returncode == 15


def test_unhealthy_service_is_restarted_when_asked(d, workdir):
    text = """
services:
  healer:
    image: busybox
    command: ["sh", "-c", "touch /tmp/alive; exec sleep 1000"]
    healthcheck: &hc
      test: ["CMD", "test", "-f", "/tmp/alive"]
      interval: 1s
      retries: 2
    x-dockyard-restart-unhealthy: true
  plain:
    image: busybox
    command: ["sh", "-c", "touch /tmp/alive; exec sleep 1000"]
    healthcheck: *hc
"""
    p = Project(d, workdir, "cy-heal", text)
    try:
        p("up", "-d", "--wait", "--wait-timeout", "60")
        assert p.inspect("cy-heal-healer-1")["Config"]["Labels"]["io.dockyard.restart-unhealthy"] == "true"
        started = p.inspect("cy-heal-healer-1")["State"]["StartedAt"]
        p("exec", "-T", "healer", "rm", "/tmp/alive")
        p("exec", "-T", "plain", "rm", "/tmp/alive")
        # the health monitor restarts healer (a new run recreates /tmp/alive); plain stays unhealthy
        wait_for(lambda: p.inspect("cy-heal-healer-1")["State"]["StartedAt"] != started, timeout=90)
        wait_for(lambda: p.inspect("cy-heal-healer-1")["State"].get("Health", {}).get("Status") == "healthy",
                 timeout=60)
        wait_for(lambda: p.inspect("cy-heal-plain-1")["State"]["Health"]["Status"] == "unhealthy", timeout=60)
        assert p.inspect("cy-heal-plain-1")["State"]["Status"] == "running"
    finally:
        p.down()


# -- the shop examples ----------------------------------------------------------------------------
def http(method: str, url: str, body: dict | None = None, timeout: float = 20) -> tuple[int, dict | list]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def order_through(port: int) -> dict:
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ok(f"{base}/health"), timeout=120)
    status, catalogue = http("GET", f"{base}/api/catalogue")
    assert status == 200 and {p["id"] for p in catalogue} >= {"p1", "p2"}
    status, order = http("POST", f"{base}/api/orders", {"items": [{"product_id": "p2", "quantity": 3}],
                                                        "customer": "test"})
    assert status == 201 and order["total_cents"] == 3 * 950
    status, again = http("GET", f"{base}/api/orders/{order['id']}")
    assert status == 200 and again["items"][0]["quantity"] == 3
    page = urllib.request.urlopen(f"{base}/", timeout=20).read().decode()
    assert order["id"] in page
    return order


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_shop_examples_build_start_and_take_an_order(d):
    d("load", "-i", str(cached_image_archive("python:3.11-slim")))
    for example, name in (("shop-monolith", "cy-mono"), ("shop-microservices", "cy-micro")):
        directory = REPO / "examples" / example
        port = free_port()
        env = {"SHOP_PORT": str(port)}

        def compose(*args, check=True, timeout=1200):
            return d("compose", "--project-directory", str(directory), "-p", name, *args, check=check,
                     timeout=timeout, env=env)

        try:
            compose("up", "-d", "--build", "--wait", "--wait-timeout", "300")
            order_through(port)
            if example == "shop-microservices":
                compose("up", "-d", "--scale", "orders=3", "--wait", "--wait-timeout", "300")
                served = {http("POST", f"http://127.0.0.1:{port}/api/orders",
                               {"items": [{"product_id": "p1", "quantity": 1}]})[1]["served_by"] for _ in range(30)}
                assert len(served) >= 2  # the gateway spreads orders over the replicas
        finally:
            compose("down", "-v", "-t", "2", check=False)
        assert not d("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={name}").stdout.split()
