"""``dockyard registry user add|rm|ls``: manage the registry's htpasswd file.

Which file: ``--htpasswd FILE``; else the ``auth.htpasswd`` of ``--config FILE``; else
``<registry root>/htpasswd``, the root being ``--root``, the config's storage root, or the
registry's default root.  The file is created with mode 0600.  Running registries pick changes up
on their next request.

Passwords come from ``--password-stdin`` (as ``docker login`` reads them), ``-p`` (warned about:
it lands in shell history and ``ps``), or an interactive prompt; they are never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from dockyard.cli.registry import registry
from dockyard.errors import InvalidArgument
from dockyard.registry.auth.htpasswd import HtpasswdFile


def _param(ctx: click.Context | None, *names: str) -> Any:
    """The first non-empty value of any of ``names`` given to this ``user`` group or to its
    ``registry`` parent.  The top-level ``dockyard --root`` is the engine's data root, not the
    registry's, so the walk never looks above those two groups."""
    while ctx is not None:
        if ctx.command.name in ("user", "registry"):
            for n in names:
                value = ctx.params.get(n)
                if value:
                    return value
        ctx = ctx.parent
    return None


def htpasswd_path(ctx: click.Context) -> Path:
    """Resolve the htpasswd file as the module docstring describes — the same file the registry
    uses, since ``RegistryConfig.auth_dict`` defaults it to ``<storage root>/htpasswd`` too."""
    explicit = _param(ctx, "htpasswd")
    if explicit:
        return Path(explicit)
    from dockyard.registry.config import DEFAULT_ROOT, load_config

    root = _param(ctx, "registry_root", "root")
    config_path = _param(ctx, "config", "config_file")
    if config_path:
        cfg = load_config(config_path)
        if cfg.auth.htpasswd:
            return Path(cfg.auth.htpasswd)
        if not root and cfg.storage.driver == "filesystem":
            root = cfg.storage.root
    return Path(root or DEFAULT_ROOT) / "htpasswd"


def _read_password(password: str | None, password_stdin: bool) -> str:
    if password is not None and password_stdin:
        raise click.UsageError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        value = sys.stdin.read().rstrip("\r\n")
    elif password is not None:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
        value = password
    elif sys.stdin.isatty():
        value = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise click.UsageError("no password given: use --password-stdin (or -p)")
    if not value:
        raise InvalidArgument("empty password")
    return value


@registry.group("user")
@click.option("--htpasswd", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="htpasswd file (default: the config's auth.htpasswd, or <registry root>/htpasswd)")
@click.option("--config", "config", type=click.Path(dir_okay=False, exists=True), default=None,
              metavar="FILE", help="Registry config file to take the htpasswd path from")
@click.option("--root", "registry_root", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Registry root directory")
def user(htpasswd: str | None, config: str | None, registry_root: str | None) -> None:
    """Manage the registry's users (an htpasswd file with bcrypt hashes)."""


@user.command("add")
@click.argument("name")
@click.option("-p", "--password", default=None, help="Password (insecure: prefer --password-stdin)")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin")
@click.pass_context
def user_add(ctx: click.Context, name: str, password: str | None, password_stdin: bool) -> None:
    """Add a user, or change the password of an existing one."""
    secret = _read_password(password, password_stdin)
    users = HtpasswdFile(htpasswd_path(ctx))
    new = users.set_password(name, secret)
    click.echo(f"User {name} {'added' if new else 'updated'}")


@user.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def user_rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove one or more users."""
    users = HtpasswdFile(htpasswd_path(ctx))
    for name in names:
        users.remove(name)
        click.echo(name)


@user.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display user names (no header)")
@click.pass_context
def user_ls(ctx: click.Context, quiet: bool) -> None:
    """List users."""
    names = HtpasswdFile(htpasswd_path(ctx)).users()
    if not quiet:
        click.echo("USER")
    for n in names:
        click.echo(n)
