"""System endpoints of the Engine API against a real Engine on a temporary root (no root, no runc
needed): ping and negotiation headers, version, info, df, events -- bodies validated against the
Docker Engine API reference."""

from __future__ import annotations

import json
import threading
import time

import pytest
from helpers.apiclient import ApiClient
from helpers.openapi import validate, validate_definition

from dockyard.engine import Engine


@pytest.fixture
def api(tmp_path):
    with ApiClient(Engine(tmp_path / "root")) as client:
        yield client


def test_ping_get_and_head_carry_the_negotiation_headers(api):
    for method in ("GET", "HEAD"):
        r = api.request(method, "/_ping")
        assert r.status == 200
        assert r.headers["API-Version"] == "1.43"
        assert r.headers["Builder-Version"] == "1"  # the docker CLI then uses the classic builder
        assert r.headers["Docker-Experimental"] == "false"
        assert r.headers["Ostype"] == "linux"
        assert r.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
        assert r.headers["Pragma"] == "no-cache"
    assert api.get("/_ping").body == b"OK"
    assert api.get("/v1.43/_ping").body == b"OK"
    assert api.request("HEAD", "/_ping").body == b""


def test_version_names_api_and_min_api_version(api):
    r = api.get("/version")
    assert r.status == 200
    validate("/version", "get", 200, r.body)
    v = r.json()
    assert v["ApiVersion"] == "1.43" and v["MinAPIVersion"] == "1.24"
    engine = [c for c in v["Components"] if c["Name"] == "Engine"][0]
    assert engine["Details"]["ApiVersion"] == "1.43" and engine["Details"]["MinAPIVersion"] == "1.24"
    assert r.headers["Api-Version"] == "1.43"


def test_versions_out_of_range_are_refused_as_dockerd_does(api):
    r = api.get("/v1.99/version")
    assert r.status == 400 and "is too new" in r.json()["message"]
    r = api.get("/v1.12/version")
    assert r.status == 400 and "is too old" in r.json()["message"]
    assert api.get("/v1.24/version").status == 200


def test_info_has_dockers_shape(api, tmp_path):
    r = api.get("/info")
    assert r.status == 200
    validate("/info", "get", 200, r.body)
    info = r.json()
    assert info["DockerRootDir"] == str(tmp_path / "root")
    assert info["Containers"] == 0 and info["Images"] == 0
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["OSType"] == "linux" and info["NCPU"] >= 1


def test_system_df_empty_root(api):
    r = api.get("/system/df")
    assert r.status == 200
    validate("/system/df", "get", 200, r.body)
    df = r.json()
    assert df["Images"] == [] and df["Containers"] == [] and df["Volumes"] == [] and df["BuildCache"] == []
    r = api.get("/system/df", params={"type": "volume"})
    assert set(r.json()) == {"Volumes"}
    assert api.get("/system/df", params={"type": "bogus"}).status == 400


def test_events_history_between_since_and_until(api, tmp_path):
    engine = Engine(tmp_path / "root")
    t0 = time.time()
    engine.events.emit("volume", "create", "v1", {"driver": "local"})
    engine.events.emit("network", "create", "n" * 64, {"name": "front", "type": "bridge"})
    engine.events.emit("volume", "destroy", "v1")
    t1 = time.time() + 0.5
    r = api.get("/events", params={"since": f"{t0 - 1:.9f}", "until": f"{t1:.9f}"})
    assert r.status == 200
    msgs = r.messages()
    assert [(m["Type"], m["Action"]) for m in msgs] == [("volume", "create"), ("network", "create"),
                                                        ("volume", "destroy")]
    for m in msgs:
        validate_definition("EventMessage", m)
        assert m["scope"] == "local" and m["time"] == m["timeNano"] // 10**9
    r = api.get("/events", params={"since": str(int(t0) - 1), "until": f"{t1:.9f}",
                                   "filters": json.dumps({"type": ["volume"], "event": ["destroy"]})})
    assert [(m["Type"], m["Action"], m["Actor"]["ID"]) for m in r.messages()] == [("volume", "destroy", "v1")]
    r = api.get("/events", params={"filters": json.dumps({"network": {"front": True}}),
                                   "since": str(int(t0) - 1), "until": f"{t1:.9f}"})
    assert [m["Actor"]["Attributes"]["name"] for m in r.messages()] == ["front"]


def test_events_stream_live_events_until_until(api, tmp_path):
    engine = Engine(tmp_path / "root")  # another process, as far as the server's hub knows
    until = time.time() + 1.5

    def later() -> None:
        time.sleep(0.4)
        engine.events.emit("volume", "create", "live", {"driver": "local"})

    t = threading.Thread(target=later)
    t.start()
    started = time.monotonic()
    r = api.get("/events", params={"until": f"{until:.9f}"})
    t.join()
    assert [m["Actor"]["ID"] for m in r.messages()] == ["live"]
    assert time.monotonic() - started >= 1.0  # the stream ended at until, not at the first event


def test_events_bad_filters_and_times(api):
    assert api.get("/events", params={"filters": json.dumps({"bogus": ["x"]})}).status == 400
    assert api.get("/events", params={"filters": json.dumps({"type": ["planet"]})}).status == 400
    r = api.get("/events", params={"since": "200", "until": "100"})
    assert r.status == 400
    validate("/events", "get", 400, r.body)
