"""Networks, endpoints and port mappings as typed values, and the parsing of ``-p`` and ``--expose``.

Pure: no I/O.  ``parse_publish`` follows Docker's ``nat.ParsePortSpecs`` (``80``, ``8080:80``,
``127.0.0.1:8080:80``, ``127.0.0.1::80``, ``[::1]:8080:80``, ranges ``8000-8009:80-89``, a host range
for one container port ``8000-8009:80``, ``/tcp`` ``/udp`` ``/sctp``) and keeps Docker's shape of
``HostConfig.PortBindings``: ``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

PROTOCOLS = ("tcp", "udp", "sctp")
BUILTIN = ("bridge", "host", "none")
DRIVER_OF_BUILTIN = {"bridge": "bridge", "host": "host", "none": "null"}


@dataclass
class Network:
    id: str
    name: str
    driver: str = "bridge"              # bridge | host | null
    created: float = 0.0
    subnet: str = ""                    # "172.18.0.0/16" ("" for host/none)
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    interface: str = ""                 # the bridge device on the host
    dns_enabled: bool = True            # user networks resolve container names; the default bridge does not

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN


@dataclass
class Endpoint:
    """A container's attachment to a network: its address there, and the names it answers to."""

    container_id: str
    network_id: str
    endpoint_id: str
    ip: str
    mac: str
    interface: str                      # eth0, eth1, ... inside the container
    aliases: list[str] = field(default_factory=list)
    prefix_len: int = 0


@dataclass(frozen=True)
class PortMapping:
    """One published port as set up: host (ip, port) forwarded to the container's port."""

    host_ip: str                        # "" = every host address
    host_port: int
    container_port: int
    protocol: str = "tcp"

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.protocol}"


def _port_range(text: str, what: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise InvalidArgument(f"invalid {what}: {text}") from None
    if not (0 < a <= 65535 and 0 < b <= 65535) or b < a:
        raise InvalidArgument(f"invalid {what}: {text}")
    return a, b


def _split_proto(text: str) -> tuple[str, str]:
    port, sep, proto = text.rpartition("/")
    if not sep:
        return text, "tcp"
    proto = proto.lower() or "tcp"  # "80/" is 80/tcp (nat.SplitProtoPort)
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto}")
    return port, proto


def parse_expose(spec: str) -> list[str]:
    """``--expose 80``, ``80/udp``, ``8000-8002`` -> ["80/tcp"], ... (Docker's ExposedPorts keys)."""
    if ":" in spec:
        raise InvalidArgument(f"invalid port format for --expose: {spec}")
    port, proto = _split_proto(spec)
    try:
        a, b = _port_range(port, "port")
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid range format for --expose: {spec}, error: {exc}") from None
    return [f"{p}/{proto}" for p in range(a, b + 1)]


def parse_publish(spec: str) -> dict[str, list[dict[str, str]]]:
    """One ``-p`` value -> PortBindings entries.  Raises InvalidArgument in Docker's words."""
    rest, proto = _split_proto(spec)
    # nat.splitParts: the last field is the container port, the one before it the host port, and
    # everything before those the host IP ("[::1]", or a bare IPv6 address as in "::1:8080:80").
    parts = rest.split(":")
    container = parts[-1]
    host = parts[-2] if len(parts) >= 2 else ""
    host_ip = ":".join(parts[:-2])
    if host_ip.startswith("["):
        if not host_ip.endswith("]"):
            raise InvalidArgument(f"invalid IP address: {host_ip}")
        host_ip = host_ip[1:-1]
    if host_ip:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {host_ip}") from None
    if not container:
        raise InvalidArgument(f"no port specified: {spec}<empty>")
    c_lo, c_hi = _port_range(container, "containerPort")
    h_lo = h_hi = 0
    if host:
        h_lo, h_hi = _port_range(host, "hostPort")
    n = c_hi - c_lo + 1
    if host and n > 1 and h_hi - h_lo + 1 != n:
        raise InvalidArgument(f"invalid ranges specified for container and host Ports: {container} and {host}")
    out: dict[str, list[dict[str, str]]] = {}
    for i in range(n):
        if not host:
            hp = ""
        elif n == 1:                        # "8080", or a range "8000-8009" to pick from
            hp = f"{h_lo}-{h_hi}" if h_hi != h_lo else str(h_lo)
        else:
            hp = str(h_lo + i)
        out.setdefault(f"{c_lo + i}/{proto}", []).append({"HostIp": host_ip, "HostPort": hp})
    return out


def merge_bindings(specs: list[str]) -> dict[str, list[dict[str, str]]]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for s in specs:
        for key, hosts in parse_publish(s).items():
            bindings.setdefault(key, []).extend(hosts)
    return bindings


def port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), proto or "tcp"


def format_mapping(m: PortMapping) -> str:
    """``0.0.0.0:8080->80/tcp`` as ``docker ps`` shows it."""
    ip = m.host_ip or "0.0.0.0"
    if ":" in ip:
        ip = f"[{ip}]"
    return f"{ip}:{m.host_port}->{m.container_port}/{m.protocol}"
