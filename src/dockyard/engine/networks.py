"""The networks face of the engine: ``dockyard network ...``, the Engine API's /networks, and the
container lifecycle's network hooks.  Thin over :class:`~dockyard.networks.service.NetworkService`;
it adds the Options values, Docker's filters and Docker's JSON shapes (``network inspect``, a
container's ``NetworkSettings``).
"""

from __future__ import annotations

import builtins
import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from dockyard.containers.store import ACTIVE, RUNNING, ContainerRecord
from dockyard.engine.options import Filters
from dockyard.errors import InvalidArgument

# The networks package is imported when a container has a network to set up (or a view needs it):
# `run --network none|host` and most commands never load it.
if TYPE_CHECKING:
    from dockyard.networks.model import Network, PortMapping
    from dockyard.networks.service import NetworkService
    from dockyard.networks.store import NetworkStore
    from dockyard.engine import Engine

OWN_MODES = ("host", "none")


@dataclass
class NetworkCreateOptions:
    """``network create``'s flags (and the API's POST /networks/create body)."""

    name: str
    driver: str = "bridge"
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)


def uses_endpoints(mode: str) -> bool:
    """Bridge-type modes: the default bridge or a user network (not host, none, container:X)."""
    return mode not in OWN_MODES and not mode.startswith("container:")


class NetworkEngine:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @cached_property
    def service(self) -> NetworkService:
        from dockyard.networks.service import NetworkService

        return NetworkService(self.store, self.engine.root)

    @cached_property
    def store(self) -> NetworkStore:
        from dockyard.networks.store import NetworkStore

        return NetworkStore(self.engine.db)

    # -- network commands ----------------------------------------------------------------------
    def create(self, opts: NetworkCreateOptions) -> Network:
        net = self.service.create(opts.name, driver=opts.driver, subnet=opts.subnet, gateway=opts.gateway,
                                  ip_range=opts.ip_range, internal=opts.internal, labels=opts.labels,
                                  options=opts.options)
        self.engine.events.emit("network", "create", net.id, {"name": net.name, "type": net.driver})
        return net

    def get(self, name_or_id: str) -> Network:
        self.service.ensure_builtin()
        return self.store.get(name_or_id)

    def list(self, filters: Filters | None = None) -> builtins.list[Network]:
        from dockyard.engine.images import _labels_match

        self.service.ensure_builtin()
        f = filters or Filters()
        f.check({"driver", "id", "label", "name", "scope", "type", "dangling"})
        out = []
        for n in self.store.all():
            if f.get("driver") and n.driver not in f.get("driver"):
                continue
            if f.get("id") and not any(n.id.startswith(v) for v in f.get("id")):
                continue
            if f.get("name") and not any(re.search(v, n.name) for v in f.get("name")):
                continue
            if f.get("label") and not _labels_match(n.labels, f.get("label")):
                continue
            if f.get("scope") and "local" not in f.get("scope"):
                continue
            if f.get("type"):
                kind = "builtin" if n.builtin else "custom"
                if kind not in f.get("type"):
                    continue
            if f.get("dangling"):
                dangling = not n.builtin and not self.store.endpoints(network_id=n.id)
                if (f.get("dangling")[-1].lower() in ("1", "true")) != dangling:
                    continue
            out.append(n)
        return out

    def remove(self, name_or_id: str) -> Network:
        net = self.service.remove(name_or_id)
        self.engine.events.emit("network", "destroy", net.id, {"name": net.name, "type": net.driver})
        return net

    def prune(self, filters: Filters | None = None) -> builtins.list[str]:
        f = filters or Filters()
        f.check({"until", "label", "label!"})
        from dockyard.engine.images import _labels_match, _until  # not on the container run path

        until = min((_until(v) for v in f.get("until")), default=None)
        removed = []
        self.cleanup()
        for n in self.store.all():
            if n.builtin or self.store.endpoints(network_id=n.id):
                continue
            if until is not None and n.created >= until:
                continue
            if f.get("label") and not _labels_match(n.labels, f.get("label")):
                continue
            if f.get("label!") and any(_labels_match(n.labels, [v]) for v in f.get("label!")):
                continue
            try:
                self.service.remove(n.id)
            except Exception:  # noqa: BLE001 - taken meanwhile: Docker skips it too
                continue
            removed.append(n.name)
            self.engine.events.emit("network", "destroy", n.id, {"name": n.name, "type": n.driver})
        return removed

    def connect(self, network: str, container: str, *, aliases: builtins.list[str] | None = None,
                ip: str = "") -> None:
        net = self.get(network)
        rec = self.engine.containers.get(container)
        mode = rec.spec.network_mode
        if net.driver != "bridge" or not uses_endpoints(mode):
            raise InvalidArgument("container cannot be disconnected from host network or connected to host network"
                                  if "host" in (net.name, mode) else
                                  "container sharing network namespace with another container or host cannot be "
                                  "connected to any other network")
        if any(e.network_id == net.id for e in self.store.endpoints(container_id=rec.id)):
            raise InvalidArgument(f"endpoint with name {rec.name} already exists in network {net.name}")
        self.service.connect(rec.id, rec.name, net, rec.state in RUNNING,
                             aliases=list(aliases or []), ip=ip)
        self.engine.events.emit("network", "connect", net.id, {"name": net.name, "type": net.driver,
                                                              "container": rec.id})

    def disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        net = self.get(network)
        rec = self.engine.containers.get(container)
        self.service.disconnect(rec.id, rec.name, net, rec.state in RUNNING)
        self.engine.events.emit("network", "disconnect", net.id, {"name": net.name, "type": net.driver,
                                                                 "container": rec.id})

    def cleanup(self) -> builtins.list[str]:
        """Whatever a killed dockyard process left of a stopped container's network goes."""
        self.engine.containers.list(all_=True)  # reconciled first: a dead container's exit tears its network down
        store = self.engine.containers.store

        def name(cid: str) -> str | None:
            r = store.find(cid)
            return r.name if r is not None else None

        def locked(cid: str):
            # a start in progress holds the container's lock from network setup to "running"
            return store.locked(cid) if store.find(cid) is not None else nullcontext()

        return self.service.cleanup(self._running, name, locked)

    def _running(self, cid: str) -> bool:
        r = self.engine.containers.store.find(cid)
        return r is not None and r.state in ACTIVE

    # -- container hooks -----------------------------------------------------------------------
    def attach_new(self, cid: str, name: str, mode: str, *, aliases: builtins.list[str], ip: str, mac: str) -> str:
        """At create: resolve the network mode and claim the container's address.  Returns the mode
        as stored (``container:<id>`` for a named container)."""
        if mode.startswith("container:"):
            other = self.engine.containers.get(mode.split(":", 1)[1])
            if other.id == cid:
                raise InvalidArgument("cannot join own network")
            return f"container:{other.id}"
        if mode in OWN_MODES:
            if aliases:
                raise InvalidArgument("network-scoped alias is supported only for containers in user defined "
                                      "networks")
            if ip:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            return mode
        net = self.get(mode or "bridge")
        if net.driver == "host" or net.driver == "null":
            return self.attach_new(cid, name, net.name, aliases=aliases, ip=ip, mac=mac)
        self.service.attach(cid, name, net, aliases=aliases, ip=ip, mac=mac)
        return net.name

    def setup(self, rec: ContainerRecord) -> str | None:
        """At start: the network namespace runc joins (None: runc makes one, or the host's)."""
        mode = rec.spec.network_mode
        if mode in OWN_MODES:
            return None
        if mode.startswith("container:"):
            other = self.engine.containers.get(mode.split(":", 1)[1])
            if other.state not in RUNNING or not other.pid:
                raise InvalidArgument(f"cannot join network of a non running container: {other.name}")
            return f"/proc/{other.pid}/ns/net"
        return str(self.service.setup(rec.id, rec.name, _bindings(rec)))

    def teardown(self, rec: ContainerRecord) -> builtins.list[str]:
        if not uses_endpoints(rec.spec.network_mode):
            return []
        return self.service.teardown(rec.id, rec.name)

    def detach(self, rec: ContainerRecord) -> None:
        """At removal: give up the container's addresses.  Only bridge-type modes have any (``connect``
        refuses host, none and container:X)."""
        if uses_endpoints(rec.spec.network_mode):
            self.service.detach(rec.id, rec.name)

    # -- views ---------------------------------------------------------------------------------
    def host_entries(self, rec: ContainerRecord) -> builtins.list[str]:
        """The container's own addresses (for its /etc/hosts)."""
        return [ep.ip for _, ep in self._attachments(rec)]

    def dns_servers(self, rec: ContainerRecord) -> builtins.list[str]:
        """aardvark-dns listens on the gateway of each network with DNS (user networks)."""
        return [net.gateway for net, _ in self._attachments(rec) if net.dns_enabled and net.gateway]

    def gateway(self, rec: ContainerRecord) -> str:
        atts = self._attachments(rec)
        return atts[0][0].gateway if atts else ""

    def _attachments(self, rec: ContainerRecord):
        return self.service.attachments(rec.id) if uses_endpoints(rec.spec.network_mode) else []

    def network_names(self, rec: ContainerRecord) -> builtins.list[str]:
        if not uses_endpoints(rec.spec.network_mode):
            return [rec.spec.network_mode.split(":")[0] if rec.spec.network_mode.startswith("container:")
                    else rec.spec.network_mode]
        return [net.name for net, _ in self.service.attachments(rec.id)]

    def ports_text(self, rec: ContainerRecord) -> str:
        """``docker ps``'s PORTS: published mappings of a running container, then exposed-only ports."""
        if rec.state not in RUNNING:
            return ""  # as NetworkSettings.Ports: a container that is not running has none
        mappings = self.ports(rec.id)
        published = {m.key for m in mappings}
        from dockyard.networks.model import format_mapping, port_key

        parts = [format_mapping(m) for m in mappings]
        parts += [k for k in sorted(rec.spec.exposed_ports, key=port_key) if k not in published]
        return ", ".join(parts)

    def ports(self, cid: str) -> builtins.list[PortMapping]:
        return [m for _, m in self.store.reservations(cid)]

    def settings(self, rec: ContainerRecord) -> dict[str, Any]:
        """``NetworkSettings`` of ``docker inspect``."""
        running = rec.state in RUNNING
        ports: dict[str, Any] = {k: None for k in rec.spec.exposed_ports}
        for k in rec.spec.port_bindings:
            ports.setdefault(k, None)
        if running:
            for m in self.ports(rec.id):
                ports.setdefault(m.key, None)
                ports[m.key] = (ports[m.key] or []) + [{"HostIp": m.host_ip or "0.0.0.0", "HostPort": str(m.host_port)}]
        else:
            ports = {}
        networks: dict[str, Any] = {}
        top = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""}
        mode = rec.spec.network_mode
        if mode in OWN_MODES:
            networks[mode] = _endpoint_view(self.get(mode).id, "", None, running)
        for net, ep in self.service.attachments(rec.id):
            view = _endpoint_view(net.id, net.gateway, ep, running)
            if running and net.dns_enabled:
                view["DNSNames"] = [rec.name, rec.id[:12], *ep.aliases]
            networks[net.name] = view
            if net.name == "bridge":
                top = {k: view[k] for k in top}
        sandbox = self.service.netns_path(rec.id)
        return {
            "Bridge": "", "SandboxID": rec.id if running and sandbox.exists() else "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
            "SandboxKey": str(sandbox) if running and sandbox.exists() else "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, **top,
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "", "Networks": networks,
        }

    def inspect(self, net: Network) -> dict[str, Any]:
        containers = {}
        store = self.engine.containers.store
        for ep in self.store.endpoints(network_id=net.id):
            r = store.find(ep.container_id)
            if r is None or r.state not in RUNNING:
                continue
            containers[ep.container_id] = {"Name": r.name, "EndpointID": ep.endpoint_id, "MacAddress": ep.mac,
                                           "IPv4Address": f"{ep.ip}/{ep.prefix_len or _prefix(net)}",
                                           "IPv6Address": ""}
        config = []
        if net.subnet:
            c = {"Subnet": net.subnet, "Gateway": net.gateway}
            if net.ip_range:
                c["IPRange"] = net.ip_range
            config.append(c)
        return {
            "Name": net.name, "Id": net.id, "Created": _rfc3339(net.created), "Scope": "local",
            "Driver": net.driver, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {} if net.name != "bridge" else None, "Config": config},
            "Internal": net.internal, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers, "Options": net.options, "Labels": net.labels,
        }


def _rfc3339(ts: float) -> str:
    from dockyard.engine.images import rfc3339

    return rfc3339(ts)


def _prefix(net: Network) -> int:
    return int(net.subnet.split("/")[1]) if "/" in net.subnet else 0


def _endpoint_view(network_id: str, gateway: str, ep, running: bool) -> dict[str, Any]:
    return {
        "IPAMConfig": None, "Links": None, "Aliases": (ep.aliases or None) if ep else None, "MacAddress":
        ep.mac if ep and running else "", "NetworkID": network_id,
        "EndpointID": ep.endpoint_id if ep and running else "", "Gateway": gateway if running else "",
        "IPAddress": ep.ip if ep and running else "", "IPPrefixLen": ep.prefix_len if ep and running else 0,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None,
    }


def _bindings(rec: ContainerRecord) -> dict[str, builtins.list[dict[str, str]]]:
    """The ports to publish: -p bindings, and with -P every exposed port on a free host port."""
    from dockyard.networks.model import port_key

    bindings = {k: list(v) for k, v in rec.spec.port_bindings.items()}
    if rec.spec.publish_all:
        for key in rec.spec.exposed_ports:
            bindings.setdefault(key, [{"HostIp": "", "HostPort": ""}])
    for key in bindings:
        port_key(key)
    return bindings


def port_lines(mappings: builtins.list[PortMapping], private: str = "") -> builtins.list[str]:
    """``docker port`` output lines, optionally for one private port ("80" or "80/udp")."""
    def host(m: PortMapping) -> str:  # net.JoinHostPort: an IPv6 address in brackets
        ip = m.host_ip or "0.0.0.0"
        return f"[{ip}]:{m.host_port}" if ":" in ip else f"{ip}:{m.host_port}"

    if private:
        key = private if "/" in private else private + "/tcp"
        return [host(m) for m in mappings if m.key == key]
    return [f"{m.key} -> {host(m)}" for m in mappings]

