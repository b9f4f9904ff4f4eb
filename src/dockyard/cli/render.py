"""Output helpers shared by the command modules: tables, Go templates, JSON, confirmations."""

from __future__ import annotations

import json
import sys
from typing import Any

import click



def print_table(fmt: str | None, rows: list[dict[str, Any]], default_table: str, headers: dict[str, str]) -> None:
    """Render rows as the docker CLI does: ``--format`` may be a template, ``table ...``, or ``json``."""
    from dockyard.cli.format import format_rows  # a big module: loaded only when output is rendered

    out = format_rows(fmt, rows, default_table, headers)
    if out:
        click.echo(out, nl=not out.endswith("\n"))


def print_formatted(fmt: str, objs: list[Any]) -> None:
    """``inspect``/``info``/``version`` with ``--format``: one rendering per object."""
    if fmt == "json":
        for o in objs:
            click.echo(json.dumps(o, separators=(",", ":")))
        return
    from dockyard.cli.format import render

    for o in objs:
        click.echo(render(fmt, o, missing_key="error"))


def print_json(objs: list[Any]) -> None:
    """``inspect`` without a format: an indented JSON array, as docker prints it."""
    click.echo(json.dumps(objs, indent=4, ensure_ascii=False))


def print_inspected(fmt: str | None, found: list[Any], errors: list[str]) -> None:
    """What every ``inspect`` prints: the objects found (JSON array or ``--format`` per object), then
    one "Error: ..." line per name that failed; exits 1 if any failed, as docker does."""
    if fmt:
        print_formatted(fmt, found)
    else:
        print_json(found)
    for e in errors:
        click.echo(f"Error: {e}", err=True)
    if errors:
        sys.exit(1)


def for_each(names, action, show=lambda name, result: name) -> bool:
    """docker's multi-argument commands (stop a b, rm a b, volume rm ...): run ``action`` per name,
    print ``show(name, result)`` for each success and docker's "Error response from daemon: ..." line
    for each failure, go on with the next name; returns whether every name succeeded."""
    from dockyard.errors import DockyardError

    ok = True
    for name in names:
        try:
            result = action(name)
        except DockyardError as exc:
            click.echo(f"Error response from daemon: {exc}", err=True)
            ok = False
            continue
        click.echo(show(name, result))
    return ok


def confirm(warning: str) -> bool:
    click.echo(warning)
    click.echo("Are you sure you want to continue? [y/N] ", nl=False)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def daemon_call(call):
    """Run an engine call the way docker's resource commands report failures: "Error response from
    daemon: ..." on stderr and exit 1 (volume, network, ...)."""
    from dockyard.errors import DockyardError

    try:
        return call()
    except DockyardError as exc:
        click.echo(f"Error response from daemon: {exc}", err=True)
        sys.exit(1)


def key_values(items) -> dict[str, str]:
    """``--label k=v`` / ``-o k=v`` values as a dict (a bare ``k`` maps to "")."""
    out: dict[str, str] = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out
