"""Address management (pure): which subnet a new network gets, and which address a container gets.

Docker's default address pools: 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/16 in /20 steps.
A subnet is free when it overlaps none of the host's routes and none of the other networks' subnets
(so a network never shadows the host's own LAN or another bridge).  Addresses are handed out lowest
first inside ``ip_range`` (or the subnet), skipping the network address, the gateway and the
broadcast address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from dockyard.errors import Conflict, InvalidArgument

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def default_pools() -> Iterator[ipaddress.IPv4Network]:
    for second in range(17, 32):
        yield ipaddress.IPv4Network(f"172.{second}.0.0/16")
    yield from ipaddress.IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def parse_subnet(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {text}: invalid CIDR address: {text}") from None


def overlaps(subnet: IPNetwork, taken: Iterable[IPNetwork]) -> IPNetwork | None:
    for t in taken:
        if t.version == subnet.version and subnet.overlaps(t):  # type: ignore[arg-type]
            return t
    return None


def pick_subnet(taken: Iterable[IPNetwork]) -> ipaddress.IPv4Network:
    """The first default pool that clashes with nothing in ``taken`` (routes and other networks)."""
    taken = [t for t in taken if t.prefixlen > 0]  # a default route overlaps everything: ignore it
    for pool in default_pools():
        if overlaps(pool, taken) is None:
            return pool
    raise Conflict("could not find an available, non-overlapping IPv4 address pool among the defaults "
                   "to assign to the network")


def check_subnet(subnet: IPNetwork, networks: Iterable[IPNetwork]) -> None:
    """A user-given subnet must not overlap another network's (Docker's words)."""
    other = overlaps(subnet, networks)
    if other is not None:
        raise Conflict("Pool overlaps with other one on this address space")


def gateway_for(subnet: IPNetwork, gateway: str = "") -> str:
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise InvalidArgument(f"invalid gateway address {gateway}") from None
        if gw not in subnet:
            raise InvalidArgument(f"no matching subnet for gateway {gateway}")
        return str(gw)
    return str(next(subnet.hosts()))


def check_ip_range(subnet: IPNetwork, ip_range: str) -> str:
    if not ip_range:
        return ""
    rng = parse_subnet(ip_range)
    if not rng.subnet_of(subnet):  # type: ignore[arg-type]
        raise InvalidArgument(f"no matching subnet for range {ip_range}")
    return str(rng)


def allocate(subnet: IPNetwork, gateway: str, used: Iterable[str], ip_range: str = "") -> str:
    """The lowest free address of ``ip_range`` (or the subnet)."""
    pool = parse_subnet(ip_range) if ip_range else subnet
    skip = {str(subnet.network_address), str(subnet.broadcast_address), gateway, *used}
    for addr in pool.hosts() if pool.num_addresses > 2 else pool:
        if str(addr) not in skip:
            return str(addr)
    raise Conflict(f"no available IPv4 addresses on this network's address pools: {subnet}")


def check_static(subnet: IPNetwork, gateway: str, used: Iterable[str], ip: str) -> str:
    """A ``--ip`` address: inside the subnet, not the gateway, not taken (Docker's words)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid IPv4 address: {ip}") from None
    if addr not in subnet:
        raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {ip}")
    if ip == gateway or ip in set(used) or addr in (subnet.network_address, subnet.broadcast_address):
        raise Conflict("Address already in use")
    return str(addr)


def mac_for(ip: str) -> str:
    """Docker's MAC address for an IPv4 address: 02:42 followed by the address's four bytes."""
    packed = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def check_mac(mac: str) -> str:
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise InvalidArgument(f"invalid argument \"{mac}\" for \"--mac-address\" flag: {mac} is not a valid mac address")
    return mac.lower()
