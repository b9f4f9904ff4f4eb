"""Unpacking a layer while it downloads: a reader that follows an ingest file as it grows, and the
two asyncio helpers the pull's task group needs.

How a layer travels during a pull::

    registry --HTTP--> download task (event loop) --append--> content/ingest/<dir>/data
                                                                    |  (own descriptor)
                                 unpack thread <--- IngestFollower -+ --> snapshotter.apply()

The download task is the only writer; it calls :meth:`IngestFollower.grew` after each chunk and
:meth:`IngestFollower.finish` when the blob is committed (or the download failed).  The unpacking
thread reads through the follower, which returns the bytes on disk so far and blocks for more until
the download is finished: EOF then, or Unavailable if it failed.  This is sound because an ingest is
only ever appended to (a resumed download continues the same file, a registry that ignores
``Range`` has the bytes already there skipped) and a commit is a rename, which an open descriptor
survives; so the follower sees every byte of the blob once, in order, whatever the network does.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.content.store import ContentStore
from dockyard.errors import NotFound, Unavailable

WAIT = 0.2          # longest sleep of a reader that missed a wake-up (there are none by design)
BATCH = 8 << 20     # wake the reader for this many new bytes


def ingest_data_path(content: ContentStore, ref: str) -> Path:
    """The data file of the open ingest named ``ref``: the directory whose ``ref`` file says so, as
    the content store lays ingests out (``ingest/<dir>/ref`` and ``ingest/<dir>/data``)."""
    for d in content.ingest_dir.iterdir():
        try:
            if (d / "ref").read_text() == ref:
                return d / "data"
        except OSError:
            continue
    raise NotFound(f"no ingest named {ref}")


class IngestFollower(io.RawIOBase):
    """A blob read while it is written; see the module docstring.

    The reader is woken when :data:`BATCH` new bytes are there (or the download ended), not for
    every network chunk: the unpacking thread and the event loop share the GIL, and a hand-over per
    64 KiB chunk slows both down more than the overlap gains.

    Threads: :meth:`readinto` runs on the unpacking thread, :meth:`grew` and :meth:`finish` on the
    event loop.  The pull closes the follower after the unpacking thread is done with it."""

    def __init__(self, path: Path, batch: int = BATCH) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._cond = threading.Condition()
        self._batch = batch
        self._pos = 0                   # bytes handed to the reader
        self._written = 0               # bytes the writer says the file has
        self._done = False
        self._error: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            n = self._file.readinto(buffer)     # what is on disk first, without waiting
            if n:
                self._pos += n
                return n
            with self._cond:                    # caught up: sleep until a batch is there, or the end
                while not (self._done or self._error is not None or self._written - self._pos >= self._batch):
                    self._cond.wait(WAIT)
                done, error = self._done, self._error
            n = self._file.readinto(buffer)
            if n:
                self._pos += n
                return n
            if error is not None:
                raise Unavailable(error)
            if done:
                return 0

    def grew(self, size: int) -> None:
        """The file now has ``size`` bytes (some may still sit in the writer's small buffer)."""
        with self._cond:
            self._written = size
            if size - self._pos >= self._batch:
                self._cond.notify_all()

    def finish(self, error: str | None = None) -> None:
        """The download committed the blob (``error`` None: the reader gets EOF after the last
        byte), or failed (the reader raises Unavailable with ``error``)."""
        with self._cond:
            if error is None:
                self._done = True
            elif not self._done:
                self._error = error
            self._cond.notify_all()

    def close(self) -> None:
        self._file.close()
        super().close()


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The exception to report from a task group: the first that is not a cancellation."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup) -> None:
        for e in g.exceptions:
            walk(e) if isinstance(e, BaseExceptionGroup) else leaves.append(e)

    walk(group)
    return next((e for e in leaves if not isinstance(e, asyncio.CancelledError)), leaves[0])


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking ``fn`` on a worker thread.  When the caller is cancelled the thread cannot be,
    so wait for it to finish first: a rollback must never race an unpack still writing."""
    fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait([fut])
        raise
