"""What the host already has: routes, interfaces, ports in use; the host-wide network lock; and the
keeper veths that hold bridges up between containers.

Bridges, iptables chains and host ports are global to the machine, not to a data root, so the
changes dockyard makes to them (netavark setup/teardown, the isolation rules) are serialised by one
flock under /run, whichever data root the process works on.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from dockyard.errors import Conflict, Unavailable

LOCK_PATH = "/run/lock/dockyard-network.lock"


@contextmanager
def network_lock() -> Iterator[None]:
    path = LOCK_PATH if os.path.isdir(os.path.dirname(LOCK_PATH)) else "/tmp/dockyard-network.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def routes() -> list[tuple[str, ipaddress.IPv4Network]]:
    """The host's IPv4 routes as (interface, destination), from /proc/net/route (the main table);
    the default route is left out: it overlaps everything."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) < 8:
                    continue
                dest = socket.inet_ntoa(struct.pack("<L", int(parts[1], 16)))
                mask = socket.inet_ntoa(struct.pack("<L", int(parts[7], 16)))
                net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
                if net.prefixlen:
                    out.append((parts[0], net))
    except OSError:
        pass
    return out


def interface_exists(name: str) -> bool:
    return bool(name) and os.path.exists(f"/sys/class/net/{name}")


# -- keepers ---------------------------------------------------------------------------------------
# netavark removes a bridge (and its network's iptables chains) with the last container it tears
# down, so every `run` after an idle moment would build them again: ~250 ms of iptables work per
# container.  Docker keeps docker0 and a user network's bridge for as long as the network exists;
# dockyard does the same by leaving one end of a veth pair on the bridge (a port netavark does not
# own, so the bridge is never its last).  NetworkService.release_bridge takes a kept bridge down.


def keeper_name(network_id: str) -> str:
    """The keeper of a network's bridge (its peer is this name + "p"; both fit IFNAMSIZ)."""
    return f"dyk{network_id[:11]}"


def keeper_attached(name: str, bridge: str) -> bool:
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{name}/master")) == bridge
    except OSError:
        return False


def add_keeper(name: str, bridge: str) -> None:
    """Put the keeper ``name`` on ``bridge`` (replacing a stale one of the same name)."""
    remove_keeper(name)
    _ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    try:
        _ip("link", "set", name, "master", bridge)
    except Unavailable:
        remove_keeper(name)
        raise


def remove_keeper(name: str) -> None:
    if interface_exists(name):
        try:
            _ip("link", "del", name)  # takes its peer along
        except Unavailable:
            if interface_exists(name):
                raise


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise Unavailable(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _sock(host_ip: str, protocol: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    s = socket.socket(family, kind)
    if kind == socket.SOCK_STREAM:
        # TCP: bind despite connections in TIME_WAIT (a listener still makes it fail).  Not for UDP:
        # there SO_REUSEADDR on both sockets lets the bind succeed beside a program holding the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


def check_port_free(host_ip: str, port: int, protocol: str) -> None:
    """Bind the port for a moment, as Docker's port allocator would: a listener already there (any
    program on the host) makes it fail in Docker's words."""
    if protocol == "sctp":
        return
    ip = host_ip or "0.0.0.0"
    s = _sock(ip, protocol)
    try:
        s.bind((ip, port))
    except OSError as exc:
        shown = f"[{ip}]" if ":" in ip else ip
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(f"Bind for {shown}:{port} failed: port is already allocated") from None
        raise Conflict(f"Bind for {shown}:{port} failed: {exc.strerror}") from None
    finally:
        s.close()


def free_port(host_ip: str, protocol: str, avoid: set[int]) -> int:
    """A port from the kernel's ephemeral range that nothing listens on and no container holds."""
    for _ in range(200):
        s = _sock(host_ip or "0.0.0.0", protocol)
        try:
            s.bind((host_ip or "0.0.0.0", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in avoid:
            return port
    raise Conflict("no free host port found")


# -- claims: subnets and bridge names are the machine's, shared by every data root ----------------
CLAIMS_PATH = "/run/dockyard/network-claims.json"


def _read_claims() -> dict[str, dict[str, str]]:
    import json

    try:
        with open(CLAIMS_PATH) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    # A claim of a data root that is gone (a test's temporary root, say) is void.
    return {k: v for k, v in data.items() if isinstance(v, dict) and os.path.isdir(v.get("root", ""))}


def _write_claims(data: dict[str, dict[str, str]]) -> None:
    import json

    os.makedirs(os.path.dirname(CLAIMS_PATH), exist_ok=True)
    tmp = CLAIMS_PATH + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, CLAIMS_PATH)


def claimed_elsewhere(root: str) -> tuple[list[ipaddress.IPv4Network], set[str]]:
    """Subnets and bridge names other data roots' networks hold (call under :func:`network_lock`)."""
    subnets, ifaces = [], set()
    for v in _read_claims().values():
        if v["root"] != root:
            subnets.append(ipaddress.IPv4Network(v["subnet"]))
            ifaces.add(v["iface"])
    return subnets, ifaces


def claim(root: str, network_id: str, name: str, subnet: str, iface: str) -> None:
    """Record that ``root``'s network owns ``subnet`` and ``iface`` on this machine; Conflict when
    another data root's network holds either (two roots would share one bridge otherwise)."""
    data = _read_claims()
    mine = ipaddress.IPv4Network(subnet)
    for key, v in data.items():
        if key == network_id:
            continue
        if v["iface"] == iface or ipaddress.IPv4Network(v["subnet"]).overlaps(mine):
            raise Conflict(f"network {name}: subnet {subnet} or bridge {iface} is in use by network "
                           f"{v.get('name', key[:12])} of the data root {v['root']}")
    entry = {"root": root, "name": name, "subnet": subnet, "iface": iface}
    if data.get(network_id) != entry:
        data[network_id] = entry
        _write_claims(data)


def unclaim(network_id: str) -> None:
    data = _read_claims()
    if data.pop(network_id, None) is not None:
        _write_claims(data)
