"""What the host already has: routes, interfaces, ports in use; and the host-wide network lock.

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
from collections.abc import Iterator
from contextlib import contextmanager

from dockyard.errors import Conflict

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
