"""``docker top``: the host's ``ps``, filtered to the container's processes.

Docker does not read /proc itself for ``top``: the daemon runs the host's ``ps`` with the user's
arguments (default ``-ef``) plus ``-q PID,PID,...`` and keeps the rows whose PID column is one of
the container's pids (moby ``daemon/top_unix.go``).  We do the same, so every ps option works and
the columns are exactly what ``ps`` prints:

- the header line gives the titles; the PID column is found by name, and custom arguments that
  drop it fail with Docker's "Couldn't find PID field in ps output";
- a row has as many fields as there are titles: surplus fields (a command line with spaces) are
  joined into the last column;
- thread rows (``-L``/``m`` print ``-`` in the PID column) are kept when they follow a kept process;
- if ps refuses ``-q`` together with the given options (e.g. ``f``), it is run again without it.

The caller supplies the pids (all processes in the container's cgroup); an empty list gives the
titles and no rows.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence

from dockyard.errors import DockyardError, InvalidArgument

DEFAULT_PS_ARGS = "-ef"
_ASSIGNED_TITLE = re.compile(r"\s+(\S*)=\s*(PID\S*)")
_ASCII_SPACE = re.compile(r"[\t\n\f\r ]+")


def top(pids: Sequence[int], ps_args: str | None = None, *, ps: str = "ps") -> tuple[list[str], list[list[str]]]:
    """Run ``ps`` and return ``(titles, rows)`` for the processes in ``pids``.

    Raises InvalidArgument for arguments Docker refuses (renaming another column to PID) or when
    the output has no PID column, and DockyardError (500, "ps: ...") when ps itself fails.
    """
    ps_args = ps_args or DEFAULT_PS_ARGS
    _validate(ps_args)
    args = [a for a in ps_args.split(" ") if a]
    wanted = {int(p) for p in pids}
    proc = _run([ps, *args, "-q" + ",".join(str(p) for p in sorted(wanted))]) if wanted else None
    if proc is None or proc.returncode != 0:
        proc = _run([ps, *args])  # some options (f) cannot be combined with -q
        if proc.returncode != 0:
            first = proc.stderr.decode(errors="replace").split("\n", 1)[0].strip()
            raise DockyardError(f"ps: {first or f'exit status {proc.returncode}'}")
    return parse_ps_output(proc.stdout.decode(errors="replace"), wanted)


def parse_ps_output(output: str, pids: set[int]) -> tuple[list[str], list[list[str]]]:
    """moby's parsePSOutput: titles from the first line, rows whose PID is in ``pids``."""
    lines = output.split("\n")
    titles = _fields(lines[0])
    try:
        pid_index = titles.index("PID")
    except ValueError:
        raise InvalidArgument("Couldn't find PID field in ps output") from None
    rows: list[list[str]] = []
    keep_threads = False
    for line in lines[1:]:
        fields = _fields(line)
        if not fields:
            continue
        if len(fields) <= pid_index:
            raise InvalidArgument(f"Unexpected ps output line {line!r}")
        if fields[pid_index] == "-":
            if keep_threads:
                rows.append(_fit(fields, len(titles)))
            continue
        try:
            pid = int(fields[pid_index])
        except ValueError:
            raise InvalidArgument(f"Unexpected pid '{fields[pid_index]}'") from None
        keep_threads = pid in pids
        if keep_threads:
            rows.append(_fit(fields, len(titles)))
    return titles, rows


def _validate(ps_args: str) -> None:
    """Refuse ``-o comm=PID``-style renames: they would make another column look like the PID."""
    for key, value in _ASSIGNED_TITLE.findall(ps_args):
        if key != "pid":
            raise InvalidArgument(f'specifying "{key}={value}" is not allowed')


def _run(cmd: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    except FileNotFoundError as exc:
        raise DockyardError(f"ps: {cmd[0]} not found on this host") from exc
    except subprocess.TimeoutExpired as exc:
        raise DockyardError("ps: timed out") from exc


def _fields(line: str) -> list[str]:
    """Split on ASCII whitespace only (Docker's fieldsASCII): a command may contain other spaces."""
    return [f for f in _ASCII_SPACE.split(line) if f]


def _fit(fields: list[str], count: int) -> list[str]:
    """Exactly ``count`` columns: overhanging fields are joined into the last (the command)."""
    if len(fields) < count:
        return fields + [""] * (count - len(fields))
    return fields[: count - 1] + [" ".join(fields[count - 1 :])]
