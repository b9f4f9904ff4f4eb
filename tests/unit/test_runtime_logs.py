"""The k8s-file log parser: streams, partial lines, timestamps, tail, since/until, follow."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from dockyard.runtime.logs import K8sFileParser, LogFrame, format_timestamp, read_log

T0 = 1704067200  # 2024-01-01T00:00:00Z


def line(sec: int, stream: str, tag: str, text: str, frac: str = "000000000", offset: str = "+00:00",
         base: int = T0) -> str:
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + sec))
    return f"{t}.{frac}{offset} {stream} {tag} {text}\n"


def write(path: Path, *lines: str, mode: str = "w") -> Path:
    with open(path, mode) as f:
        f.write("".join(lines))
    return path


def frames(path: Path, **kw) -> list[tuple[str, bytes]]:
    return [(f.stream, f.data) for f in read_log(path, **kw)]


def test_streams_and_newlines(tmp_path):
    p = write(tmp_path / "log", line(0, "stdout", "F", "out"), line(1, "stderr", "F", "err"),
              line(2, "stdout", "F", ""), "2024-01-01T00:00:03.000000000+00:00 stdout F\n")
    assert frames(p) == [("stdout", b"out\n"), ("stderr", b"err\n"), ("stdout", b"\n"), ("stdout", b"\n")]


def test_timestamps_are_utc_with_nanoseconds(tmp_path):
    p = write(tmp_path / "log",
              line(0, "stdout", "F", "a", frac="123456789"),
              line(0, "stdout", "F", "b", frac="5", offset="+02:00"),
              "2024-01-01T00:00:07Z stdout F c\n",
              "2023-12-31T23:30:00.25-01:00 stdout F d\n")
    got = list(read_log(p))
    assert [f.timestamp for f in got] == [
        "2024-01-01T00:00:00.123456789Z",
        "2023-12-31T22:00:00.500000000Z",
        "2024-01-01T00:00:07.000000000Z",
        "2024-01-01T00:30:00.250000000Z",
    ]
    assert got[0].time == pytest.approx(T0 + 0.123456789)
    assert got[1].time == pytest.approx(T0 - 7200 + 0.5)
    assert format_timestamp(T0 * 10**9 + 1) == "2024-01-01T00:00:00.000000001Z"


def test_partial_lines_join_per_stream(tmp_path):
    p = write(tmp_path / "log",
              line(0, "stdout", "P", "hel"),
              line(1, "stderr", "P", "wor"),
              line(2, "stdout", "P", "lo "),
              line(3, "stderr", "F", "ld"),
              line(4, "stdout", "F:extra", "there"),
              line(5, "stdout", "P", "no newline at exit"))
    got = list(read_log(p))
    assert [(f.stream, f.data) for f in got] == [
        ("stderr", b"world\n"), ("stdout", b"hello there\n"), ("stdout", b"no newline at exit")]
    assert got[1].time == T0 + 4  # the time of the chunk that completed the line


def test_content_keeps_spaces_and_bytes(tmp_path):
    p = tmp_path / "log"
    p.write_bytes(line(0, "stdout", "F", "  two  spaces \t").encode()
                  + b"2024-01-01T00:00:01.000000000+00:00 stdout F \xff\xfe\r\n")
    assert frames(p) == [("stdout", b"  two  spaces \t\n"), ("stdout", b"\xff\xfe\r\n")]


def test_malformed_lines_are_skipped(tmp_path):
    p = write(tmp_path / "log", "garbage\n", "\n", "2024-01-01T00:00:00Z stdin F x\n",
              "not-a-time stdout F x\n", line(0, "stdout", "F", "ok"), "2024-13-01T00:00:00Z stdout F bad\n")
    assert frames(p) == [("stdout", b"ok\n")]


def test_unterminated_last_line_is_read(tmp_path):
    p = write(tmp_path / "log", line(0, "stdout", "F", "one"), line(1, "stdout", "F", "two").rstrip("\n"))
    assert frames(p) == [("stdout", b"one\n"), ("stdout", b"two\n")]


def test_missing_file_is_an_empty_log(tmp_path):
    assert frames(tmp_path / "nope") == []


def test_tail(tmp_path):
    p = write(tmp_path / "log", *(line(i, "stdout", "F", f"l{i}") for i in range(10)),
              line(10, "stderr", "P", "part"), line(11, "stderr", "F", "ial"))
    assert frames(p, tail=3) == [("stdout", b"l8\n"), ("stdout", b"l9\n"), ("stderr", b"partial\n")]
    assert frames(p, tail=0) == []
    assert len(frames(p, tail=-1)) == 11
    assert len(frames(p, tail=100)) == 11


def test_since_until_inclusive_and_after_tail(tmp_path):
    p = write(tmp_path / "log", *(line(i, "stdout", "F", f"l{i}") for i in range(10)))
    assert frames(p, since=T0 + 7) == [("stdout", b"l7\n"), ("stdout", b"l8\n"), ("stdout", b"l9\n")]
    assert frames(p, until=T0 + 1) == [("stdout", b"l0\n"), ("stdout", b"l1\n")]
    assert frames(p, since=T0 + 3, until=T0 + 4) == [("stdout", b"l3\n"), ("stdout", b"l4\n")]
    # Docker takes the tail first, then filters.
    assert frames(p, tail=2, since=T0 + 3) == [("stdout", b"l8\n"), ("stdout", b"l9\n")]
    assert frames(p, tail=5, until=T0 + 6) == [("stdout", b"l5\n"), ("stdout", b"l6\n")]


def test_parser_flush_orders_pending_partials():
    parser = K8sFileParser()
    assert parser.feed(line(2, "stderr", "P", "b").rstrip("\n").encode()) is None
    assert parser.feed(line(1, "stdout", "P", "a").rstrip("\n").encode()) is None
    out = parser.flush()
    assert [(f.stream, f.data) for f in out] == [("stdout", b"a"), ("stderr", b"b")]
    assert parser.flush() == []
    assert isinstance(out[0], LogFrame)


class Writer:
    """Appends lines to a log in a thread, the way conmon would, then says it stopped."""

    def __init__(self, path: Path, lines: list[str], delay: float = 0.05) -> None:
        self.path, self.lines, self.delay = path, lines, delay
        self.running = True
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        for text in self.lines:
            time.sleep(self.delay)
            # Write a line in two pieces so the reader may see half a line.
            with open(self.path, "a") as f:
                f.write(text[:10])
                f.flush()
                time.sleep(0.005)
                f.write(text[10:])
        self.running = False


def test_follow_reads_new_lines_and_stops_when_writer_is_done(tmp_path):
    p = write(tmp_path / "log", line(0, "stdout", "F", "old"))
    w = Writer(p, [line(i, "stdout", "F", f"new{i}") for i in range(1, 6)] + [line(6, "stderr", "P", "end")])
    w.thread.start()
    got = frames(p, follow=True, is_running=lambda: w.running)
    w.thread.join()
    assert got == [("stdout", b"old\n")] + [("stdout", f"new{i}\n".encode()) for i in range(1, 6)] + [
        ("stderr", b"end")]


def test_follow_drains_what_was_written_just_before_stop(tmp_path):
    p = write(tmp_path / "log", "")
    state = {"calls": 0}

    def is_running() -> bool:
        # The writer finishes between our last read and this check.
        state["calls"] += 1
        if state["calls"] == 2:
            write(p, line(1, "stdout", "F", "last words"), mode="a")
            return False
        return True

    assert frames(p, follow=True, is_running=is_running) == [("stdout", b"last words\n")]


def test_follow_with_tail_and_until(tmp_path):
    now = int(time.time())
    p = write(tmp_path / "log", *(line(i - 10, "stdout", "F", f"l{i}", base=now) for i in range(5)))
    w = Writer(p, [line(0, "stdout", "F", "l5", base=now), line(50, "stdout", "F", "late", base=now),
                   line(51, "stdout", "F", "x", base=now)])
    w.thread.start()
    got = frames(p, tail=1, until=now + 10, follow=True, is_running=lambda: w.running)
    w.thread.join()
    assert got == [("stdout", b"l4\n"), ("stdout", b"l5\n")]


def test_follow_ends_when_the_clock_passes_until(tmp_path):
    p = write(tmp_path / "log", line(0, "stdout", "F", "old"))
    start = time.monotonic()
    assert frames(p, until=time.time() + 0.3, follow=True, is_running=lambda: True) == [("stdout", b"old\n")]
    assert time.monotonic() - start < 5


def test_follow_survives_rotation_and_truncation(tmp_path):
    p = write(tmp_path / "log", line(0, "stdout", "F", "first file"))
    running = {"on": True}

    def rotate() -> None:
        time.sleep(0.2)
        tmp = write(tmp_path / "log.tmp", line(1, "stdout", "F", "second file"))
        os.replace(tmp, p)  # conmon's --log-size-max rotation: a new file renamed over the old
        time.sleep(0.3)
        write(p, line(2, "stdout", "F", "third"))  # truncated in place and rewritten
        time.sleep(0.3)
        running["on"] = False

    t = threading.Thread(target=rotate)
    t.start()
    got = frames(p, follow=True, is_running=lambda: running["on"])
    t.join()
    assert got == [("stdout", b"first file\n"), ("stdout", b"second file\n"), ("stdout", b"third\n")]


def test_follow_waits_for_the_file_to_appear(tmp_path):
    p = tmp_path / "log"
    w = Writer(p, [line(0, "stdout", "F", "hello")], delay=0.2)
    w.thread.start()
    got = frames(p, follow=True, is_running=lambda: w.running)
    w.thread.join()
    assert got == [("stdout", b"hello\n")]
