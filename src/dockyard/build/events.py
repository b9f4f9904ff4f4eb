"""What a build reports while it runs: typed events, rendered by the CLI (rich live view or plain
lines, like BuildKit's progress) and encoded by the Engine API as Docker's JSON build stream.

A build is an iterator of these events; it ends with :class:`BuildFinished` or raises.  ``step`` is
BuildKit's vertex number (``#5`` in ``--progress=plain``): every event of one step carries it, so a
renderer can group lines without keeping state of its own.

Errors raised by a build keep their kind (NotFound, InvalidArgument, ...); the executor annotates
them with :func:`annotate` so a face can show where the build failed (BuildKit prints the step, the
tail of its output and the Dockerfile lines around the instruction before the error line).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StepStarted:
    """A step begins: ``[stage index/total] text`` (stage is "" for a single unnamed stage,
    "internal" for BuildKit's ``[internal] load ...`` steps)."""

    step: int
    stage: str
    index: int
    total: int
    text: str

    @property
    def title(self) -> str:
        if self.stage == "internal":
            return f"[internal] {self.text}"
        if not self.index:  # a build-wide step ("exporting to image")
            return self.text
        prefix = f"{self.stage} " if self.stage else ""
        return f"[{prefix}{self.index}/{self.total}] {self.text}"


@dataclass
class StepOutput:
    """One line of a step's output (a RUN's stdout/stderr, or a note such as "transferring
    context: 2.1kB"), without its newline; ``elapsed`` is seconds since the step started."""

    step: int
    line: str
    elapsed: float = 0.0
    stream: str = "stdout"


@dataclass
class StepDone:
    """A step ended: ``cached`` when the build cache answered it (nothing ran)."""

    step: int
    cached: bool
    seconds: float
    image_id: str = ""


@dataclass
class BuildWarning:
    """Something the user should know that does not stop the build (unused build args, ...)."""

    message: str


@dataclass
class BuildFinished:
    """The image is built and tagged."""

    image_id: str
    tags: list[str] = field(default_factory=list)


BuildEvent = StepStarted | StepOutput | StepDone | BuildWarning | BuildFinished


def annotate(exc: BaseException, *, step: str = "", line: int = 0, end_line: int = 0,
             output_tail: list[str] | None = None, dockerfile: str = "", source: str = "") -> BaseException:
    """Attach where a build failed to the error (first annotation wins: the innermost knows best).

    ``step`` is the step title (``[2/3] RUN false``), ``line``/``end_line`` the instruction's lines
    in the Dockerfile ``dockerfile`` (named as the user named it) whose text is ``source``."""
    if not getattr(exc, "build_step", ""):
        exc.build_step = step  # type: ignore[attr-defined]
    if not getattr(exc, "build_line", 0) and line:
        exc.build_line = line  # type: ignore[attr-defined]
        exc.build_end_line = end_line or line  # type: ignore[attr-defined]
    if output_tail is not None and not getattr(exc, "build_output", None):
        exc.build_output = list(output_tail)  # type: ignore[attr-defined]
    if dockerfile and not getattr(exc, "build_dockerfile", ""):
        exc.build_dockerfile = dockerfile  # type: ignore[attr-defined]
        exc.build_source = source  # type: ignore[attr-defined]
    return exc
