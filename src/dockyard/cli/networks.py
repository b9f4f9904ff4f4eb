"""``dockyard network create/ls/inspect/rm/prune/connect/disconnect`` with Docker's flags and output.
Errors the engine reports print as ``Error response from daemon: ...`` and exit 1, as the docker
CLI's network commands do."""

from __future__ import annotations

import sys
from typing import Any

import click

from dockyard.cli.main import CONTEXT_SETTINGS, DockyardGroup, cli
from dockyard.cli.render import daemon_call, key_values, confirm, for_each, print_inspected, print_table
from dockyard.engine.options import Filters
from dockyard.errors import DockyardError, NotFound


@cli.group("network", cls=DockyardGroup, context_settings=CONTEXT_SETTINGS)
def network() -> None:
    """Manage networks"""


@network.command("create")
@click.argument("name")
@click.option("-d", "--driver", default="bridge", help="Driver to manage the Network")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format that represents a network segment")
@click.option("--gateway", multiple=True, help="IPv4 or IPv6 Gateway for the master subnet")
@click.option("--ip-range", multiple=True, help="Allocate container ip from a sub-range")
@click.option("--internal", is_flag=True, help="Restrict external access to the network")
@click.option("--label", "labels", multiple=True, help="Set metadata on a network")
@click.option("-o", "--opt", "opts", multiple=True, help="Set driver specific options")
@click.option("--attachable", is_flag=True, help="Enable manual container attachment")
@click.option("--ipv6", is_flag=True, help="Enable IPv6 networking")
@click.pass_obj
def network_create(engine, name, driver, subnet, gateway, ip_range, internal, labels, opts, attachable, ipv6) -> None:
    """Create a network"""
    from dockyard.engine.networks import NetworkCreateOptions

    if len(subnet) > 1 or len(gateway) > 1 or len(ip_range) > 1:
        raise click.UsageError("one --subnet, --gateway and --ip-range per network is supported")
    if ipv6:
        click.echo("Error response from daemon: IPv6 networks are not supported by dockyard's bridge driver",
                   err=True)
        sys.exit(1)
    o = NetworkCreateOptions(name=name, driver=driver, subnet=subnet[0] if subnet else "",
                             gateway=gateway[0] if gateway else "", ip_range=ip_range[0] if ip_range else "",
                             internal=internal, labels=key_values(labels), options=key_values(opts))
    net = daemon_call(lambda: engine.networks.create(o))
    click.echo(net.id)


class NetworkRow:
    """A row of ``network ls`` for ``--format``: Docker's fields and the ``.Label "key"`` method."""

    def __init__(self, net, no_trunc: bool) -> None:
        from dockyard.cli.images import go_time

        self._net = net
        self.ID = net.id if no_trunc else net.id[:12]
        self.Name = net.name
        self.Driver = net.driver
        self.Scope = "local"
        self.IPv6 = "false"
        self.Internal = "true" if net.internal else "false"
        self.Labels = ",".join(f"{k}={v}" for k, v in sorted(net.labels.items()))
        self.CreatedAt = go_time(net.created)

    def Label(self, name: str) -> str:  # Go's method name, as templates call it
        return self._net.labels.get(name, "")

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
                   "Internal": "INTERNAL", "Labels": "LABELS", "Label": "LABEL", "CreatedAt": "CREATED AT"}


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
@click.option("-f", "--filter", "filters", multiple=True, help='Provide filter values (e.g. "driver=bridge")')
@click.option("--format", "fmt", default=None, help="Format output using a custom template")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.pass_obj
def network_ls(engine, quiet, filters, fmt, no_trunc) -> None:
    """List networks"""
    f = Filters.parse(filters)
    nets = sorted(daemon_call(lambda: engine.networks.list(f)), key=lambda n: n.name)
    if quiet:
        for n in nets:
            click.echo(n.id if no_trunc else n.id[:12])
        return
    rows: list[Any] = [NetworkRow(n, no_trunc) for n in nets]
    print_table(fmt, rows, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", NETWORK_HEADERS)


network.add_command(network_ls, "list")


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", default=None, help="Format output using a custom template")
@click.option("-v", "--verbose", is_flag=True, help="Verbose output for diagnostics")
@click.pass_obj
def network_inspect(engine, names, fmt, verbose) -> None:
    """Display detailed information on one or more networks"""
    found, errors = [], []
    for n in names:
        try:
            found.append(engine.networks.inspect(engine.networks.get(n)))
        except NotFound:
            errors.append(f"Error: No such network: {n}")
        except DockyardError as exc:
            errors.append(f"Error: {exc}")
    print_inspected(fmt, found, [e.removeprefix("Error: ") for e in errors])


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Do not error if the network does not exist")
@click.pass_obj
def network_rm(engine, names, force) -> None:
    """Remove one or more networks"""
    def remove(name: str) -> None:
        try:
            engine.networks.remove(name)
        except NotFound:
            if not force:
                raise

    if not for_each(names, remove):
        sys.exit(1)


network.add_command(network_rm, "remove")


@network.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=<timestamp>")')
@click.pass_obj
def network_prune(engine, force, filters) -> None:
    """Remove all unused networks"""
    f = Filters.parse(filters)
    if not force and not confirm("WARNING! This will remove all custom networks not used by at least one "
                                 "container."):
        return
    removed = daemon_call(lambda: engine.networks.prune(f))
    if removed:
        click.echo("Deleted Networks:")
        for name in removed:
            click.echo(name)
        click.echo("")


@network.command("connect")
@click.argument("network_name")
@click.argument("container")
@click.option("--alias", "aliases", multiple=True, help="Add network-scoped alias for the container")
@click.option("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
@click.pass_obj
def network_connect(engine, network_name, container, aliases, ip) -> None:
    """Connect a container to a network"""
    daemon_call(lambda: engine.networks.connect(network_name, container, aliases=list(aliases), ip=ip))


@network.command("disconnect")
@click.argument("network_name")
@click.argument("container")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect from a network")
@click.pass_obj
def network_disconnect(engine, network_name, container, force) -> None:
    """Disconnect a container from a network"""
    daemon_call(lambda: engine.networks.disconnect(network_name, container, force=force))
