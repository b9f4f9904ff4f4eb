"""Networks, endpoints and port reservations in the metadata DB (tables ``networks``, ``endpoints``,
``port_reservations``; see metadata/db.py).

Allocation is race-free across dockyard processes: an address or a host port is claimed inside one
write transaction (BEGIN IMMEDIATE), and the UNIQUE/PRIMARY KEY constraints are the last word.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from dockyard.errors import NotFound
from dockyard.metadata.db import MetadataDB
from dockyard.networks.model import Endpoint, Network, PortMapping


def _network(row: sqlite3.Row) -> Network:
    d = dict(row)
    d["labels"] = json.loads(d["labels"])
    d["options"] = json.loads(d["options"])
    d["internal"] = bool(d["internal"])
    d["dns_enabled"] = bool(d["dns_enabled"])
    return Network(**d)


def _endpoint(row: sqlite3.Row) -> Endpoint:
    d = dict(row)
    d["aliases"] = json.loads(d["aliases"])
    return Endpoint(**d)


class NetworkStore:
    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    # -- networks ------------------------------------------------------------------------------
    def add(self, net: Network) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO networks (id, name, driver, created, subnet, gateway, ip_range, internal, labels, "
                "options, interface, dns_enabled) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (net.id, net.name, net.driver, net.created, net.subnet, net.gateway, net.ip_range,
                 int(net.internal), json.dumps(net.labels), json.dumps(net.options), net.interface,
                 int(net.dns_enabled)))

    def all(self) -> list[Network]:
        return [_network(r) for r in self.db.read().execute("SELECT * FROM networks ORDER BY created")]

    def find(self, name_or_id: str) -> Network | None:
        """By exact name, full ID, or a unique ID prefix (Docker's lookup order)."""
        conn = self.db.read()
        row = conn.execute("SELECT * FROM networks WHERE name=? OR id=?", (name_or_id, name_or_id)).fetchone()
        if row is None and name_or_id:
            rows = conn.execute("SELECT * FROM networks WHERE id >= ? AND id < ?",
                                (name_or_id, name_or_id + "\uffff")).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return _network(row) if row else None

    def get(self, name_or_id: str) -> Network:
        net = self.find(name_or_id)
        if net is None:
            raise NotFound(f"network {name_or_id} not found")
        return net

    def by_id(self, network_id: str) -> Network:
        row = self.db.read().execute("SELECT * FROM networks WHERE id=?", (network_id,)).fetchone()
        if row is None:
            raise NotFound(f"network {network_id} not found")
        return _network(row)

    def delete(self, network_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM networks WHERE id=?", (network_id,))

    # -- endpoints -----------------------------------------------------------------------------
    def endpoints(self, *, container_id: str | None = None, network_id: str | None = None) -> list[Endpoint]:
        q, args = "SELECT * FROM endpoints", []
        cond = []
        if container_id is not None:
            cond.append("container_id=?")
            args.append(container_id)
        if network_id is not None:
            cond.append("network_id=?")
            args.append(network_id)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        q += " ORDER BY interface"
        return [_endpoint(r) for r in self.db.read().execute(q, args)]

    def add_endpoint(self, make: Callable[[set[str], set[str]], Endpoint]) -> Endpoint:
        """Claim an address: ``make(used_ips, used_interfaces)`` builds the endpoint inside the write
        transaction, so no other process can hand out the same address meanwhile."""
        with self.db.write() as conn:
            probe = make(set(), set())  # learn the network and container
            used = {r["ip"] for r in conn.execute("SELECT ip FROM endpoints WHERE network_id=?", (probe.network_id,))}
            ifaces = {r["interface"] for r in conn.execute("SELECT interface FROM endpoints WHERE container_id=?",
                                                            (probe.container_id,))}
            ep = make(used, ifaces)
            conn.execute(
                "INSERT INTO endpoints (container_id, network_id, endpoint_id, ip, mac, interface, aliases) "
                "VALUES (?,?,?,?,?,?,?)",
                (ep.container_id, ep.network_id, ep.endpoint_id, ep.ip, ep.mac, ep.interface, json.dumps(ep.aliases)))
        return ep

    def remove_endpoint(self, container_id: str, network_id: str | None = None) -> None:
        with self.db.write() as conn:
            if network_id is None:
                conn.execute("DELETE FROM endpoints WHERE container_id=?", (container_id,))
            else:
                conn.execute("DELETE FROM endpoints WHERE container_id=? AND network_id=?", (container_id, network_id))

    # -- published ports -----------------------------------------------------------------------
    def reservations(self, container_id: str | None = None) -> list[tuple[str, PortMapping]]:
        q, args = "SELECT * FROM port_reservations", ()
        if container_id is not None:
            q, args = q + " WHERE container_id=?", (container_id,)
        return [(r["container_id"], PortMapping(r["host_ip"], r["host_port"], r["container_port"], r["protocol"]))
                for r in self.db.read().execute(q + " ORDER BY container_port, protocol, host_ip", args)]

    def reserve(self, container_id: str, choose: Callable[[list[PortMapping]], list[PortMapping]]) -> list[PortMapping]:
        """``choose(taken)`` picks the mappings given every port other containers hold; they are
        stored in the same transaction."""
        with self.db.write() as conn:
            taken = [PortMapping(r["host_ip"], r["host_port"], r["container_port"], r["protocol"])
                     for r in conn.execute("SELECT * FROM port_reservations WHERE container_id != ?", (container_id,))]
            conn.execute("DELETE FROM port_reservations WHERE container_id=?", (container_id,))
            chosen = choose(taken)
            for m in chosen:
                conn.execute("INSERT INTO port_reservations VALUES (?,?,?,?,?)",
                             (m.host_ip, m.host_port, m.protocol, container_id, m.container_port))
        return chosen

    def release_ports(self, container_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM port_reservations WHERE container_id=?", (container_id,))
