"""What ``dockyard compose`` prints: converge progress (`` Container shop-web-1  Started``), build
and pull output, and the logs of several containers with compose's coloured ``web-1  | `` prefixes."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable

import click

from dockyard.compose import convert as cv
from dockyard.compose.project import Reporter

COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow", "bright_green",
           "bright_magenta", "bright_blue")


class CliReporter(Reporter):
    """compose's plain progress on stderr; build steps as BuildKit's plain lines under the service."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def status(self, kind: str, name: str, text: str) -> None:
        if not self.quiet:
            click.echo(f" {kind} {name}  {text}", err=True)

    def warn(self, text: str) -> None:
        click.echo(f"WARN[0000] {text}", err=True)

    def build_event(self, service: str, event) -> None:
        from dockyard.build import events as ev

        if self.quiet:
            return
        if isinstance(event, ev.StepStarted):
            click.echo(f"#{event.step} [{service}] {event.title}", err=True)
        elif isinstance(event, ev.StepOutput):
            click.echo(f"#{event.step} {event.line}", err=True)
        elif isinstance(event, ev.StepDone):
            click.echo(f"#{event.step} {'CACHED' if event.cached else f'DONE {event.seconds:.1f}s'}", err=True)
        elif isinstance(event, ev.BuildWarning):
            click.echo(event.message, err=True)

    def pull_event(self, service: str, event) -> None:
        if self.quiet:
            return
        text = getattr(event, "status", None) or str(event)
        detail = getattr(event, "id", "") or ""
        click.echo(f" {service} {text} {detail}".rstrip(), err=True)


def log_name(rec) -> str:
    """``web-1`` for a service replica (compose's prefix), the container name for a one-off."""
    labels = rec.spec.labels
    if labels.get(cv.ONEOFF) == "True" or not labels.get(cv.SERVICE):
        return rec.name
    return f"{labels[cv.SERVICE]}-{labels.get(cv.NUMBER, '1')}"


class LogPrinter:
    """Interleaves the log lines of several containers, one whole line at a time."""

    def __init__(self, names: Iterable[str], *, colour: bool, prefix: bool = True, timestamps: bool = False) -> None:
        names = list(names)
        self.width = max((len(n) for n in names), default=0)
        self.colours = {n: COLOURS[i % len(COLOURS)] for i, n in enumerate(sorted(set(names)))}
        self.colour = colour
        self.prefix = prefix
        self.timestamps = timestamps
        self.lock = threading.Lock()
        self.partial: dict[str, bytes] = {}

    def head(self, name: str) -> str:
        if not self.prefix:
            return ""
        text = f"{name.ljust(self.width)}  | "
        return click.style(text, fg=self.colours.get(name, "white")) if self.colour else text

    def frame(self, name: str, frame) -> None:
        data = self.partial.pop(name, b"") + frame.data
        if not data.endswith(b"\n"):
            self.partial[name] = data
            return
        out = sys.stdout
        with self.lock:
            for line in data.decode(errors="replace").splitlines():
                ts = frame.timestamp + " " if self.timestamps else ""
                out.write(f"{self.head(name)}{ts}{line}\n")
            out.flush()

    def line(self, name: str, text: str) -> None:
        with self.lock:
            sys.stdout.write(f"{self.head(name)}{text}\n")
            sys.stdout.flush()

    def flush(self) -> None:
        for name, data in list(self.partial.items()):
            if data:
                self.line(name, data.decode(errors="replace"))
        self.partial.clear()


def print_logs(engine, recs, *, follow: bool, tail: int | None, since: str | None, until: str | None,
               timestamps: bool, colour: bool, prefix: bool = True) -> None:
    """Every container's log, prefixed; with ``follow`` one reader thread per container, returning
    when all of them stopped (or on Ctrl-C, which propagates)."""
    printer = LogPrinter([log_name(r) for r in recs], colour=colour, prefix=prefix, timestamps=timestamps)

    def read(rec) -> None:
        name = log_name(rec)
        for frame in engine.containers.io.logs(rec.id, follow=follow, tail=tail, since=since, until=until):
            printer.frame(name, frame)
        if follow:
            printer.flush()
            current = _find(engine, rec.id)
            if current is None or current.state not in ("running", "paused", "restarting"):
                code = current.exit_code if current is not None else 0
                with printer.lock:
                    sys.stdout.write(f"{name} exited with code {code}\n")
                    sys.stdout.flush()

    if not follow:
        for r in recs:
            read(r)
        printer.flush()
        return
    threads = [threading.Thread(target=read, args=(r,), daemon=True) for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)


def _find(engine, cid: str):
    from dockyard.errors import NotFound

    try:
        return engine.containers.get(cid)
    except NotFound:
        return None
