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


class DockyardGroup(click.Group):
    """A group that lists commands in the order they were added and turns errors into Docker's form."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

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


# Command modules add themselves to ``cli`` when imported.
from dockyard.cli import images, system, containers, container_io  # noqa: E402,F401,I001 (order: later ones extend earlier ones)
