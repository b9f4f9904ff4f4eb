"""The ``dockyard`` command: global flags, error handling, and the command groups.

Every command is flags -> Options -> one engine call -> render.  Errors from the engine are
DockyardError kinds; they print as one line "Error: <Docker's message>" on stderr and exit with
the kind's exit code (125 for dockyard's own errors, as Docker's CLI does for its own)."""

from __future__ import annotations

import sys

import click

from dockyard import __version__
from dockyard.errors import DockyardError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


# Which module defines each top-level command: a command imports only what it needs, so
# `dockyard run` does not pay for the image or template machinery of other commands.
LAZY_COMMANDS: dict[str, tuple[str, ...]] = {
    **{c: ("images",) for c in ("images", "tag", "rmi", "history", "import", "save", "load")},
    "image": ("images", "remote"),
    **{c: ("remote",) for c in ("login", "logout", "pull", "push", "manifest")},
    **{c: ("system",) for c in ("version", "info")},
    **{c: ("containers",) for c in ("create", "run", "start", "stop", "kill", "restart", "rm", "wait",
                                    "rename", "pause", "unpause", "ps")},
    **{c: ("container_io",) for c in ("attach", "logs", "exec", "inspect", "top", "stats", "cp", "port",
                                      "update", "commit", "export")},
    "system": ("container_io", "volumes"),
    "container": ("containers", "container_io"),
    "volume": ("volumes",),
    "registry": ("registry",),
}


def _load(modules: tuple[str, ...]) -> None:
    import importlib

    for m in modules:
        importlib.import_module(f"dockyard.cli.{m}")


class DockyardGroup(click.Group):
    """A group that lists commands in the order they were added and turns errors into Docker's form."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        if self is cli:
            _load(tuple(dict.fromkeys(m for ms in LAZY_COMMANDS.values() for m in ms)))
        return list(self.commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if self is cli and name in LAZY_COMMANDS:
            _load(LAZY_COMMANDS[name])
        return super().get_command(ctx, name)

    def main(self, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("standalone_mode", True)
        try:
            return super().main(*args, standalone_mode=False, **{k: v for k, v in kwargs.items()
                                                                 if k != "standalone_mode"})
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.UsageError as exc:
            cmd = exc.ctx.command_path if exc.ctx else "dockyard"
            click.echo(f"{cmd}: {exc.format_message()}\nSee '{cmd} --help'.", err=True)
            sys.exit(125)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(125)
        except DockyardError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            sys.exit(0)
        except KeyboardInterrupt:
            sys.exit(130)


@click.group(cls=DockyardGroup, context_settings=CONTEXT_SETTINGS)
@click.option("--root", envvar="DOCKYARD_ROOT", default=None, metavar="DIR",
              help="Data root (default /var/lib/dockyard; env DOCKYARD_ROOT)")
@click.option("-D", "--debug", is_flag=True, help="Enable debug mode")
@click.option("-l", "--log-level", default="info", type=click.Choice(["debug", "info", "warn", "error", "fatal"]),
              help='Set the logging level')
@click.version_option(__version__, "-v", "--version", message="dockyard version %(version)s")
@click.pass_context
def cli(ctx: click.Context, root: str | None, debug: bool, log_level: str) -> None:
    """A self-sufficient runtime for containers — Docker-compatible, daemonless."""
    from dockyard.engine import Engine

    ctx.obj = Engine(root)


def main() -> None:
    cli.main(prog_name="dockyard")

