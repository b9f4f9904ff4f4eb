"""``docker build`` and ``docker builder prune`` for every face: the CLI renders the events of
:meth:`BuildEngine.build` (rich live view or plain lines), the Engine API will encode them as
Docker's JSON stream, compose calls the same method for ``build:``.

``build`` is a generator: the context is opened when it starts and closed when it ends (or is
closed), so a face that stops iterating (Ctrl-C, a client that went away) leaves no temporary
files and no build container behind.  Errors are DockyardError kinds with ``exit_code`` 1 (what
``docker build`` exits with), annotated with the failing step (events.annotate).

On disk, next to the store (``<dataroot>/build``)::

    tmp/                 extracted tar contexts, downloaded ADD URLs, RUN heredoc scripts (per build)
    mnt/<key>            COPY/ADD/WORKDIR step snapshots and COPY --from views, while mounted
    hashes/<h>.json      content digests of a directory context's files, keyed by their stat
    cache-mounts/<id>/   RUN --mount=type=cache directories (``builder prune -a`` removes them)

The cache itself is the ``build_cache`` table of dockyard.db (build/cache.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dockyard.build.events import BuildEvent, BuildFinished
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.build.cache import CachePruneReport
    from dockyard.engine import Engine


@dataclass
class BuildOptions:
    """``docker build`` flags, parsed: ``context`` is a path, a URL or ``-`` (then ``stdin``)."""

    context: str = "."
    dockerfile: str = ""                  # -f ("" = <context>/Dockerfile; "-" = stdin)
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)   # --build-arg K=V (and K from the env)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    quiet: bool = False
    network: str = ""                     # "" / default | host | none | a network name
    iidfile: str = ""
    add_hosts: list[str] = field(default_factory=list)
    pull: bool = False
    platform: str = ""
    stdin: BinaryIO | None = None
    cwd: Path | None = None               # -f and a relative context are relative to it


@dataclass
class BuilderPruneOptions:
    all: bool = False
    until: str = ""                       # --filter until=24h / a timestamp


class BuildEngine:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def build(self, opts: BuildOptions) -> Iterator[BuildEvent]:
        """Build, yielding events; the last one is BuildFinished.  Tags are set only on success."""
        from dockyard.build.context import open_context
        from dockyard.build.executor import BuildRequest, Executor
        from dockyard.oci.reference import parse_normalized

        refs = []
        for t in opts.tags:
            try:
                ref = parse_normalized(t)
            except DockyardError as exc:
                raise InvalidArgument(f'invalid tag "{t}": {exc}', exit_code=1) from None
            if ref.digest is not None:
                raise InvalidArgument(f'invalid tag "{t}": refusing to create a tag with a digest reference',
                                      exit_code=1)
            refs.append(ref.with_default_tag())
        if opts.network not in ("", "default", "host", "none", "bridge"):
            self.engine.networks.get(opts.network)  # NotFound in Docker's words for an unknown network
        work = self.engine.root / "build" / "tmp"
        try:
            ctx = open_context(opts.context, opts.dockerfile, stdin=opts.stdin, work_dir=work, cwd=opts.cwd)
        except DockyardError as exc:
            exc.exit_code = 1
            raise
        try:
            req = BuildRequest(context=ctx, tags=refs, build_args=dict(opts.build_args), labels=dict(opts.labels),
                               target=opts.target, no_cache=opts.no_cache, network=opts.network,
                               add_hosts=list(opts.add_hosts), pull=opts.pull, platform=opts.platform)
            for event in Executor(self.engine, req).run():
                if isinstance(event, BuildFinished) and opts.iidfile:
                    Path(opts.iidfile).write_text(event.image_id)
                yield event
        finally:
            ctx.close()

    def prune(self, opts: BuilderPruneOptions) -> CachePruneReport:
        """``docker builder prune``: cache entries and the images only they held; with ``all`` (and no
        ``until``) also the RUN cache mounts and the remembered digests of context files."""
        from dockyard.build.cache import prune

        until = None
        if opts.until:
            from dockyard.engine.images import _until

            until = _until(opts.until)
        report = prune(self.engine.image_store, all_=opts.all, until=until)
        if opts.all and until is None:
            # RUN --mount=type=cache directories and remembered context digests are build cache too
            import shutil

            for sub in ("cache-mounts", "hashes"):
                d = self.engine.root / "build" / sub
                if d.exists():
                    for entry in sorted(d.iterdir()):
                        report.reclaimed += _du(entry)
                        report.deleted.append(f"{sub}/{entry.name}"[:25])
                    shutil.rmtree(d, ignore_errors=True)
        return report


def _du(path: Path) -> int:
    """Bytes allocated under ``path`` (not following symlinks)."""
    import os

    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_blocks * 512
    total = 0
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total
