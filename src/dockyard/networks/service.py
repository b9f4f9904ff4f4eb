"""The network service: networks, container endpoints, and a container's network namespace from
start to exit.

Life of a container's network (bridge or user network):

- create: :meth:`attach` claims an address (and MAC) on its network -> ``endpoints`` row
- start:  :meth:`setup` makes ``<dataroot>/netns/<id>``, reserves the published host ports (a port
          some program or another container holds fails the start in Docker's words), runs
          ``netavark setup`` and isolates the bridge; returns the namespace path for runc
- exit:   :meth:`teardown` runs ``netavark teardown`` with the same description, drops the
          isolation rules of a bridge that went away, removes the namespace, frees the ports
- rm:     :meth:`detach` tears down what is left and releases the addresses

A dockyard process killed between setup and teardown leaves a namespace file behind;
:meth:`cleanup` (``network prune``, ``system boot``, and every start of the same container)
tears down whatever belongs to a container that is not running.
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, PermissionDenied
from dockyard.networks import firewall, host, ipam, netns
from dockyard.networks.model import BUILTIN, Endpoint, Network, PortMapping, port_key
from dockyard.networks.netavark import NetavarkDriver
from dockyard.networks.store import NetworkStore

DEFAULT_BRIDGE_IFACE = "dockyard0"


class NetworkService:
    def __init__(self, store: NetworkStore, root: Path) -> None:
        self.store = store
        self.root = Path(root)
        self.driver = NetavarkDriver(self.root / "networks")

    def netns_path(self, cid: str) -> Path:
        return self.root / "netns" / cid

    # -- networks ------------------------------------------------------------------------------
    def ensure_builtin(self) -> None:
        """bridge, host and none exist in every data root, as in Docker (made on first use)."""
        have = {n.name for n in self.store.all()}
        if set(BUILTIN) <= have:
            return
        with host.network_lock():
            have = {n.name for n in self.store.all()}
            for name in BUILTIN:
                if name in have:
                    continue
                net = Network(id=os.urandom(32).hex(), name=name, driver={"none": "null"}.get(name, name),
                              created=time.time(), dns_enabled=False)
                if name == "bridge":
                    subnet = self._free_subnet()
                    net.subnet, net.gateway = str(subnet), ipam.gateway_for(subnet)
                    net.interface = self._free_iface(DEFAULT_BRIDGE_IFACE[:-1])
                    net.options = {"com.docker.network.bridge.default_bridge": "true",
                                   "com.docker.network.bridge.name": net.interface}
                try:
                    self.store.add(net)
                except sqlite3.IntegrityError:
                    continue
                if net.subnet:
                    self._claim(net)

    def _taken_subnets(self) -> list[ipaddress.IPv4Network]:
        """The host's routes, this root's networks and the networks other data roots claimed."""
        nets = self.store.all()
        own = {n.interface for n in nets}
        routes = [r for iface, r in host.routes() if iface not in own]  # ours are counted below
        elsewhere, _ = host.claimed_elsewhere(str(self.root))
        return routes + elsewhere + [ipam.parse_subnet(n.subnet) for n in nets if n.subnet]

    def _claim(self, net: Network) -> None:
        host.claim(str(self.root), net.id, net.name, net.subnet, net.interface)

    def _free_subnet(self) -> ipaddress.IPv4Network:
        return ipam.pick_subnet(self._taken_subnets())

    def _free_iface(self, prefix: str) -> str:
        used = {n.interface for n in self.store.all()} | host.claimed_elsewhere(str(self.root))[1]
        for i in range(1000):
            name = f"{prefix}{i}"
            if name not in used and not host.interface_exists(name):
                return name
        raise Conflict("no free bridge name")

    def create(self, name: str, *, driver: str = "bridge", subnet: str = "", gateway: str = "", ip_range: str = "",
               internal: bool = False, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None) -> Network:
        self.ensure_builtin()
        if driver not in ("bridge", ""):
            raise NotFound(f'plugin "{driver}" not found')
        if not name or not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
            raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if name in BUILTIN:
            raise Conflict(f"network with name {name} already exists")
        options = dict(options or {})
        with host.network_lock():
            if any(n.name == name for n in self.store.all()):
                raise Conflict(f"network with name {name} already exists")
            if subnet:
                net_addr = ipam.parse_subnet(subnet)
                others = [ipam.parse_subnet(n.subnet) for n in self.store.all() if n.subnet]
                ipam.check_subnet(net_addr, others)
            else:
                if gateway or ip_range:
                    raise InvalidArgument("invalid config: gateway and ip-range need a --subnet")
                net_addr = self._free_subnet()
            nid = os.urandom(32).hex()
            iface = options.get("com.docker.network.bridge.name") or f"br-{nid[:12]}"
            if len(iface) > 15:
                raise InvalidArgument(f"bridge name {iface!r} is longer than 15 characters")
            net = Network(id=nid, name=name, driver="bridge", created=time.time(), subnet=str(net_addr),
                          gateway=ipam.gateway_for(net_addr, gateway), ip_range=ipam.check_ip_range(net_addr, ip_range),
                          internal=internal, labels=dict(labels or {}), options=options, interface=iface,
                          dns_enabled=True)
            if iface in {n.interface for n in self.store.all()}:
                raise Conflict(f"bridge name {iface} is in use by another network")
            self._claim(net)
            try:
                self.store.add(net)
            except sqlite3.IntegrityError:
                host.unclaim(net.id)
                raise Conflict(f"network with name {name} already exists") from None
        return net

    def remove(self, name_or_id: str) -> Network:
        net = self.store.get(name_or_id)
        if net.builtin:
            raise PermissionDenied(f"{net.name} is a pre-defined network and cannot be removed")
        if self.store.endpoints(network_id=net.id):
            raise PermissionDenied(f"error while removing network: network {net.name} id {net.id} "
                                          "has active endpoints")
        try:
            self.store.delete(net.id)
        except sqlite3.IntegrityError:  # an endpoint arrived meanwhile
            raise PermissionDenied(f"error while removing network: network {net.name} id {net.id} "
                                   "has active endpoints") from None
        with host.network_lock():
            host.unclaim(net.id)
        return net

    # -- container endpoints -------------------------------------------------------------------
    def attach(self, cid: str, name: str, net: Network, *, aliases: list[str], ip: str = "", mac: str = "") -> Endpoint:
        """Claim an address for container ``cid`` on ``net`` (create, connect)."""
        if net.driver != "bridge":
            raise InvalidArgument(f"container cannot be connected to network {net.name} (driver {net.driver})")
        if aliases and net.name == "bridge":
            raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        if ip and net.name == "bridge":
            raise InvalidArgument("user specified IP address is supported on user defined networks only")
        subnet = ipam.parse_subnet(net.subnet)
        mac = ipam.check_mac(mac) if mac else ""

        def make(used: set[str], ifaces: set[str]) -> Endpoint:
            addr = ipam.check_static(subnet, net.gateway, used, ip) if ip else ipam.allocate(
                subnet, net.gateway, used, net.ip_range)
            iface = next(f"eth{i}" for i in range(len(ifaces) + 1) if f"eth{i}" not in ifaces)
            return Endpoint(container_id=cid, network_id=net.id, endpoint_id=os.urandom(32).hex(), ip=addr,
                            mac=mac or ipam.mac_for(addr), interface=iface, aliases=list(aliases),
                            prefix_len=subnet.prefixlen)
        try:
            ep = self.store.add_endpoint(make)
        except sqlite3.IntegrityError:
            if any(e.network_id == net.id for e in self.store.endpoints(container_id=cid)):
                raise Conflict(f"endpoint with name {name} already exists in network {net.name}") from None
            raise Conflict("Address already in use") from None
        ep.prefix_len = subnet.prefixlen
        return ep

    def attachments(self, cid: str) -> list[tuple[Network, Endpoint]]:
        out = []
        for ep in self.store.endpoints(container_id=cid):
            net = self.store.by_id(ep.network_id)
            ep.prefix_len = ipam.parse_subnet(net.subnet).prefixlen
            out.append((net, ep))
        return out

    def _dns_names(self, cid: str, ep: Endpoint) -> list[str]:
        return [cid[:12], *ep.aliases]

    def _described(self, cid: str, attachments: list[tuple[Network, Endpoint]]) -> list[tuple[Network, Endpoint]]:
        """What netavark gets: the endpoints with their DNS names (short ID and aliases)."""
        out = []
        for net, ep in attachments:
            e = Endpoint(**{**ep.__dict__, "aliases": self._dns_names(cid, ep) if net.dns_enabled else []})
            out.append((net, e))
        return out

    # -- published ports -----------------------------------------------------------------------
    def _choose_ports(self, bindings: dict[str, list[dict[str, str]]], taken: list[PortMapping]) -> list[PortMapping]:
        chosen: list[PortMapping] = []

        def clash(ip: str, port: int, proto: str) -> bool:
            for t in [*taken, *chosen]:
                if t.protocol == proto and t.host_port == port and (not ip or not t.host_ip or ip == t.host_ip
                                                                  or "0.0.0.0" in (ip, t.host_ip)):
                    return True
            return False

        for key, hosts in bindings.items():
            cport, proto = port_key(key)
            for h in hosts or [{"HostIp": "", "HostPort": ""}]:
                ip = h.get("HostIp", "") or ""
                ip = "" if ip in ("0.0.0.0",) else ip
                if ":" in ip:
                    raise InvalidArgument(f"publishing on the IPv6 address {ip}: dockyard's bridge networks are "
                                          "IPv4 only")
                spec = h.get("HostPort", "") or ""
                shown = f"[{ip}]" if ":" in ip else (ip or "0.0.0.0")
                if not spec:
                    avoid = {t.host_port for t in [*taken, *chosen] if t.protocol == proto}
                    port = host.free_port(ip, proto, avoid)
                elif "-" in spec:
                    lo, _, hi = spec.partition("-")
                    port = 0
                    for p in range(int(lo), int(hi) + 1):
                        if clash(ip, p, proto):
                            continue
                        try:
                            host.check_port_free(ip, p, proto)
                        except Conflict:
                            continue
                        port = p
                        break
                    if not port:
                        raise Conflict(f"Bind for {shown}:{spec} failed: port is already allocated")
                else:
                    port = int(spec)
                    if clash(ip, port, proto):
                        raise Conflict(f"Bind for {shown}:{port} failed: port is already allocated")
                    host.check_port_free(ip, port, proto)
                chosen.append(PortMapping(ip, port, cport, proto))
        return chosen

    # -- start and exit ------------------------------------------------------------------------
    def setup(self, cid: str, name: str, bindings: dict[str, list[dict[str, str]]]) -> Path:
        """The container's namespace, configured; everything undone if any step fails."""
        self.cleanup_container(cid)  # a previous run whose process was killed before its teardown
        attachments = self.attachments(cid)
        path = netns.create(self.netns_path(cid))
        ports: list[PortMapping] = []
        try:
            with host.network_lock():
                try:
                    ports = self.store.reserve(cid, lambda taken: self._choose_ports(bindings, taken))
                except Conflict as exc:
                    raise Conflict(f"driver failed programming external connectivity on endpoint {name} "
                                   f"({cid}): {exc}") from None
                for net, _ in attachments:
                    self._claim(net)  # after a reboot, or a claim another root's mistake voided
                if attachments:
                    self.driver.setup(path, cid, name, self._described(cid, attachments), ports)
                    for net, _ in attachments:
                        firewall.isolate(net.interface, net.internal)
        except BaseException:
            self.teardown(cid, name)
            raise
        return path

    def teardown(self, cid: str, name: str) -> list[str]:
        """Undo :meth:`setup` (idempotent); returns the errors met (the exit is recorded anyway)."""
        errors: list[str] = []
        path = self.netns_path(cid)
        attachments = self.attachments(cid)
        ports = [m for _, m in self.store.reservations(cid)]
        with host.network_lock():
            if netns.exists(path) and attachments:
                try:
                    self.driver.teardown(path, cid, name, self._described(cid, attachments), ports)
                except DockyardError as exc:
                    errors.append(str(exc))
            for net, _ in attachments:
                if not host.interface_exists(net.interface):
                    try:
                        firewall.release(net.interface, net.internal)
                    except DockyardError as exc:
                        errors.append(str(exc))
            try:
                netns.remove(path)
            except (DockyardError, OSError) as exc:
                errors.append(str(exc))
            self.store.release_ports(cid)
        return errors

    def cleanup_container(self, cid: str, name: str = "") -> None:
        if self.netns_path(cid).exists() or self.store.reservations(cid):
            self.teardown(cid, name or cid[:12])

    def detach(self, cid: str, name: str) -> None:
        """Container removal: nothing of its network stays."""
        self.cleanup_container(cid, name)
        self.store.remove_endpoint(cid)

    def connect(self, cid: str, name: str, net: Network, running: bool, *, aliases: list[str], ip: str = "") -> Endpoint:
        ep = self.attach(cid, name, net, aliases=aliases, ip=ip)
        if running and netns.exists(self.netns_path(cid)):
            try:
                with host.network_lock():
                    self._claim(net)
                    self.driver.setup(self.netns_path(cid), cid, name, self._described(cid, [(net, ep)]), [])
                    firewall.isolate(net.interface, net.internal)
            except BaseException:
                self.store.remove_endpoint(cid, net.id)
                raise
        return ep

    def disconnect(self, cid: str, name: str, net: Network, running: bool) -> None:
        eps = [e for e in self.store.endpoints(container_id=cid) if e.network_id == net.id]
        if not eps:
            raise NotFound(f"container {cid[:12]} is not connected to network {net.name}")
        if running and netns.exists(self.netns_path(cid)):
            # The published ports go with the network: netavark set their DNAT rules up on the
            # container's networks at start, and only a teardown naming them removes them.
            ports = [m for _, m in self.store.reservations(cid)]
            with host.network_lock():
                self.driver.teardown(self.netns_path(cid), cid, name, self._described(cid, [(net, eps[0])]), ports)
                if not host.interface_exists(net.interface):
                    firewall.release(net.interface, net.internal)
        self.store.remove_endpoint(cid, net.id)

    def cleanup(self, is_running: Callable[[str], bool], names: Callable[[str], str | None],
                locked: Callable[[str], AbstractContextManager[object]] | None = None) -> list[str]:
        """Tear down the network of every container that is not running (a killed dockyard process
        left it), and forget endpoints of containers that no longer exist.  Returns the IDs cleaned.

        ``locked(cid)`` holds the container's lifecycle lock for the check and the teardown: a start
        in another process sets the namespace up before it records "running", and must not lose it."""
        done = []
        d = self.root / "netns"
        candidates = {p.name for p in d.iterdir()} if d.is_dir() else set()
        candidates |= {c for c, _ in self.store.reservations()}
        for cid in sorted(candidates):
            with locked(cid) if locked is not None else nullcontext():
                if not is_running(cid):
                    self.teardown(cid, names(cid) or cid[:12])
                    done.append(cid)
        for ep in self.store.endpoints():
            if names(ep.container_id) is None:
                self.store.remove_endpoint(ep.container_id)
        return done

