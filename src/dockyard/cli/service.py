"""``dockyard system service`` (the Docker Engine API server) and ``dockyard events``."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click

from dockyard.cli.container_io import system_group
from dockyard.cli.main import cli
from dockyard.engine.options import Filters
from dockyard.errors import InvalidArgument


def _docker_cert(name: str) -> str:
    return str(Path.home() / ".docker" / name)


@system_group.command("service")
@click.option("-H", "--host", "hosts", multiple=True, metavar="ADDR",
              help="Listen on unix:///path or tcp://host:port (repeatable; default "
                   "unix:///run/dockyard/dockyard.sock)")
@click.option("--tls", is_flag=True, help="Use TLS; implied by --tlsverify")
@click.option("--tlsverify", is_flag=True, help="Use TLS and require client certificates signed by --tlscacert")
@click.option("--tlscacert", default=None, metavar="FILE", help="Trust certs signed only by this CA "
                                                                 "(default ~/.docker/ca.pem)")
@click.option("--tlscert", default=None, metavar="FILE", help="Path to TLS certificate file (default ~/.docker/cert.pem)")
@click.option("--tlskey", default=None, metavar="FILE", help="Path to TLS key file (default ~/.docker/key.pem)")
@click.pass_obj
def system_service(engine, hosts, tls, tlsverify, tlscacert, tlscert, tlskey) -> None:
    """Serve the Docker Engine API (for the docker CLI, docker-py, docker-compose)

    Runs in the foreground until SIGTERM or SIGINT; containers keep running when it stops."""
    import logging

    from dockyard.api.server import DEFAULT_HOST, TLSOptions, parse_host, run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts = None
    if tls or tlsverify or tlscert or tlskey:
        opts = TLSOptions(cert=Path(tlscert or _docker_cert("cert.pem")), key=Path(tlskey or _docker_cert("key.pem")),
                          cacert=Path(tlscacert or _docker_cert("ca.pem")) if tlsverify else None,
                          verify=tlsverify)
    targets = list(hosts) or [DEFAULT_HOST]
    for h in targets:
        parse_host(h)  # bad addresses fail before anything listens

    def ready(addresses: list[str]) -> None:
        for a in addresses:
            click.echo(f"API listen on {a}", err=True)

    run(engine, targets, opts, ready)


# -- events ------------------------------------------------------------------------------------
def _local_nano(ns: int) -> str:
    """jsonmessage.RFC3339NanoFixed in local time: 2024-01-02T15:04:05.000000000+01:00."""
    dt = datetime.fromtimestamp(ns // 1_000_000_000).astimezone()
    offset = dt.strftime("%z")
    offset = "Z" if offset in ("+0000", "") and dt.utcoffset().total_seconds() == 0 else offset[:3] + ":" + offset[3:]
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}" + offset


def event_line(view: dict) -> str:
    """docker events' default line: time type action id (attr=value, ...)."""
    attrs = view["Actor"]["Attributes"]
    text = f"{_local_nano(view['timeNano'])} {view['Type']} {view['Action']} {view['Actor']['ID']}"
    if attrs:
        text += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return text


@cli.command("events")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided")
@click.option("--format", "fmt", default=None, help="Format the output using the given Go template")
@click.option("--since", default=None, help="Show all events created since timestamp")
@click.option("--until", default=None, help="Stream events until this timestamp")
@click.pass_obj
def events_cmd(engine, filters, fmt, since, until) -> None:
    """Get real time events from dockyard (written by every dockyard process)"""
    from dockyard.engine.events import check_filters, event_view, parse_time_nano

    f = Filters.parse(filters)
    check_filters(f)
    now = time.time()
    since_ns, until_ns = parse_time_nano(since, now), parse_time_nano(until, now)
    if since_ns is not None and until_ns is not None and since_ns > until_ns:
        raise InvalidArgument("`since` time is after `until` time")
    if fmt == "json":
        fmt = "{{json .}}"
    render = None
    if fmt:
        from dockyard.cli.format import render as go_render

        render = go_render
    for ev in engine.events.follow(since_ns, until_ns, f):
        view = event_view(ev)
        click.echo(render(fmt, view) if render else event_line(view))
        sys.stdout.flush()
