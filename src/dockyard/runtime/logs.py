"""Reading container logs in the k8s-file format that conmon writes (``-l k8s-file:<path>``).

Each line of the file is one chunk of container output::

    2024-01-01T00:00:00.123456789+00:00 stdout F hello world
    2024-01-01T00:00:00.200000000+00:00 stderr P a long line that was split becau
    2024-01-01T00:00:00.200000100+00:00 stderr F se it did not fit one read

    <RFC3339Nano time with offset> <stream> <tag> <content>\\n

``stream`` is ``stdout`` or ``stderr`` (a tty container only has ``stdout``; its lines end in
``\\r``).  ``tag`` is ``F`` when the content ends a line (the newline itself is not stored) and ``P``
for a partial chunk: conmon splits a line that spans several reads, and the last output of a process
that exits without a newline stays ``P`` for ever.  Partials of the two streams interleave, so they
are joined per stream.  A tag may carry more fields after a colon (``F:x``); only the first letter
counts.

:func:`read_log` turns the file into :class:`LogFrame` values, one per complete line (content plus
``\\n``) and one for each trailing partial (without ``\\n``), in file order.  The frame's time is the
time of its last chunk, as ``podman logs`` does.  ``timestamp`` is that time in the form ``docker
logs -t`` prints (UTC, nine fraction digits, ``Z``).

conmon rotates the file when ``--log-size-max`` is reached by writing a new file and renaming it
over the old one; follow mode notices the new inode (or a truncation) and continues from the start
of the new file.  Lines that do not parse are skipped: the log is data, not a contract.

Errors: none of its own; ``OSError`` other than a missing file propagates.  A missing file is an
empty log (conmon creates it when the container is created).
"""

from __future__ import annotations

import calendar
import collections
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

POLL_INTERVAL = 0.1
_READ_SIZE = 1 << 16
_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}


@dataclass(frozen=True, slots=True)
class LogFrame:
    """One line (or trailing partial line) of container output."""

    stream: str  # "stdout" | "stderr"
    time: float  # seconds since the epoch
    timestamp: str  # "2024-01-01T00:00:00.123456789Z", as `docker logs -t` prints it
    data: bytes  # the line including its "\n" (absent only for a trailing partial)


class _TimeParser:
    """RFC3339Nano -> integer nanoseconds since the epoch.

    ``datetime`` cannot hold nanoseconds and ``strptime`` is slow, so the date-time part is parsed
    once per distinct second (consecutive log lines mostly share it) and the fraction by hand.
    """

    def __init__(self) -> None:
        self._key = b""
        self._seconds = 0

    def parse(self, ts: bytes) -> int | None:
        if len(ts) < 20 or ts[10:11] not in (b"T", b"t"):
            return None
        body, offset = ts[19:], 0
        frac = b""
        if body.startswith(b"."):
            end = 1
            while end < len(body) and 48 <= body[end] <= 57:
                end += 1
            frac, body = body[1:end], body[end:]
        if body in (b"Z", b"z"):
            offset = 0
        elif len(body) == 6 and body[0:1] in (b"+", b"-") and body[3:4] == b":":
            try:
                offset = int(body[1:3]) * 3600 + int(body[4:6]) * 60
            except ValueError:
                return None
            if body[0:1] == b"-":
                offset = -offset
        else:
            return None
        key = ts[:19]
        if key != self._key:
            try:
                t = time.strptime(key.decode("ascii"), "%Y-%m-%dT%H:%M:%S")
            except (ValueError, UnicodeDecodeError):
                return None
            self._key, self._seconds = key, calendar.timegm(t)
        nanos = int((frac + b"000000000")[:9]) if frac else 0
        return (self._seconds - offset) * 1_000_000_000 + nanos


def format_timestamp(ns: int) -> str:
    """Nanoseconds since the epoch -> ``2024-01-01T00:00:00.123456789Z`` (Docker's fixed RFC3339Nano)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


class K8sFileParser:
    """Incremental parser: feed raw lines (without the newline), get complete frames back.

    Partial chunks are held per stream until their ``F`` line arrives; :meth:`flush` hands out what
    is still pending (the output of a process that ended without a newline).
    """

    def __init__(self) -> None:
        self._times = _TimeParser()
        self._partial: dict[str, list[bytes]] = {}
        self._partial_ns: dict[str, int] = {}

    def feed(self, line: bytes) -> LogFrame | None:
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            return None
        stream = _STREAMS.get(parts[1])
        ns = self._times.parse(parts[0])
        if stream is None or ns is None or not parts[2]:
            return None
        content = parts[3] if len(parts) == 4 else b""
        if parts[2][:1] == b"P":
            self._partial.setdefault(stream, []).append(content)
            self._partial_ns[stream] = ns
            return None
        pending = self._partial.pop(stream, None)
        self._partial_ns.pop(stream, None)
        data = b"".join(pending) + content if pending else content
        return LogFrame(stream, ns / 1e9, format_timestamp(ns), data + b"\n")

    def flush(self) -> list[LogFrame]:
        frames = []
        for stream, chunks in self._partial.items():
            ns = self._partial_ns[stream]
            frames.append(LogFrame(stream, ns / 1e9, format_timestamp(ns), b"".join(chunks)))
        frames.sort(key=lambda f: f.time)
        self._partial.clear()
        self._partial_ns.clear()
        return frames


class _Follower:
    """An open log file read in chunks, reopened when conmon rotates or truncates it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: BinaryIO | None = None
        self.buf = b""

    def open(self) -> bool:
        try:
            self.fh = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            return False
        return True

    def read_lines(self) -> list[bytes]:
        """Complete lines that are available now (the tail without a newline stays buffered)."""
        if self.fh is None and not self.open():
            return []
        assert self.fh is not None
        while chunk := self.fh.read(_READ_SIZE):
            self.buf += chunk
            if b"\n" in chunk:
                lines = self.buf.split(b"\n")
                self.buf = lines.pop()
                return lines
        return []

    def rotated(self) -> bool:
        """True (and the new file opened) when the path now names another file or was truncated."""
        if self.fh is None:
            return self.open()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self.fh.fileno())
        if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino) or st.st_size < self.fh.tell():
            self.close()
            self.buf = b""
            return self.open()
        return False

    def rest(self) -> list[bytes]:
        """The buffered unterminated line, if any (called once the writer is gone)."""
        rest, self.buf = self.buf, b""
        return [rest] if rest else []

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def read_log(
    path: Path,
    *,
    since: float | None = None,
    until: float | None = None,
    tail: int | None = None,
    follow: bool = False,
    is_running: Callable[[], bool] = lambda: False,
) -> Iterator[LogFrame]:
    """Frames of the k8s-file log at ``path``, oldest first.

    ``tail`` keeps the last N frames of what is in the file now (``None`` or negative: all; 0:
    none), then ``since``/``until`` (epoch seconds, inclusive) filter them, as ``docker logs`` does.
    With ``follow`` the generator keeps polling the file (every ~100 ms) for new lines after the
    existing ones, and ends once ``is_running()`` has returned False *and* the file is drained, or
    when the clock passes ``until``.  ``is_running`` must stay true until the monitor has written
    its last line -- "conmon is alive" or "no exit file yet" is right; "runc state says running" can
    end a follow a few milliseconds too early.  Closing the generator closes the file.
    """

    def wanted(frame: LogFrame) -> bool:
        return since is None or frame.time >= since

    def past_until(frame: LogFrame) -> bool:
        return until is not None and frame.time > until

    parser = K8sFileParser()
    reader = _Follower(path)
    try:
        # What is in the file now: parse all of it, keep the tail.
        limit = None if tail is None or tail < 0 else tail
        backlog: collections.deque[LogFrame] = collections.deque(maxlen=limit)
        while lines := reader.read_lines():
            for line in lines:
                frame = parser.feed(line)
                if frame is not None:
                    backlog.append(frame)
        if not follow:
            for line in reader.rest():
                frame = parser.feed(line)
                if frame is not None:
                    backlog.append(frame)
            backlog.extend(parser.flush())
        for frame in backlog:
            if past_until(frame):
                return
            if wanted(frame):
                yield frame
        if not follow:
            return

        stopping = False
        while True:
            lines = reader.read_lines()
            if lines:
                for line in lines:
                    frame = parser.feed(line)
                    if frame is None or not wanted(frame):
                        continue
                    if past_until(frame):
                        return
                    yield frame
                continue
            if reader.rotated():
                continue
            if stopping:
                break
            if until is not None and time.time() > until:
                return
            if not is_running():
                stopping = True  # one more read: the writer may have finished since our last one
                continue
            time.sleep(POLL_INTERVAL)
        for line in reader.rest():
            frame = parser.feed(line)
            if frame is not None and wanted(frame) and not past_until(frame):
                yield frame
        for frame in parser.flush():
            if wanted(frame) and not past_until(frame):
                yield frame
    finally:
        reader.close()
