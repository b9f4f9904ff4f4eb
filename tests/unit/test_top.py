"""``docker top`` against the host's real ps: the rows are exactly the container's pids."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from dockyard.errors import DockyardError, InvalidArgument
from dockyard.runtime.top import parse_ps_output, top


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_default_columns_and_exact_rows(child: subprocess.Popen[bytes]) -> None:
    me = os.getpid()
    titles, rows = top([me, child.pid], None)
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert sorted(int(r[1]) for r in rows) == sorted([me, child.pid])
    assert all(len(r) == len(titles) for r in rows)
    sleep_row = next(r for r in rows if int(r[1]) == child.pid)
    assert int(sleep_row[2]) == me
    assert sleep_row[-1] == "sleep 60"  # the command keeps its spaces, in the last column


def test_custom_args(child: subprocess.Popen[bytes]) -> None:
    titles, rows = top([child.pid], "-o pid,comm")
    assert titles == ["PID", "COMMAND"]
    assert rows == [[str(child.pid), "sleep"]]


def test_args_that_cannot_take_q_are_retried_without_it(child: subprocess.Popen[bytes]) -> None:
    titles, rows = top([child.pid], "auxf")  # BSD f (forest) refuses -q
    assert "PID" in titles
    assert [int(r[titles.index("PID")]) for r in rows] == [child.pid]


def test_args_without_pid_column(child: subprocess.Popen[bytes]) -> None:
    with pytest.raises(InvalidArgument, match="^Couldn't find PID field in ps output$"):
        top([child.pid], "-o comm,user")


def test_renaming_a_column_to_pid_is_refused(child: subprocess.Popen[bytes]) -> None:
    with pytest.raises(InvalidArgument, match='specifying "comm=PID" is not allowed'):
        top([child.pid], "-o comm=PID")


def test_bad_ps_args_report_ps_error(child: subprocess.Popen[bytes]) -> None:
    with pytest.raises(DockyardError, match="^ps: "):
        top([child.pid], "--no-such-option")


def test_no_pids_gives_titles_only() -> None:
    titles, rows = top([], None)
    assert "PID" in titles and rows == []


def test_thread_rows_follow_their_process() -> None:
    output = "PID TID CMD\n10 - foo\n- 10 -\n- 11 -\n20 - bar\n- 20 -\n"
    titles, rows = parse_ps_output(output, {10})
    assert titles == ["PID", "TID", "CMD"]
    assert rows == [["10", "-", "foo"], ["-", "10", "-"], ["-", "11", "-"]]
