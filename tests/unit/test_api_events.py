"""The event log behind ``/events``, ``dockyard events`` and the API's container waits
(engine/events.py): appends from many writers, rotation, cursors across rotation, Docker's filter
semantics, times, and the shape the faces render."""

from __future__ import annotations

import threading
import time

import pytest
from helpers.openapi import validate_definition

from dockyard.engine.events import Event, EventLog, event_view, matches, parse_time_nano
from dockyard.engine.options import Filters
from dockyard.errors import InvalidArgument


def test_emit_read_and_view(tmp_path):
    log = EventLog(tmp_path / "events.log")
    a = log.emit("container", "start", "c" * 64, {"name": "web", "image": "busybox", "app": "shop"})
    b = log.emit("image", "tag", "sha256:" + "1" * 64, {"name": "busybox:1"})
    got = log.read()
    assert got == [a, b]
    v = event_view(a)
    assert v["status"] == "start" and v["id"] == a.actor_id and v["from"] == "busybox"
    assert v["Actor"]["Attributes"]["name"] == "web" and v["time"] == a.time_nano // 10**9
    validate_definition("EventMessage", v)
    assert "from" not in event_view(b) and event_view(b)["status"] == "tag"
    assert (tmp_path / "events.log").stat().st_mode & 0o777 == 0o600


def test_since_until_and_torn_lines(tmp_path):
    path = tmp_path / "events.log"
    log = EventLog(path)
    first = log.emit("volume", "create", "v1")
    with open(path, "ab") as f:
        f.write(b"not json\n{\"half\": \n")
    second = log.emit("volume", "destroy", "v1")
    assert log.read() == [first, second]
    assert log.read(since=second.time_nano) == [second]
    assert log.read(until=first.time_nano) == [first]


def test_concurrent_writers_never_interleave(tmp_path):
    logs = [EventLog(tmp_path / "events.log") for _ in range(4)]  # as if four processes

    def write(log: EventLog, n: int) -> None:
        for i in range(200):
            log.emit("container", "create", f"{n}-{i}", {"pad": "x" * 500})

    threads = [threading.Thread(target=write, args=(lg, n)) for n, lg in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = logs[0].read()
    assert len(got) == 800 and len({e.actor_id for e in got}) == 800


def test_rotation_keeps_one_generation_and_cursors_follow_it(tmp_path):
    log = EventLog(tmp_path / "events.log", max_bytes=2000)
    cur = log.cursor()
    got = []
    emitted = []
    for i in range(60):
        emitted.append(log.emit("network", "create", f"n{i}", {"name": f"net{i}"}))
        if i % 5 == 0:
            got += cur.poll()  # a follower polls far more often than the log rotates
    got += cur.poll()
    assert (tmp_path / "events.log.1").exists()
    assert [e.actor_id for e in got] == [e.actor_id for e in emitted]  # nothing lost across rotations
    kept = log.read()
    assert 0 < len(kept) < 60 and kept[-1] == emitted[-1]  # one old generation plus the current file
    cur.close()


def test_follow_ends_at_until_and_sees_live_events(tmp_path):
    log = EventLog(tmp_path / "events.log")
    old = log.emit("volume", "create", "old")
    until = time.time_ns() + 800_000_000

    def later() -> None:
        time.sleep(0.2)
        EventLog(tmp_path / "events.log").emit("volume", "create", "new")

    t = threading.Thread(target=later)
    t.start()
    got = list(log.follow(since=old.time_nano, until=until))
    t.join()
    assert [e.actor_id for e in got] == ["old", "new"]
    assert time.time_ns() >= until


def test_listeners_hear_this_process_emit(tmp_path):
    log = EventLog(tmp_path / "events.log")
    heard: list[Event] = []
    listener = heard.append
    log.add_listener(listener)
    ev = log.emit("volume", "create", "v")
    log.remove_listener(listener)
    log.emit("volume", "destroy", "v")
    assert heard == [ev]


def ev(type_: str, action: str, actor: str, **attrs: str) -> Event:
    return Event(type_, action, actor, attrs, 1)


@pytest.mark.parametrize("filters,event,expected", [
    ({"type": ["container"]}, ev("container", "start", "abc"), True),
    ({"type": ["image"]}, ev("container", "start", "abc"), False),
    ({"container": ["abc"]}, ev("container", "start", "abcdef", name="web"), True),   # id prefix
    ({"container": ["web"]}, ev("container", "start", "abcdef", name="web"), True),   # name
    ({"container": ["db"]}, ev("container", "start", "abcdef", name="web"), False),
    ({"event": ["die"]}, ev("container", "die", "a"), True),
    ({"event": ["die", "stop"]}, ev("container", "start", "a"), False),
    ({"event": ["exec_start"]}, ev("container", "exec_start: sh -c true", "a"), True),
    ({"image": ["busybox"]}, ev("container", "start", "a", image="busybox:latest"), True),
    ({"image": ["busybox:latest"]}, ev("image", "tag", "sha256:1", name="busybox:latest"), True),
    ({"image": ["alpine"]}, ev("container", "start", "a", image="busybox"), False),
    ({"label": ["app=shop"]}, ev("container", "start", "a", app="shop"), True),
    ({"label": ["app"]}, ev("container", "start", "a", app="x"), True),
    ({"label": ["app=shop"]}, ev("container", "start", "a", app="blog"), False),
    ({"volume": ["data"]}, ev("volume", "create", "data"), True),
    ({"volume": ["data"]}, ev("volume", "create", "data2"), False),
    ({"network": ["front"]}, ev("network", "connect", "n1", name="front", container="c"), True),
    ({"type": ["network"], "event": ["connect"]}, ev("network", "disconnect", "n1"), False),
])
def test_filters_follow_dockers_rules(filters, event, expected):
    assert matches(event, Filters(filters)) is expected


def test_parse_time_nano():
    assert parse_time_nano("1700000000") == 1_700_000_000_000_000_000
    assert parse_time_nano("1700000000.5") == 1_700_000_000_500_000_000
    assert parse_time_nano("1700000000.000000001") == 1_700_000_000_000_000_001
    assert parse_time_nano("2023-11-14T22:13:20Z") == 1_700_000_000_000_000_000
    assert parse_time_nano("10m", now=1_700_000_600) == 1_700_000_000_000_000_000
    assert parse_time_nano("") is None and parse_time_nano(None) is None
    with pytest.raises(InvalidArgument):
        parse_time_nano("yesterday")
