"""Registry commands: login, logout, pull, push, manifest inspect (and ``image pull``/``image push``).

Pull and push progress is a stream of events from the engine; on a terminal it is a rich live view
(one line per layer with bytes, total and speed), otherwise plain lines as ``docker pull | cat``
prints them: status changes only, one "Downloading"/"Pushing" line per layer."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import click

from dockyard.cli.main import CONTEXT_SETTINGS, cli
from dockyard.cli.units import human_size
from dockyard.engine.remote import PullOptions, PushOptions
from dockyard.errors import InvalidArgument, Unauthenticated
from dockyard.oci.reference import parse_normalized
from dockyard.remotes.pull import Progress

_BYTES_STATUSES = ("Downloading", "Pushing")


def render_stream(events: Iterator[Progress], quiet: bool) -> None:
    if quiet:
        for _ in events:
            pass
        return
    if sys.stdout.isatty():
        _render_live(events)
    else:
        _render_plain(events)


def _render_plain(events: Iterator[Progress]) -> None:
    last: dict[str, str] = {}
    for e in events:
        if e.id and last.get(e.id) == e.status:
            continue                     # repeated byte counts: one line per status change
        if e.id:
            last[e.id] = e.status
        click.echo(f"{e.id}: {e.status}" if e.id else e.status)


def _render_live(events: Iterator[Progress]) -> None:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    console = Console()
    lines: dict[str, str] = {}
    started: dict[str, float] = {}

    def view() -> Group:
        return Group(*(Text(f"{k}: {v}") for k, v in lines.items()))

    with Live(view(), console=console, refresh_per_second=8, transient=False) as live:
        for e in events:
            if not e.id:
                live.console.print(e.status, highlight=False, soft_wrap=True)
                continue
            text = e.status
            if e.status in _BYTES_STATUSES and e.total:
                t0 = started.setdefault(e.id, time.monotonic())
                speed = e.current / max(time.monotonic() - t0, 1e-3)
                width = 30
                done = int(width * e.current / e.total)
                bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + " " * (width - done)
                text = (f"{e.status} [{bar}] {human_size(e.current)}/{human_size(e.total)} "
                        f"{human_size(speed)}/s")
            lines[e.id] = text
            live.update(view())


def _tls_option(fn):
    # podman's spelling: `--tls-verify=false` (or `--tls-verify false`); a bare `--tls-verify` means true.
    return click.option("--tls-verify", "tls_verify", type=click.BOOL, default=True, is_flag=False,
                        flag_value=True,
                        help="Require HTTPS and verify certificates (--tls-verify=false allows plain HTTP)")(fn)


def _pull(name: str, all_tags: bool, platform: str | None, quiet: bool, tls_verify: bool) -> None:
    engine = click.get_current_context().obj
    ref = parse_normalized(name)
    if ref.is_name_only and not all_tags and not quiet:
        click.echo("Using default tag: latest")
    events = engine.remote.pull(PullOptions(name, all_tags, platform, tls_verify))
    render_stream(events, quiet)
    click.echo(ref.familiar_string() if all_tags else str(ref.with_default_tag()))


def _push(name: str, all_tags: bool, quiet: bool, tls_verify: bool) -> None:
    engine = click.get_current_context().obj
    ref = parse_normalized(name)
    if ref.digest:
        raise InvalidArgument("cannot push a digest reference")
    if not quiet:
        if ref.is_name_only and not all_tags:
            click.echo("Using default tag: latest")
        click.echo(f"The push refers to repository [{ref.name}]")
    events = engine.remote.push(PushOptions(name, all_tags, tls_verify))
    render_stream(events, quiet)
    if quiet:
        click.echo(str(ref.with_default_tag()))


def _pull_command(group: click.Group, name: str) -> None:
    @group.command(name, context_settings=CONTEXT_SETTINGS)
    @click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository")
    @click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Set platform if server is multi-platform capable")
    @click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
    @_tls_option
    @click.argument("name")
    def pull(name: str, all_tags: bool, platform: str | None, quiet: bool, tls_verify: bool) -> None:
        """Download an image from a registry"""
        _pull(name, all_tags, platform, quiet, tls_verify)


def _push_command(group: click.Group, name: str) -> None:
    @group.command(name, context_settings=CONTEXT_SETTINGS)
    @click.option("-a", "--all-tags", is_flag=True, help="Push all tags of an image to the repository")
    @click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
    @_tls_option
    @click.argument("name")
    def push(name: str, all_tags: bool, quiet: bool, tls_verify: bool) -> None:
        """Upload an image to a registry"""
        _push(name, all_tags, quiet, tls_verify)


_pull_command(cli, "pull")
_push_command(cli, "push")
_image_group = cli.get_command(click.Context(cli), "image")
if isinstance(_image_group, click.Group):
    _pull_command(_image_group, "pull")
    _push_command(_image_group, "push")


@cli.command("login", context_settings=CONTEXT_SETTINGS)
@click.option("-u", "--username", help="Username")
@click.option("-p", "--password", help="Password")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin")
@_tls_option
@click.argument("server", required=False)
@click.pass_obj
def login(engine, username: str | None, password: str | None, password_stdin: bool, tls_verify: bool,
          server: str | None) -> None:
    """Log in to a registry"""
    if password_stdin:
        if password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not username:
            raise InvalidArgument("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    if not username:
        username = click.prompt("Username")
    if not password:
        password = click.prompt("Password", hide_input=True)
    try:
        click.echo(engine.remote.login(server, username or "", password or "", tls_verify))
    except Unauthenticated as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@cli.command("logout", context_settings=CONTEXT_SETTINGS)
@click.argument("server", required=False)
@click.pass_obj
def logout(engine, server: str | None) -> None:
    """Log out from a registry"""
    click.echo(engine.remote.logout(server))


@cli.group("manifest", context_settings=CONTEXT_SETTINGS)
def manifest() -> None:
    """Manage Docker image manifests and manifest lists"""


@manifest.command("inspect", context_settings=CONTEXT_SETTINGS)
@_tls_option
@click.argument("name")
@click.pass_obj
def manifest_inspect(engine, tls_verify: bool, name: str) -> None:
    """Display an image manifest, or manifest list"""
    import json

    data = engine.remote.manifest_inspect(name, tls_verify)
    click.echo(json.dumps(json.loads(data), indent="\t"))
