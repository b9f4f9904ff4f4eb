"""The network driver: netavark (podman's network stack, Debian's ``netavark`` and ``aardvark-dns``).

netavark is stateless: ``netavark setup NETNS`` gets the container's networks, its addresses and
its published ports as JSON on standard input and configures the bridge, the veth pair, the
addresses and routes, the NAT and port-forwarding rules and the aardvark-dns records;
``netavark teardown NETNS`` with the same JSON undoes exactly that (the bridge goes with its last
container, aardvark-dns exits with its last record).  So dockyard keeps the truth (addresses,
ports) in its own database and hands netavark the same description for both calls.

``--config <dataroot>/networks`` holds aardvark-dns's record files: each data root runs its own
aardvark-dns, listening on the gateway address of each of its networks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from dockyard.errors import FailedPrecondition, Unavailable
from dockyard.networks.model import Endpoint, Network, PortMapping

SEARCH = ("/usr/lib/podman", "/usr/libexec/podman", "/usr/local/lib/podman", "/usr/local/libexec/podman")


def find_binary(name: str) -> str:
    for d in SEARCH:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    found = shutil.which(name)
    if not found:
        raise FailedPrecondition(f"{name} not found: install Debian's {name} package (apt-get install {name})")
    return found


def netavark_name(net: Network) -> str:
    """The name netavark knows the network by.  netavark derives its iptables chain names from it,
    and every data root has a network called ``bridge``: the ID makes it unique on the machine, so
    one root's teardown never removes another root's NAT rules."""
    return f"{net.name}-{net.id[:12]}"


def network_info(net: Network) -> dict:
    """A network as netavark describes it (podman's types.Network JSON)."""
    opts = {}
    if "com.docker.network.driver.mtu" in net.options:
        opts["mtu"] = net.options["com.docker.network.driver.mtu"]
    return {
        "name": netavark_name(net), "id": net.id, "driver": "bridge", "network_interface": net.interface,
        "subnets": [{"subnet": net.subnet, "gateway": net.gateway}],
        "ipv6_enabled": False, "internal": net.internal, "dns_enabled": net.dns_enabled,
        "ipam_options": {"driver": "host-local"}, **({"options": opts} if opts else {}),
    }


def options_json(container_id: str, container_name: str, attachments: list[tuple[Network, Endpoint]],
                 ports: list[PortMapping]) -> dict:
    return {
        "container_id": container_id,
        "container_name": container_name,
        "port_mappings": [{"host_ip": p.host_ip, "container_port": p.container_port, "host_port": p.host_port,
                           "range": 1, "protocol": p.protocol} for p in ports],
        "networks": {netavark_name(net): {"static_ips": [ep.ip], "aliases": ep.aliases, "interface_name": ep.interface,
                                "static_mac": ep.mac} for net, ep in attachments},
        "network_info": {netavark_name(net): network_info(net) for net, _ in attachments},
    }


class NetavarkDriver:
    def __init__(self, config_dir: Path) -> None:
        self.config_dir = Path(config_dir)

    def _run(self, action: str, netns: Path, options: dict) -> dict:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        cmd = [find_binary("netavark"), "--config", str(self.config_dir),
               "--aardvark-binary", find_binary("aardvark-dns"), action, str(netns)]
        proc = subprocess.run(cmd, input=json.dumps(options), capture_output=True, text=True,
                              start_new_session=True)
        if proc.returncode != 0:
            out = (proc.stdout or "").strip() or (proc.stderr or "").strip()
            try:
                msg = json.loads(out).get("error", out)
            except ValueError:
                msg = out
            raise Unavailable(f"netavark {action}: {msg}")
        try:
            return json.loads(proc.stdout) if proc.stdout.strip() else {}
        except ValueError:
            return {}

    def setup(self, netns: Path, container_id: str, container_name: str,
              attachments: list[tuple[Network, Endpoint]], ports: list[PortMapping]) -> dict:
        """Configure ``netns``; returns netavark's status (interfaces, DNS server addresses)."""
        return self._run("setup", netns, options_json(container_id, container_name, attachments, ports))

    def teardown(self, netns: Path, container_id: str, container_name: str,
                 attachments: list[tuple[Network, Endpoint]], ports: list[PortMapping]) -> None:
        self._run("teardown", netns, options_json(container_id, container_name, attachments, ports))
