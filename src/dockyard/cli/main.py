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
    "image": ("images", "remote", "build"),
    **{c: ("build",) for c in ("build", "builder")},
    **{c: ("remote",) for c in ("login", "logout", "pull", "push", "manifest")},
    **{c: ("system",) for c in ("version", "info")},
    **{c: ("containers",) for c in ("create", "run", "start", "stop", "kill", "restart", "rm", "wait",
                                    "rename", "pause", "unpause", "ps")},
    **{c: ("container_io",) for c in ("attach", "logs", "exec", "inspect", "top", "stats", "cp", "port",
                                      "update", "commit", "export")},
    "system": ("container_io", "volumes", "service"),
    "events": ("service",),
    "container": ("containers", "container_io"),
    "volume": ("volumes",),
    "network": ("networks",),
    "registry": ("registry",),
    "compose": ("compose",),
    "kube": ("kube",),
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
    try:
        cli.main(prog_name="dockyard")
    except SystemExit as exc:
        _exit_now(exc.code)
        raise
    _exit_now(0)


def _exit_now(code: object) -> None:
    """End the process as soon as the command is done, keeping what matters of Python's shutdown.

    Python's own shutdown tears down every module and closes the SQLite connections, and a closing
    connection checkpoints the WAL into the database with fsyncs: together 50-70 ms of a
    ``run --rm`` that takes a few hundred.  None of it is needed: every change a command makes is
    committed before it returns (dockyard is built to survive being killed at any moment; SQLite
    reads an unmerged WAL like a merged one and merges it by itself as it grows).  Kept: the
    atexit callbacks and flushing stdout and stderr.  Not used (normal shutdown instead) while a
    non-daemon thread still runs, for a non-integer code, or when flushing fails.
    """
    import os
    import threading

    if code is None:
        code = 0
    if not isinstance(code, int) or not -(2**31) <= code < 2**31:
        return
    main_thread = threading.main_thread()
    if threading.current_thread() is not main_thread or any(
            t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)

