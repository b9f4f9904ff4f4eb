"""Networks end to end: netavark, aardvark-dns, iptables and runc, driven through the dockyard command.

One data root with busybox serves the whole module; every test names its own containers and
networks and removes them (and checks nothing of them is left) even when it fails.  Traffic goes
only to loopback, to the host's own addresses and to the tests' own containers.

busybox here (Debian's busybox-static 1.35) has no ``nc -u`` and no UDP server applet, so the UDP
test runs the host's own python3 inside the container (the host's /usr and /lib bind-mounted
read-only, started through the host's dynamic loader).  ``wget -T`` segfaults in this busybox:
every fetch is ``timeout N wget -qO-``.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import Dockyard, cleanup_root

pytestmark = pytest.mark.root

CLAIMS = Path("/run/dockyard/network-claims.json")


# -- helpers ---------------------------------------------------------------------------------------
def wait_for(pred, timeout: float = 15.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def host_ip() -> str:
    """The host's own non-loopback IPv4 address: the one on the device of the default route, or else
    the first global address that is not on a bridge or veth."""
    route = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True).stdout.split()
    dev = route[route.index("dev") + 1] if "dev" in route else ""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                         text=True, check=True).stdout
    addrs = [(line.split()[1], line.split()[3].split("/")[0]) for line in out.splitlines()]
    for name, addr in addrs:
        if name == dev:
            return addr
    for name, addr in addrs:
        if not name.startswith(("dockyard", "br-", "podman", "cni", "docker", "veth")):
            return addr
    pytest.fail(f"no non-loopback IPv4 address on this host:\n{out}")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def free_port_range(n: int) -> int:
    """The first of ``n`` consecutive ports nothing listens on (TCP)."""
    for _ in range(50):
        first = random.randint(20000, 30000)
        socks = []
        try:
            for p in range(first, first + n):
                s = socket.socket()
                s.bind(("0.0.0.0", p))
                socks.append(s)
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail("no free port range")


def taken_subnets() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "broadcast", "local", "unreachable"):
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(first, strict=False))
    with contextlib.suppress(OSError, ValueError):
        nets += [ipaddress.IPv4Network(v["subnet"]) for v in json.loads(CLAIMS.read_text()).values()]
    return nets


def pick_subnet() -> str:
    """A /24 in 10.200-249.x that no route and no data root's network uses."""
    taken = taken_subnets()
    for _ in range(200):
        cand = ipaddress.IPv4Network(f"10.{random.randint(200, 249)}.{random.randint(0, 255)}.0/24")
        if not any(cand.overlaps(t) for t in taken):
            return str(cand)
    pytest.fail("no free subnet")


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def http_get_retry(url: str, tries: int = 25) -> str:
    last: Exception | None = None
    for _ in range(tries):
        try:
            return http_get(url)
        except (OSError, urllib.error.URLError) as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"{url}: {last}")


def fetch(url: str) -> str:
    """A shell snippet: fetch ``url`` from inside a container, retrying while the server starts."""
    return (f"(for i in $(seq 25); do timeout 5 wget -qO- {url} && exit 0; sleep 0.2; done; "
            f"echo FETCH-FAILED {url}; exit 1)")


def no_fetch(url: str, marker: str) -> str:
    """A shell snippet printing ``marker`` when ``url`` can NOT be fetched within 3 s."""
    return f"if timeout 3 wget -qO- {url} >/dev/null 2>&1; then echo REACHED-{marker}; else echo {marker}; fi"


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def bridge_ports(bridge: str) -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def iptables() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def dnat_rules(port: int) -> list[str]:
    return [r for r in iptables().splitlines() if f"--dport {port} " in r + " " and "-A NETAVARK" in r]


def aardvark_pids(root: Path) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if b"aardvark-dns" in cmd and str(root).encode() in cmd and ") Z" not in stat:
            out.append(int(proc.name))
    return out


def netns_files(root: Path) -> list[str]:
    d = root / "netns"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def bridge_of(gateway: str) -> str:
    """The host device holding ``gateway`` (the network's bridge)."""
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if f" {gateway}/" in line:
            return line.split()[1]
    raise AssertionError(f"no device has {gateway}")


@contextlib.contextmanager
def host_listener(kind: int = socket.SOCK_STREAM, port: int = 0):
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@contextlib.contextmanager
def host_http_server():
    """An HTTP server on the host (every address), answering "host"."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = b"host\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


# -- fixtures --------------------------------------------------------------------------------------
class Session:
    """One test's view of the module's data root: runs dockyard, remembers what the test made."""

    def __init__(self, d: Dockyard) -> None:
        self.d = d
        self.root = d.root
        self.containers: list[str] = []
        self.networks: list[str] = []

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.d(*args, **kw)

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """``dockyard run`` of a container named with ``--name`` (remembered for cleanup)."""
        if "--name" in args:
            self.containers.append(args[args.index("--name") + 1])
        return self.d("run", *args, **kw)

    def serve(self, name: str, *flags: str, ports: tuple[int, ...] = (80,)) -> str:
        """A detached busybox httpd answering its own name on each of ``ports``."""
        script = "; ".join(f"mkdir -p /w{p} && echo {name}:{p} > /w{p}/index.html && httpd -p {p} -h /w{p}"
                           for p in ports)
        self.run("-d", "--name", name, *flags, "busybox", "sh", "-c", f"{script}; exec sleep 3600")
        return name

    def client(self, *flags: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.d("run", "--rm", *flags, "busybox", "sh", "-c", script, check=check)

    def network(self, name: str, *flags: str, subnet: bool = True) -> str:
        """``network create`` (on a free /24 unless ``subnet=False``); returns the subnet."""
        self.networks.append(name)
        for _ in range(5):
            s = pick_subnet() if subnet else ""
            p = self.d("network", "create", *(["--subnet", s] if s else []), *flags, name, check=False)
            if p.returncode == 0:
                return s or self.inspect_net(name)["IPAM"]["Config"][0]["Subnet"]
            if "in use by network" not in p.stderr:  # another data root took it meanwhile: try again
                break
        raise AssertionError(f"network create {name}: {p.stderr}")

    def inspect(self, name: str) -> dict:
        return json.loads(self.d("inspect", name).stdout)[0]

    def inspect_net(self, name: str) -> dict:
        return json.loads(self.d("network", "inspect", name).stdout)[0]

    def ip(self, name: str, network: str = "bridge") -> str:
        return self.inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"]

    def cleanup(self) -> None:
        ids = [c for c in self.containers if self.d("inspect", c, check=False).returncode == 0]
        if ids:
            self.d("rm", "-f", *ids, check=False)
        for n in reversed(self.networks):
            self.d("network", "rm", n, check=False)


@pytest.fixture(scope="module")
def module_root(busybox_archive):
    d = Path(tempfile.mkdtemp(prefix="dockyard-test-net-", dir="/var/tmp"))
    dy = Dockyard(d / "root")
    try:
        dy("load", "-i", str(busybox_archive))
        yield dy
    finally:
        try:
            ids = dy("ps", "-aq", "--no-trunc", check=False).stdout.split()
            if ids:
                dy("rm", "-f", *ids, check=False)
            dy("network", "prune", "-f", check=False)
        finally:
            cleanup_root(d)


@pytest.fixture
def d(module_root):
    s = Session(module_root)
    try:
        yield s
    finally:
        s.cleanup()


# -- the default bridge ----------------------------------------------------------------------------
def test_default_bridge(d):
    bridge = d.inspect_net("bridge")
    subnet = ipaddress.IPv4Network(bridge["IPAM"]["Config"][0]["Subnet"])
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    assert bridge["Name"] == "bridge" and bridge["Driver"] == "bridge"
    # the default subnet clashes with none of the host's routes
    own = bridge["Options"]["com.docker.network.bridge.name"]
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout.splitlines()
    for r in routes:
        first = r.split()[0]
        if first != "default" and f" dev {own} " not in r + " ":
            assert not subnet.overlaps(ipaddress.IPv4Network(first, strict=False)), r
    out = d.client("--hostname", "bridgebox", script=(
        "ip -o -4 addr show eth0; echo ---; ip route; echo ---; cat /etc/hosts; echo ---; "
        f"ping -c 1 -W 3 {gateway} >/dev/null && echo GATEWAY-OK")).stdout
    addr_part, route_part, hosts_part, ping_part = out.split("---\n")
    ip = addr_part.split()[3].split("/")[0]
    assert ipaddress.IPv4Address(ip) in subnet and ip != gateway
    assert f"default via {gateway} dev eth0" in route_part
    assert f"{ip}\tbridgebox" in hosts_part.splitlines()
    assert "GATEWAY-OK" in ping_part
    # a running container: the outbound NAT rule for the subnet is there; after rm nothing is
    d.run("-d", "--name", "br-nat", "busybox", "sleep", "300")
    assert any(f"-s {subnet}" in r and "POSTROUTING" in r for r in iptables().splitlines())
    assert d("ps", "--format", "{{.Names}} {{.Networks}}").stdout.count("br-nat bridge") == 1
    d("rm", "-f", "br-nat")
    assert not any(f"-s {subnet}" in r for r in iptables().splitlines())
    assert f" {own}:" not in links()  # the bridge went with its last container
    assert netns_files(d.root) == []


# -- user networks: names, aliases, DNS --------------------------------------------------------------
def test_user_network_names_and_aliases(d):
    subnet = d.network("dns-net", subnet=False)  # a free default pool beside the host's routes
    from dockyard.networks.ipam import default_pools

    assert ipaddress.IPv4Network(subnet) in list(default_pools())
    d.serve("dns-web1", "--network", "dns-net", "--network-alias", "svc", "--network-alias", "web-alias")
    d.serve("dns-web2", "--network", "dns-net", "--net-alias", "svc")
    ip1, ip2 = d.ip("dns-web1", "dns-net"), d.ip("dns-web2", "dns-net")
    gateway = d.inspect_net("dns-net")["IPAM"]["Config"][0]["Gateway"]
    out = d.client("--network", "dns-net", script=(
        f"cat /etc/resolv.conf; {fetch('http://dns-web1/')} && {fetch('http://web-alias/')} && "
        f"{fetch('http://dns-web2/')} && nslookup svc")).stdout
    assert f"nameserver {gateway}" in out.splitlines()[0]
    assert "dns-web1:80" in out and out.count("dns-web1:80") == 2 and "dns-web2:80" in out
    answers = out.split("nslookup")[-1] if "nslookup" in out else out
    assert f"Address: {ip1}" in answers and f"Address: {ip2}" in answers  # one name, both containers
    # inspect: Docker's shape, with every running container's address
    net = d.inspect_net("dns-net")
    assert set(net) >= {"Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal",
                        "Containers", "Options", "Labels"}
    assert net["Name"] == "dns-net" and len(net["Id"]) == 64 and net["Driver"] == "bridge"
    assert net["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": gateway}]
    by_name = {c["Name"]: c for c in net["Containers"].values()}
    assert by_name["dns-web1"]["IPv4Address"] == f"{ip1}/{ipaddress.IPv4Network(subnet).prefixlen}"
    assert by_name["dns-web2"]["IPv4Address"] == f"{ip2}/{ipaddress.IPv4Network(subnet).prefixlen}"
    assert by_name["dns-web1"]["MacAddress"] == "02:42:" + ":".join(f"{int(x):02x}" for x in ip1.split("."))
    # the container's view
    settings = d.inspect("dns-web1")["NetworkSettings"]["Networks"]["dns-net"]
    assert settings["Aliases"] == ["svc", "web-alias"]
    assert {"dns-web1", "svc", "web-alias"} <= set(settings["DNSNames"])
    assert settings["NetworkID"] == net["Id"] and settings["Gateway"] == gateway


def test_isolation_between_networks(d):
    d.network("iso-a")
    d.network("iso-b")
    d.serve("iso-srv-a", "--network", "iso-a")
    d.serve("iso-srv-bridge")
    ip_a, ip_bridge = d.ip("iso-srv-a", "iso-a"), d.ip("iso-srv-bridge")
    # positive controls: each server answers on its own network
    out = d.client("--network", "iso-a", script=f"{fetch(f'http://{ip_a}/')} && {no_fetch(f'http://{ip_bridge}/', 'A-TO-BRIDGE-BLOCKED')}").stdout
    assert "iso-srv-a:80" in out
    assert "A-TO-BRIDGE-BLOCKED" in out and "REACHED" not in out
    out = d.client(script=f"{fetch(f'http://{ip_bridge}/')} && {no_fetch(f'http://{ip_a}/', 'BRIDGE-TO-A-BLOCKED')}").stdout
    assert "iso-srv-bridge:80" in out
    assert "BRIDGE-TO-A-BLOCKED" in out and "REACHED" not in out
    # another user network: neither the address nor the name of iso-a's container
    out = d.client("--network", "iso-b", script=(
        f"{no_fetch(f'http://{ip_a}/', 'B-TO-A-BLOCKED')}; {no_fetch(f'http://{ip_bridge}/', 'B-TO-BRIDGE-BLOCKED')}; "
        "nslookup iso-srv-a >/dev/null 2>&1 && echo RESOLVED || echo NOT-RESOLVED")).stdout
    assert "B-TO-A-BLOCKED" in out and "B-TO-BRIDGE-BLOCKED" in out and "REACHED" not in out
    assert "NOT-RESOLVED" in out


# -- published ports -------------------------------------------------------------------------------
def test_published_ports(d):
    me = host_ip()
    p_all, p_lo = free_port(), free_port()
    d.serve("pub-web", "-p", f"{p_all}:80", "-p", f"127.0.0.1:{p_lo}:80", "-p", "80")
    assert http_get_retry(f"http://127.0.0.1:{p_all}/") == "pub-web:80\n"
    assert http_get(f"http://{me}:{p_all}/") == "pub-web:80\n"
    # IP:HOST:CONTAINER answers on that address only
    assert http_get(f"http://127.0.0.1:{p_lo}/") == "pub-web:80\n"
    with pytest.raises(OSError):
        http_get(f"http://{me}:{p_lo}/", timeout=3)
    # -p CONTAINER: a free host port, shown by `port`
    lines = d("port", "pub-web").stdout.splitlines()
    assert f"80/tcp -> 0.0.0.0:{p_all}" in lines and f"80/tcp -> 127.0.0.1:{p_lo}" in lines
    (rand,) = [line for line in lines if line not in (f"80/tcp -> 0.0.0.0:{p_all}", f"80/tcp -> 127.0.0.1:{p_lo}")]
    p_rand = int(rand.rsplit(":", 1)[1])
    assert rand == f"80/tcp -> 0.0.0.0:{p_rand}" and p_rand not in (p_all, p_lo)
    assert sorted(d("port", "pub-web", "80").stdout.splitlines()) == sorted(
        [f"0.0.0.0:{p_all}", f"127.0.0.1:{p_lo}", f"0.0.0.0:{p_rand}"])
    assert http_get(f"http://127.0.0.1:{p_rand}/") == "pub-web:80\n"
    p = d("port", "pub-web", "81", check=False)
    assert p.returncode != 0 and "No public port '81/tcp' published for pub-web" in p.stderr
    # ps PORTS and inspect
    ports_col = d("ps", "--filter", "name=pub-web", "--format", "{{.Ports}}").stdout
    for text in (f"0.0.0.0:{p_all}->80/tcp", f"127.0.0.1:{p_lo}->80/tcp", f"0.0.0.0:{p_rand}->80/tcp"):
        assert text in ports_col
    info = d.inspect("pub-web")
    bound = info["NetworkSettings"]["Ports"]["80/tcp"]
    assert {"HostIp": "0.0.0.0", "HostPort": str(p_all)} in bound
    assert {"HostIp": "127.0.0.1", "HostPort": str(p_lo)} in bound
    assert info["HostConfig"]["PortBindings"]["80/tcp"][0] == {"HostIp": "", "HostPort": str(p_all)}
    # from other containers, through the host's address: on the default bridge and on a user network
    d.network("pub-other")
    assert "pub-web:80" in d.client(script=fetch(f"http://{me}:{p_all}/")).stdout
    assert "pub-web:80" in d.client("--network", "pub-other", script=fetch(f"http://{me}:{p_all}/")).stdout
    # stopped: no mapping is shown, and the port is free for the host again
    d("stop", "-t", "0", "pub-web")
    assert d("port", "pub-web").stdout == ""
    assert d("ps", "-a", "--filter", "name=pub-web", "--format", "{{.Ports}}").stdout.strip() == ""
    assert d.inspect("pub-web")["NetworkSettings"]["Ports"] == {}
    assert dnat_rules(p_all) == []
    with host_listener(port=p_all):
        pass


def test_port_ranges_and_publish_all(d):
    first = free_port_range(2)
    d.serve("rng-web", "-p", f"{first}-{first + 1}:80-81", ports=(80, 81))
    assert http_get_retry(f"http://127.0.0.1:{first}/") == "rng-web:80\n"
    assert http_get_retry(f"http://127.0.0.1:{first + 1}/") == "rng-web:81\n"
    assert d("port", "rng-web").stdout.splitlines() == [f"80/tcp -> 0.0.0.0:{first}",
                                                       f"81/tcp -> 0.0.0.0:{first + 1}"]
    # a host range for one container port: the first free port of the range
    lo = free_port_range(3)
    with host_listener(port=lo):
        d.serve("rng-one", "-p", f"127.0.0.1:{lo}-{lo + 2}:80")
        assert d("port", "rng-one", "80").stdout == f"127.0.0.1:{lo + 1}\n"
    assert http_get_retry(f"http://127.0.0.1:{lo + 1}/") == "rng-one:80\n"
    # -P: every exposed port (--expose, ranges too) on a free host port
    d.serve("rng-all", "-P", "--expose", "80", "--expose", "7000-7001/udp")
    lines = d("port", "rng-all").stdout.splitlines()
    assert sorted(line.split(" -> ")[0] for line in lines) == ["7000/udp", "7001/udp", "80/tcp"]
    p80 = int(d("port", "rng-all", "80").stdout.strip().rsplit(":", 1)[1])
    assert http_get_retry(f"http://127.0.0.1:{p80}/") == "rng-all:80\n"
    # exposed but not published: shown in ps as the bare port
    d.serve("rng-exp", "--expose", "9000")
    assert d("ps", "--filter", "name=rng-exp", "--format", "{{.Ports}}").stdout.strip() == "9000/tcp"


UDP_ECHO = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('0.0.0.0', 9999))\n"
            "while True:\n"
            "    d, a = s.recvfrom(512)\n"
            "    s.sendto(b'echo:' + d, a)\n")


def test_udp_published_port(d):
    if not Path("/usr/bin/python3").exists() or not Path("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").exists():
        pytest.fail("the UDP test runs the host's /usr/bin/python3 (x86_64 Debian layout) in the container")
    port = free_port(socket.SOCK_DGRAM)
    d.run("-d", "--name", "udp-echo", "-p", f"{port}:9999/udp", "-e", "PYTHONHOME=/hostusr",
          "-v", "/usr:/hostusr:ro", "-v", "/lib:/hostlib:ro", "busybox",
          "/hostlib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "--library-path",
          "/hostlib/x86_64-linux-gnu:/hostusr/lib/x86_64-linux-gnu", "/hostusr/bin/python3", "-c", UDP_ECHO)
    assert d("port", "udp-echo").stdout == f"9999/udp -> 0.0.0.0:{port}\n"
    assert d("port", "udp-echo", "9999/udp").stdout == f"0.0.0.0:{port}\n"

    def echo(addr: str) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            for _ in range(10):
                s.sendto(b"ping", (addr, port))
                try:
                    return s.recvfrom(512)[0]
                except TimeoutError:
                    continue
        return None

    assert echo("127.0.0.1") == b"echo:ping"
    assert echo(host_ip()) == b"echo:ping"


# -- network modes and container settings ----------------------------------------------------------
def test_host_none_and_container_modes(d):
    me = host_ip()
    out = d.client("--network", "host", script="ip -o -4 addr").stdout
    assert f" {me}/" in out
    out = d.client("--network", "none", script="ip -o link; echo ---; ip -o -4 addr").stdout
    link_part, addr_part = out.split("---\n")
    assert [line.split(": ")[1] for line in link_part.splitlines()] == ["lo"]
    assert [line.split()[1] for line in addr_part.splitlines()] == ["lo"]
    d.run("--name", "mode-none", "--network", "none", "busybox", "true")
    assert list(d.inspect("mode-none")["NetworkSettings"]["Networks"]) == ["none"]
    d.serve("mode-base")
    base_ip = d.ip("mode-base")
    out = d.client("--network", "container:mode-base", script=f"ip -o -4 addr show eth0; {fetch('http://127.0.0.1/')}").stdout
    assert f" {base_ip}/" in out and "mode-base:80" in out
    p = d("run", "--rm", "--network", "container:mode-missing", "busybox", "true", check=False)
    assert p.returncode == 125 and "mode-missing" in p.stderr
    # -p is discarded with --network host/none, as Docker does
    d.run("--name", "mode-host-p", "--network", "host", "-p", "80:80", "busybox", "true")
    assert d.inspect("mode-host-p")["HostConfig"]["NetworkMode"] == "host"


def test_dns_hosts_hostname_mac_and_ip(d):
    gateway = d.inspect_net("bridge")["IPAM"]["Config"][0]["Gateway"]
    out = d.client("--dns", "10.1.2.3", "--dns-search", "example.test", "--add-host", "foo.test:10.9.8.7",
                   "--add-host", "gw.test:host-gateway", "--hostname", "myhost", "--mac-address", "92:d0:c6:0a:29:33",
                   script="cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; hostname; "
                          "cat /sys/class/net/eth0/address; ip -o -4 addr show eth0").stdout
    resolv, hosts, rest = out.split("---\n")
    assert "nameserver 10.1.2.3" in resolv.splitlines() and "search example.test" in resolv.splitlines()
    hosts_lines = hosts.splitlines()
    assert "10.9.8.7\tfoo.test" in hosts_lines and f"{gateway}\tgw.test" in hosts_lines
    name, mac, addr = rest.splitlines()
    assert name == "myhost" and mac == "92:d0:c6:0a:29:33"
    assert f"{addr.split()[3].split('/')[0]}\tmyhost" in hosts_lines
    # --ip on a user network, with a hostname; the gateway answers from there too
    subnet = ipaddress.IPv4Network(d.network("set-net"))
    want = str(subnet.network_address + 77)
    out = d.client("--network", "set-net", "--ip", want, "--add-host", "gw.test:host-gateway",
                   script="ip -o -4 addr show eth0; cat /etc/hosts; cat /sys/class/net/eth0/address").stdout
    assert f" {want}/24" in out
    assert f"{subnet.network_address + 1}\tgw.test" in out
    assert "02:42:" + ":".join(f"{int(x):02x}" for x in want.split(".")) in out
    # bad values in Docker's words
    p = d("run", "--rm", "--network", "set-net", "--ip", str(subnet.network_address + 1), "busybox", "true", check=False)
    assert p.returncode == 125 and "Address already in use" in p.stderr
    p = d("run", "--rm", "--ip", "172.17.0.99", "busybox", "true", check=False)
    assert p.returncode == 125 and "user specified IP address is supported on user defined networks only" in p.stderr
    p = d("run", "--rm", "--network-alias", "x", "busybox", "true", check=False)
    assert p.returncode == 125 and "network-scoped alias is supported only for containers in user defined networks" in p.stderr
    p = d("run", "--rm", "--mac-address", "nonsense", "busybox", "true", check=False)
    assert p.returncode == 125 and "is not a valid mac address" in p.stderr


# -- network commands ------------------------------------------------------------------------------
def test_network_create_flags_ls_inspect_rm(d):
    subnet = ipaddress.IPv4Network(pick_subnet())
    ip_range = ipaddress.IPv4Network(f"{subnet.network_address + 128}/25")
    gateway = str(subnet.network_address + 254)
    brname = f"dytest{random.randint(1000, 9999)}"
    d.networks.append("flags-net")
    nid = d("network", "create", "--subnet", str(subnet), "--ip-range", str(ip_range), "--gateway", gateway,
            "--label", "team=red", "--label", "tier=db", "--opt", f"com.docker.network.bridge.name={brname}",
            "flags-net").stdout.strip()
    assert len(nid) == 64
    net = d.inspect_net("flags-net")
    assert net["Id"] == nid and net["Name"] == "flags-net" and net["Scope"] == "local"
    assert net["IPAM"]["Config"] == [{"Subnet": str(subnet), "Gateway": gateway, "IPRange": str(ip_range)}]
    assert net["Labels"] == {"team": "red", "tier": "db"}
    assert net["Options"] == {"com.docker.network.bridge.name": brname}
    assert net["Internal"] is False and net["Containers"] == {}
    d.run("-d", "--name", "flags-c", "--network", "flags-net", "busybox", "sleep", "300")
    ip = d.ip("flags-c", "flags-net")
    assert ip == str(ip_range.network_address + 1)  # the lowest free address of the range
    assert f"default via {gateway}" in d("exec", "flags-c", "ip", "route").stdout
    assert bridge_of(gateway) == brname and f" {brname}:" in links()
    assert d.inspect_net(nid[:12])["Containers"][d.inspect("flags-c")["Id"]]["IPv4Address"] == f"{ip}/24"
    # ls: filters, -q, --format
    d.network("flags-other", "--label", "team=blue")
    names = lambda *a: d("network", "ls", *a, "--format", "{{.Name}}").stdout.split()  # noqa: E731
    assert names("-f", "name=flags-") == ["flags-net", "flags-other"]
    assert names("-f", "label=team=red") == ["flags-net"]
    assert names("-f", "label=team", "-f", "name=flags") == ["flags-net", "flags-other"]
    assert {"bridge", "host", "none"} <= set(names("-f", "type=builtin"))
    assert "flags-net" not in names("-f", "type=builtin") and "flags-net" in names("-f", "type=custom")
    assert names("-f", "driver=null") == ["none"]
    assert "flags-other" in names("-f", "dangling=true") and "flags-net" not in names("-f", "dangling=true")
    assert names("-f", f"id={nid[:10]}") == ["flags-net"]
    assert d("network", "ls", "-q", "-f", "name=flags-net").stdout.split() == [nid[:12]]
    assert d("network", "ls", "-q", "--no-trunc", "-f", "name=flags-net").stdout.split() == [nid]
    assert d("network", "ls", "-f", "name=flags-net", "--format", '{{.Name}}|{{.Driver}}|{{.Label "tier"}}').stdout \
        == "flags-net|bridge|db\n"
    table = d("network", "ls", "-f", "name=flags-net").stdout.splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert table[1].split() == [nid[:12], "flags-net", "bridge", "local"]
    p = d("network", "ls", "-f", "bogus=1", check=False)
    assert p.returncode != 0 and "invalid filter 'bogus'" in p.stderr
    # rm: refused while a container is on it (Docker's words), refused for the builtins
    p = d("network", "rm", "flags-net", check=False)
    assert p.returncode == 1
    assert f"Error response from daemon: error while removing network: network flags-net id {nid} has active endpoints" \
        in p.stderr
    for builtin in ("bridge", "host", "none"):
        p = d("network", "rm", builtin, check=False)
        assert p.returncode == 1
        assert f"Error response from daemon: {builtin} is a pre-defined network and cannot be removed" in p.stderr
    d("rm", "-f", "flags-c")
    assert f" {brname}:" not in links()
    assert d("network", "rm", "flags-net", "flags-other").stdout.split() == ["flags-net", "flags-other"]
    p = d("network", "inspect", "flags-net", check=False)
    assert p.returncode == 1 and "No such network: flags-net" in p.stderr
    p = d("network", "rm", "flags-net", check=False)
    assert p.returncode == 1 and "network flags-net not found" in p.stderr
    assert d("network", "rm", "-f", "flags-net").returncode == 0


def test_network_create_refusals(d):
    subnet = ipaddress.IPv4Network(d.network("ovl-a"))
    inner = f"{subnet.network_address + 64}/26"
    for s in (str(subnet), inner, str(subnet.supernet(new_prefix=16))):
        p = d("network", "create", "--subnet", s, "ovl-b", check=False)
        assert p.returncode == 1 and "Pool overlaps with other one on this address space" in p.stderr, s
    bridge_subnet = d.inspect_net("bridge")["IPAM"]["Config"][0]["Subnet"]
    p = d("network", "create", "--subnet", bridge_subnet, "ovl-b", check=False)
    assert p.returncode == 1 and "Pool overlaps with other one on this address space" in p.stderr
    p = d("network", "create", "ovl-a", check=False)
    assert p.returncode == 1 and "network with name ovl-a already exists" in p.stderr
    p = d("network", "create", "bridge", check=False)
    assert p.returncode == 1 and "network with name bridge already exists" in p.stderr
    p = d("network", "create", "--subnet", "10.1.0.0/24", "--gateway", "10.2.0.1", "ovl-b", check=False)
    assert p.returncode == 1 and "no matching subnet for gateway 10.2.0.1" in p.stderr
    p = d("network", "create", "-d", "overlay", "ovl-b", check=False)
    assert p.returncode == 1 and 'plugin "overlay" not found' in p.stderr
    assert "ovl-b" not in d("network", "ls", "--format", "{{.Name}}").stdout.split()


def test_internal_network(d):
    me = host_ip()
    d.network("int-net", "--internal")
    assert d.inspect_net("int-net")["Internal"] is True
    d.serve("int-web", "--network", "int-net")
    with host_http_server() as port:
        # control: from the default bridge the host's address answers
        assert "host" in d.client(script=fetch(f"http://{me}:{port}/")).stdout
        out = d.client("--network", "int-net", script=(
            f"ip route; {fetch('http://int-web/')}; {no_fetch(f'http://{me}:{port}/', 'HOST-BLOCKED')}")).stdout
    assert "default" not in out  # no route out
    assert "int-web:80" in out   # the network itself works, names included
    assert "HOST-BLOCKED" in out and "REACHED" not in out


def test_prune(d):
    d.network("prn-a", "--label", "keep=no")
    d.network("prn-b", "--label", "keep=yes")
    d.network("prn-used")
    d.run("-d", "--name", "prn-c", "--network", "prn-used", "busybox", "sleep", "300")
    out = d("network", "prune", "-f", "--filter", "label=keep=no").stdout
    assert out == "Deleted Networks:\nprn-a\n\n"
    out = d("network", "prune", "-f", "--filter", "label!=keep=yes").stdout
    assert "prn-b" not in out and "prn-used" not in out
    out = d("network", "prune", "-f").stdout
    assert "prn-b" in out.splitlines() and "prn-used" not in out
    left = d("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "prn-used" in left and "prn-a" not in left and "prn-b" not in left
    assert {"bridge", "host", "none"} <= set(left)
    # without -f it asks
    p = d("network", "prune", input="n\n")
    assert "Are you sure you want to continue?" in p.stdout


def test_connect_and_disconnect(d):
    d.network("cn-one")
    s2 = ipaddress.IPv4Network(d.network("cn-two"))
    d.serve("cn-web", "--network", "cn-one")
    d.serve("cn-peer", "--network", "cn-two")
    want = str(s2.network_address + 50)
    d("network", "connect", "--alias", "extra", "--ip", want, "cn-two", "cn-web")
    out = d("exec", "cn-web", "ip", "-o", "-4", "addr").stdout
    assert [line.split()[1] for line in out.splitlines()] == ["lo", "eth0", "eth1"]
    assert f" {want}/24" in out.splitlines()[2]
    # names on the new network resolve from the container, and its alias there from the others
    assert "cn-peer:80" in d("exec", "cn-web", "sh", "-c", fetch("http://cn-peer/")).stdout
    assert "cn-web:80" in d("exec", "cn-peer", "sh", "-c", fetch("http://extra/")).stdout
    assert "cn-web:80" in d("exec", "cn-peer", "sh", "-c", fetch("http://cn-web/")).stdout
    nets = d.inspect("cn-web")["NetworkSettings"]["Networks"]
    assert set(nets) == {"cn-one", "cn-two"} and nets["cn-two"]["IPAddress"] == want
    assert nets["cn-two"]["Aliases"] == ["extra"]
    assert d("ps", "--filter", "name=cn-web", "--format", "{{.Networks}}").stdout.strip() in (
        "cn-one,cn-two", "cn-two,cn-one")
    # twice: Docker's error
    p = d("network", "connect", "cn-two", "cn-web", check=False)
    assert p.returncode == 1
    assert "Error response from daemon: endpoint with name cn-web already exists in network cn-two" in p.stderr
    p = d("network", "connect", "cn-two", "cn-nobody", check=False)
    assert p.returncode != 0 and "cn-nobody" in p.stderr
    p = d("network", "connect", "host", "cn-web", check=False)
    assert p.returncode == 1
    # disconnect: the interface, the address and the name go
    d("network", "disconnect", "cn-two", "cn-web")
    out = d("exec", "cn-web", "ip", "-o", "link").stdout
    assert "eth1" not in out and "eth0" in out
    assert set(d.inspect("cn-web")["NetworkSettings"]["Networks"]) == {"cn-one"}
    out = d("exec", "cn-peer", "sh", "-c", "nslookup extra >/dev/null 2>&1 && echo RESOLVED || echo GONE").stdout
    assert "GONE" in out
    p = d("network", "disconnect", "cn-two", "cn-web", check=False)
    assert p.returncode == 1 and "is not connected to network cn-two" in p.stderr
    # a stopped container can be connected; the network is there at its next start
    d("stop", "-t", "0", "cn-peer")
    d("network", "connect", "cn-one", "cn-peer")
    d("start", "cn-peer")
    assert "cn-web:80" in d("exec", "cn-peer", "sh", "-c", fetch("http://cn-web/")).stdout


def test_disconnect_releases_published_ports(d):
    """Ports are forwarded on the network the container started on; disconnecting that network must
    take their forwarding rules along (nothing left after rm either)."""
    d.network("dp-one")
    d.network("dp-two")
    port = free_port()
    d.serve("dp-web", "--network", "dp-one", "-p", f"{port}:80")
    assert http_get_retry(f"http://127.0.0.1:{port}/") == "dp-web:80\n"
    d("network", "connect", "dp-two", "dp-web")
    assert dnat_rules(port)
    d("network", "disconnect", "dp-one", "dp-web")
    assert dnat_rules(port) == []
    d("rm", "-f", "dp-web")
    assert dnat_rules(port) == []


# -- bad input ---------------------------------------------------------------------------------------
def _veths(d) -> set[str]:
    """The host ends of the veths on this data root's bridges (other data roots on this machine
    come and go meanwhile: only ours are counted)."""
    out: set[str] = set()
    for nid in d("network", "ls", "-q", "--no-trunc").stdout.split():
        net = d.inspect_net(nid)
        if net["Driver"] == "bridge":
            out |= bridge_ports(net["Options"].get("com.docker.network.bridge.name") or f"br-{nid[:12]}")
    return out


def test_port_in_use_by_a_host_process(d):
    ids_before = d("ps", "-aq", "--no-trunc").stdout.split()
    veths_before, netns_before = _veths(d), netns_files(d.root)
    with host_listener() as port:
        p = d.run("-d", "--name", "busy-host", "-p", f"{port}:80", "busybox", "sleep", "300", check=False)
        assert p.returncode == 125, p.stderr
        assert f"Bind for 0.0.0.0:{port} failed: port is already allocated" in p.stderr
        assert "driver failed programming external connectivity on endpoint busy-host" in p.stderr
        # on a user network, and for a listener on 127.0.0.1 only with -p 127.0.0.1:PORT too
        d.network("busy-net")
        p = d.run("-d", "--name", "busy-host2", "--network", "busy-net", "-p", f"127.0.0.1:{port}:80", "busybox",
                  "sleep", "300", check=False)
        assert p.returncode == 125 and f"Bind for 127.0.0.1:{port} failed: port is already allocated" in p.stderr
        assert dnat_rules(port) == []
        assert _veths(d) - veths_before == set()
        assert netns_files(d.root) == netns_before
        assert d("ps", "-aq", "--no-trunc").stdout.split() == ids_before
    with host_listener(socket.SOCK_DGRAM) as uport:
        p = d.run("-d", "--name", "busy-udp", "-p", f"{uport}:53/udp", "busybox", "sleep", "300", check=False)
        assert p.returncode == 125 and "port is already allocated" in p.stderr
    assert _veths(d) - veths_before == set() and netns_files(d.root) == netns_before
    # the port freed, the same run works
    d.run("-d", "--name", "busy-host", "-p", f"{port}:80", "busybox", "sleep", "300")
    assert len(dnat_rules(port)) > 0


def test_port_taken_by_another_container(d):
    port = free_port()
    d.serve("hold-web", "-p", f"{port}:80")
    rules = dnat_rules(port)
    assert rules
    ids_before = d("ps", "-aq", "--no-trunc").stdout.split()
    veths_before, netns_before = _veths(d), netns_files(d.root)
    for spec in (f"{port}:80", f"127.0.0.1:{port}:81", f"{port}-{port}:82"):
        p = d.run("-d", "--name", "hold-taker", "-p", spec, "busybox", "sleep", "300", check=False)
        assert p.returncode == 125, spec
        assert "port is already allocated" in p.stderr, p.stderr
        assert dnat_rules(port) == rules
        assert _veths(d) == veths_before and netns_files(d.root) == netns_before
        assert d("ps", "-aq", "--no-trunc").stdout.split() == ids_before
    # the holder still answers
    assert http_get_retry(f"http://127.0.0.1:{port}/") == "hold-web:80\n"
    # udp on the same number is another port
    d.run("-d", "--name", "hold-udp", "-p", f"{port}:80/udp", "busybox", "sleep", "300")


def test_unknown_network(d):
    ids_before = d("ps", "-aq", "--no-trunc").stdout.split()
    p = d.run("--name", "nonet", "--network", "no-such-net", "busybox", "true", check=False)
    assert p.returncode == 125 and "network no-such-net not found" in p.stderr
    p = d("create", "--network", "no-such-net", "busybox", "true", check=False)
    assert p.returncode == 125 and "network no-such-net not found" in p.stderr
    assert d("ps", "-aq", "--no-trunc").stdout.split() == ids_before
    p = d("network", "connect", "no-such-net", "nobody", check=False)
    assert p.returncode == 1 and "network no-such-net not found" in p.stderr


# -- teardown ----------------------------------------------------------------------------------------
def test_teardown_leaves_nothing(d):
    subnet = d.network("td-net")
    gateway = d.inspect_net("td-net")["IPAM"]["Config"][0]["Gateway"]
    port = free_port()
    d.serve("td-a", "--network", "td-net", "-p", f"{port}:80")
    d.serve("td-b", "--network", "td-net", "--network-alias", "td-alias")
    d.serve("td-bridge", "-p", f"127.0.0.1:{free_port()}:80")
    assert "td-a:80" in d.client("--network", "td-net", script=fetch("http://td-a/")).stdout
    bridge = bridge_of(gateway)
    default_bridge = d.inspect_net("bridge")["Options"]["com.docker.network.bridge.name"]
    veths = bridge_ports(bridge) | bridge_ports(default_bridge)
    assert len(veths) == 3 and veths == _veths(d)
    indexes = {Path(f"/sys/class/net/{v}/ifindex").read_text().strip() for v in veths}  # never reused soon
    assert any(subnet in r for r in iptables().splitlines())
    assert dnat_rules(port)
    assert aardvark_pids(d.root)
    records = d.root / "networks" / "aardvark-dns" / f"td-net-{d.inspect_net('td-net')['Id'][:12]}"
    assert records.exists()
    assert len(netns_files(d.root)) == 3
    d("rm", "-f", "td-a", "td-b", "td-bridge")
    assert netns_files(d.root) == []
    assert dnat_rules(port) == []
    assert not records.exists()
    d("network", "rm", "td-net")
    now = links()
    assert f" {bridge}:" not in now and f" {default_bridge}:" not in now
    assert not any(line.split(":")[0] in indexes for line in now.splitlines())
    rules = iptables()
    assert subnet not in rules and f" {bridge} " not in rules.replace("\n", " \n")
    assert not any(f"-i {bridge} " in r or f"-o {bridge} " in r for r in rules.splitlines())
    if d("ps", "-q").stdout.strip() == "":  # aardvark-dns serves every network of the root
        wait_for(lambda: aardvark_pids(d.root) == [], timeout=10)
    claims = json.loads(CLAIMS.read_text()) if CLAIMS.exists() else {}
    assert not any(v["root"] == str(d.root) and v["subnet"] == subnet for v in claims.values())


def test_exit_releases_the_network(d):
    """A container that exits by itself (conmon's exit command) and a ``run --rm`` release everything."""
    netns_before = netns_files(d.root)
    port = free_port()
    d.run("-d", "--name", "exit-c", "-p", f"{port}:80", "busybox", "sh", "-c",
          "while [ ! -e /tmp/go ]; do sleep 0.1; done")
    cid = d.inspect("exit-c")["Id"]
    assert cid in netns_files(d.root) and dnat_rules(port)
    d("exec", "exit-c", "touch", "/tmp/go")  # now it exits by itself
    wait_for(lambda: d.inspect("exit-c")["State"]["Status"] == "exited", timeout=20)
    wait_for(lambda: dnat_rules(port) == [] and cid not in netns_files(d.root), timeout=10)
    # the address stays the container's until rm; the port is free for others meanwhile
    d.run("-d", "--name", "exit-other", "-p", f"{port}:80", "busybox", "sleep", "300")
    d("rm", "-f", "exit-other")
    port2 = free_port()
    assert d("run", "--rm", "-p", f"{port2}:80", "busybox", "sh", "-c", "ip -o -4 addr show eth0 | wc -l").stdout \
        == "1\n"
    assert dnat_rules(port2) == [] and netns_files(d.root) == netns_before
    # started again: the same address, the network set up again
    ip = d.inspect("exit-c")["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert ip == ""  # not running: no address shown, as Docker
    d("start", "exit-c")  # /tmp/go is still there: it exits again at once, and releases again
    wait_for(lambda: d.inspect("exit-c")["State"]["Status"] == "exited", timeout=20)
    wait_for(lambda: dnat_rules(port) == [] and cid not in netns_files(d.root), timeout=10)


KILL_AFTER_SETUP = """
import os, signal, sys
from dockyard.engine import Engine
e = Engine(sys.argv[1])
rec = e.containers.get(sys.argv[2])
print(e.networks.setup(rec), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_setup(d, name: str) -> None:
    p = subprocess.run([sys.executable, "-c", KILL_AFTER_SETUP, str(d.root), name], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert p.stdout.strip().startswith(str(d.root / "netns"))


def test_killed_process_leftovers_are_cleaned(d):
    subnet = ipaddress.IPv4Network(d.network("kill-net"))
    gateway = str(subnet.network_address + 1)
    port = free_port()
    d("create", "--name", "kill-c", "--network", "kill-net", "-p", f"{port}:80", "busybox", "sleep", "300")
    d.containers.append("kill-c")
    cid = d.inspect("kill-c")["Id"]
    # 1. killed right after network setup: namespace, veth, bridge and rules stay behind
    _killed_setup(d, "kill-c")
    assert netns_files(d.root) == [cid]
    bridge = bridge_of(gateway)
    assert len(bridge_ports(bridge)) == 1 and dnat_rules(port)
    assert d.inspect("kill-c")["State"]["Status"] == "created"
    # network prune (engine.networks.cleanup) removes all of it, and keeps the network in use
    out = d("network", "prune", "-f").stdout
    assert "kill-net" not in out
    assert netns_files(d.root) == []
    assert dnat_rules(port) == []
    assert f" {bridge}:" not in links()
    assert str(subnet) not in iptables()
    # the port is free again: another container can publish it
    d.run("-d", "--name", "kill-other", "-p", f"{port}:80", "busybox", "sleep", "300")
    d("rm", "-f", "kill-other")
    # 2. killed again: the next start of the container cleans up before it sets up
    _killed_setup(d, "kill-c")
    assert netns_files(d.root) == [cid]
    d("start", "kill-c")
    assert netns_files(d.root) == [cid]
    assert len(bridge_ports(bridge)) == 1
    rules_running = dnat_rules(port)
    assert rules_running and len([r for r in rules_running if "DNAT --to-destination" in r]) == 1
    d("rm", "-f", "kill-c")
    assert netns_files(d.root) == [] and dnat_rules(port) == []
    assert f" {bridge}:" not in links()
    d("network", "rm", "kill-net")
    assert str(subnet) not in iptables()


def test_prune_does_not_break_a_start_in_progress(d):
    """network prune's cleanup must not tear down a namespace a start in another process is setting up."""
    d("create", "--name", "race-c", "busybox", "sleep", "300")
    d.containers.append("race-c")
    script = (
        "import os, sys, time\n"
        "from dockyard.engine import Engine\n"
        "e = Engine(sys.argv[1]); rec = e.containers.get('race-c')\n"
        "with e.containers.store.locked(rec.id):\n"
        "    path = e.networks.setup(rec)\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(2)\n"
        "    print('alive' if os.path.exists(path) else 'gone', flush=True)\n"
        "    e.networks.teardown(rec)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(d.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        d("network", "prune", "-f")
        assert proc.stdout.readline().strip() == "alive"
    finally:
        proc.kill()
        proc.wait()
    assert netns_files(d.root) == []


def test_module_root_left_clean(d):
    """Last: after every test removed its containers and networks, nothing of this root is left."""
    assert d("ps", "-aq").stdout.split() == []
    assert d("network", "ls", "--format", "{{.Name}}").stdout.split() == ["bridge", "host", "none"]
    assert netns_files(d.root) == []
    default_bridge = d.inspect_net("bridge")["Options"]["com.docker.network.bridge.name"]
    assert f" {default_bridge}:" not in links()
    wait_for(lambda: aardvark_pids(d.root) == [], timeout=10)
    assert not any(str(d.root) in line for line in iptables().splitlines())
