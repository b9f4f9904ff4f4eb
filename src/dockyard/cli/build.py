"""``dockyard build`` (also ``image build``, ``builder build``) and ``dockyard builder prune``.

Progress is rendered as BuildKit renders it: ``--progress=plain`` (the default when stderr is not
a terminal) prints numbered lines (``#5 [2/4] RUN ...``, ``#5 0.532 output``, ``#5 DONE 1.2s``);
``auto``/``tty`` on a terminal is a live view of the steps with their durations and the tail of
the running step's output; ``-q`` (or ``--progress=quiet``) prints only the image ID on stdout.
Progress goes to stderr, as docker's does.  A failure prints the step, the tail of its output and
the Dockerfile lines of the instruction, then ``ERROR: failed to solve: ...``; the exit code is 1.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from dockyard.cli.main import CONTEXT_SETTINGS, DockyardGroup, cli
from dockyard.errors import DockyardError


def _build_args(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        k, eq, val = v.partition("=")
        if eq:
            out[k] = val
        elif k in os.environ:
            out[k] = os.environ[k]
    return out


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        k, _, val = v.partition("=")
        out[k] = val
    return out


@cli.command("build", context_settings=CONTEXT_SETTINGS)
@click.argument("path", metavar="PATH | URL | -")
@click.option("-t", "--tag", "tags", multiple=True, help='Name and optionally a tag in the "name:tag" format')
@click.option("-f", "--file", "dockerfile", default="", help='Name of the Dockerfile (default: "PATH/Dockerfile")')
@click.option("--build-arg", "build_args", multiple=True, help="Set build-time variables")
@click.option("--label", "labels", multiple=True, help="Set metadata for an image")
@click.option("--target", default="", help="Set the target build stage to build")
@click.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID on success")
@click.option("--network", default="", help='Set the networking mode for the RUN instructions during build')
@click.option("--iidfile", default="", help="Write the image ID to the file")
@click.option("--add-host", "add_hosts", multiple=True, help="Add a custom host-to-IP mapping (host:ip)")
@click.option("--pull", is_flag=True, help="Always attempt to pull all referenced images")
@click.option("--platform", default="", help="Set target platform for build")
@click.option("--progress", default="auto", type=click.Choice(["auto", "plain", "tty", "quiet"]),
              help='Set type of progress output ("auto", "plain", "tty", "quiet")')
@click.pass_obj
def build_cmd(engine, path, tags, dockerfile, build_args, labels, target, no_cache, quiet, network, iidfile,
              add_hosts, pull, platform, progress) -> None:
    """Build an image from a Dockerfile"""
    from dockyard.engine.build import BuildOptions

    opts = BuildOptions(context=path, dockerfile=dockerfile, tags=list(tags), build_args=_build_args(build_args),
                        labels=_labels(labels), target=target, no_cache=no_cache, quiet=quiet, network=network,
                        iidfile=iidfile, add_hosts=list(add_hosts), pull=pull, platform=platform,
                        stdin=sys.stdin.buffer if "-" in (path, dockerfile) else None)
    if quiet or progress == "quiet":
        renderer: _Renderer = _Renderer()
    elif progress == "tty" or (progress == "auto" and sys.stderr.isatty()):
        renderer = _LiveRenderer()
    else:
        renderer = _PlainRenderer()
    image_id = ""
    started = False

    def interrupted(signum, frame):  # SIGTERM/SIGHUP as Ctrl-C: the step's container is removed
        raise KeyboardInterrupt

    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        with renderer:
            try:
                for event in engine.build.build(opts):
                    started = True
                    renderer.event(event)
                    if type(event).__name__ == "BuildFinished":
                        image_id = event.image_id
            except DockyardError as exc:
                renderer.fail(exc)
                raise
    except DockyardError as exc:
        _report_error(exc, solving=started or str(exc).startswith("failed to read dockerfile"))
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("ERROR: failed to solve: canceled", err=True)
        sys.exit(130)
    if quiet or progress == "quiet":
        click.echo(image_id)


def _report_error(exc: DockyardError, solving: bool) -> None:
    out = []
    step = getattr(exc, "build_step", "")
    tail = getattr(exc, "build_output", None)
    if step:
        out.append("------")
        out.append(f" > {step}:")
        out.extend(tail or [])
        out.append("------")
    line = getattr(exc, "build_line", 0)
    source = getattr(exc, "build_source", "")
    if line and source:
        end = getattr(exc, "build_end_line", line) or line
        lines = source.splitlines()
        out.append(f"{getattr(exc, 'build_dockerfile', 'Dockerfile')}:{line}" + (f"-{end}" if end > line else ""))
        out.append("--------------------")
        for n in range(max(1, line - 2), min(len(lines), end + 1) + 1):
            mark = ">>>" if line <= n <= end else "   "
            out.append(f"{n:>4} | {mark} {lines[n - 1]}".rstrip())
        out.append("--------------------")
    out.append("ERROR: " + ("failed to solve: " if solving else "") + str(exc))
    click.echo("\n".join(out), err=True)


class _Renderer:
    """-q: nothing while building."""

    def __enter__(self) -> _Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def event(self, event) -> None:
        pass

    def fail(self, exc: DockyardError) -> None:
        pass


class _PlainRenderer(_Renderer):
    """BuildKit's --progress=plain."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.open: set[int] = set()

    def fail(self, exc: DockyardError) -> None:
        for step in sorted(self.open):
            sys.stderr.write(f"#{step} ERROR: {exc}\n\n")
        sys.stderr.flush()

    def event(self, event) -> None:
        from dockyard.build import events as ev

        w = sys.stderr
        if isinstance(event, ev.StepStarted):
            self.started[event.step] = time.monotonic()
            self.open.add(event.step)
            w.write(f"#{event.step} {event.title}\n")
        elif isinstance(event, ev.StepOutput):
            if event.step in self.started and event.elapsed:
                w.write(f"#{event.step} {event.elapsed:.3f} {event.line}\n")
            else:
                w.write(f"#{event.step} {event.line}\n")
        elif isinstance(event, ev.StepDone):
            self.open.discard(event.step)
            w.write(f"#{event.step} CACHED\n\n" if event.cached else f"#{event.step} DONE {event.seconds:.1f}s\n\n")
        elif isinstance(event, ev.BuildWarning):
            w.write(f"{event.message}\n")
        w.flush()


class _LiveRenderer(_Renderer):
    """The terminal view: ``[+] Building 3.2s (7/9)`` and one line per step, the running step's
    last output lines under it; what is left on the screen at the end is the whole summary."""

    TAIL = 6

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.t0 = time.monotonic()
        self.steps: dict[int, dict] = {}
        self.warnings: list[str] = []
        self.done = False
        self.live: Any = None

    def __enter__(self) -> _LiveRenderer:
        from rich.live import Live

        self.live = Live(get_renderable=self.render, console=self.console, refresh_per_second=8, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done = True
        if self.live is not None:
            self.live.refresh()
            self.live.__exit__(None, None, None)
        for w in self.warnings:
            self.console.print(w, style="yellow")

    def fail(self, exc: DockyardError) -> None:
        for s in self.steps.values():
            if s["end"] is None:
                s["end"] = time.monotonic()
                s["error"] = True

    def event(self, event) -> None:
        from dockyard.build import events as ev

        if isinstance(event, ev.StepStarted):
            self.steps[event.step] = {"title": event.title, "t0": time.monotonic(), "end": None, "cached": False,
                                      "lines": [], "error": False}
        elif isinstance(event, ev.StepOutput):
            s = self.steps.get(event.step)
            if s is not None:
                s["lines"] = (s["lines"] + [event.line])[-self.TAIL:]
        elif isinstance(event, ev.StepDone):
            s = self.steps.get(event.step)
            if s is not None:
                s["end"] = s["t0"] + event.seconds
                s["cached"] = event.cached
        elif isinstance(event, ev.BuildWarning):
            self.warnings.append(event.message)

    def render(self):
        from rich.text import Text

        now = time.monotonic()
        width = self.console.width
        finished = sum(1 for s in self.steps.values() if s["end"] is not None)
        head = f"[+] Building {now - self.t0:.1f}s ({finished}/{len(self.steps)})"
        text = Text(head + (" FINISHED" if self.done else "") + "\n", style="bold blue" if not self.done else "")
        for s in self.steps.values():
            running = s["end"] is None
            secs = (now if running else s["end"]) - s["t0"]
            name = ("CACHED " if s["cached"] else "ERROR " if s["error"] else "") + s["title"]
            right = f"{secs:.1f}s"
            room = max(10, width - len(right) - 5)
            if len(name) > room:
                name = name[:room - 1] + "…"
            line = f" => {name}".ljust(width - len(right) - 1) + right
            text.append(line + "\n", style="red" if s["error"] else "blue" if running and not self.done else "")
            if (running and not self.done) or s["error"]:
                for out in s["lines"]:
                    text.append((" => => # " + out)[:width] + "\n", style="dim")
        return text


@cli.group("builder", cls=DockyardGroup, context_settings=CONTEXT_SETTINGS)
def builder() -> None:
    """Manage builds"""


builder.add_command(build_cmd, "build")


@builder.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused build cache, not just dangling ones")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=24h")')
@click.option("--keep-storage", default="", hidden=True)
@click.pass_obj
def builder_prune_cmd(engine, all_, force, filters, keep_storage) -> None:
    """Remove build cache"""
    from dockyard.cli.render import confirm
    from dockyard.cli.units import human_size
    from dockyard.engine.build import BuilderPruneOptions
    from dockyard.engine.options import Filters

    f = Filters.parse(list(filters))
    f.check({"until", "unused-for"})
    until = (f.get("until") or f.get("unused-for") or [""])[-1]
    if not force:
        what = "all build cache" if all_ else "all dangling build cache"
        if not confirm(f"WARNING! This will remove {what}."):
            return
    report = engine.build.prune(BuilderPruneOptions(all=all_, until=until))
    if report.deleted:
        click.echo("Deleted build cache objects:")
        for d in report.deleted:
            click.echo(d)
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(report.reclaimed)}")


# ``dockyard image build``: main.LAZY_COMMANDS loads cli.images before this module for ``image``;
# ``dockyard build`` alone does not pay for importing the image commands.
if "dockyard.cli.images" in sys.modules:
    sys.modules["dockyard.cli.images"].image.add_command(build_cmd, "build")
