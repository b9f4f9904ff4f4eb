"""/volumes over a real engine on a temporary data root, through aiohttp's test client; every body is
checked against the Engine API reference."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from helpers.apiclient import ApiClient
from helpers.openapi import validate

from dockyard.engine import Engine


@pytest.fixture
def api(tmp_root) -> Iterator[ApiClient]:
    with ApiClient(Engine(tmp_root)) as client:
        yield client


def filters(**kw: list[str]) -> dict[str, str]:
    """Filters as the docker CLI sends them: {"key": {"value": true}}."""
    return {"filters": json.dumps({k.replace("_", "-"): {v: True for v in vs} for k, vs in kw.items()})}


def test_create_inspect_list_remove(api: ApiClient) -> None:
    r = api.post("/v1.43/volumes/create", json={"Name": "data", "Labels": {"team": "a"},
                                                "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}})
    assert r.status == 201, r.body
    validate("/volumes/create", "post", 201, r.body)
    vol = r.json()
    assert vol["Name"] == "data" and vol["Driver"] == "local" and vol["Scope"] == "local"
    assert vol["Labels"] == {"team": "a"} and vol["Options"]["type"] == "tmpfs"
    assert vol["Mountpoint"].endswith("/volumes/data/_data")

    again = api.post("/volumes/create", json={"Name": "data"})  # same name, same driver: the same volume
    assert again.status == 201 and again.json()["CreatedAt"] == vol["CreatedAt"]

    r = api.get("/volumes/data")
    assert r.status == 200
    validate("/volumes/{name}", "get", 200, r.body)
    assert r.json() == vol

    plain = api.post("/volumes/create", json={}).json()          # no name: 64 hex digits
    assert len(plain["Name"]) == 64 and plain["Labels"] == {} and plain["Options"] == {}

    r = api.get("/volumes")
    validate("/volumes", "get", 200, r.body)
    body = r.json()
    assert body["Warnings"] is None
    assert sorted(v["Name"] for v in body["Volumes"]) == sorted(["data", plain["Name"]])

    assert api.delete("/volumes/data").status == 204
    r = api.get("/volumes/data")
    assert r.status == 404
    validate("/volumes/{name}", "get", 404, r.body)
    assert r.json() == {"message": "get data: no such volume"}
    r = api.delete("/volumes/data")
    assert r.status == 404 and "no such volume" in r.json()["message"]
    assert api.delete("/volumes/data", params={"force": "1"}).status == 204


def test_list_filters(api: ApiClient) -> None:
    api.post("/volumes/create", json={"Name": "web-data", "Labels": {"app": "web", "tier": "front"}})
    api.post("/volumes/create", json={"Name": "db-data", "Labels": {"app": "db"}})
    api.post("/volumes/create", json={"Name": "scratch"})

    def names(**kw: list[str]) -> list[str]:
        r = api.get("/volumes", params=filters(**kw))
        assert r.status == 200, r.body
        return sorted(v["Name"] for v in r.json()["Volumes"])

    assert names(name=["data"]) == ["db-data", "web-data"]
    assert names(label=["app"]) == ["db-data", "web-data"]
    assert names(label=["app=web"]) == ["web-data"]
    assert names(label=["app", "tier=front"]) == ["web-data"]
    assert names(driver=["local"]) == ["db-data", "scratch", "web-data"]
    assert names(dangling=["true"]) == ["db-data", "scratch", "web-data"]
    assert names(dangling=["false"]) == []
    # the older form of the parameter: {"key": ["value"]}
    r = api.get("/volumes", params={"filters": json.dumps({"name": ["scratch"]})})
    assert [v["Name"] for v in r.json()["Volumes"]] == ["scratch"]

    r = api.get("/volumes", params=filters(colour=["red"]))
    assert r.status == 400 and r.json() == {"message": "invalid filter 'colour'"}
    r = api.get("/volumes", params={"filters": "{not json"})
    assert r.status == 400 and r.json()["message"].startswith("invalid filter")


def test_bad_requests(api: ApiClient) -> None:
    r = api.post("/volumes/create", json={"Name": "x", "Driver": "no-such-driver"})
    assert r.status in (400, 404)
    assert r.json()["message"] == ('create x: error looking up volume plugin no-such-driver: plugin "no-such-driver" '
                                   'not found')
    r = api.post("/volumes/create", json={"Name": "bad/name"})
    assert r.status == 400 and r.json()["message"].startswith("create bad/name: ")
    r = api.post("/volumes/create", data=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["message"].startswith("invalid JSON")
    r = api.post("/volumes/create", json={"Name": "x", "Labels": {"a": 1}})
    assert r.status == 400


def test_prune_anonymous_and_all(api: ApiClient) -> None:
    api.post("/volumes/create", json={"Name": "named"})
    anon = api.post("/volumes/create", json={"Labels": {"com.docker.volume.anonymous": ""}}).json()["Name"]
    r = api.post("/volumes/prune")
    validate("/volumes/prune", "post", 200, r.body)
    assert r.json()["VolumesDeleted"] == [anon]
    assert [v["Name"] for v in api.get("/volumes").json()["Volumes"]] == ["named"]
    r = api.post("/volumes/prune")
    assert r.json() == {"VolumesDeleted": None, "SpaceReclaimed": 0}
    r = api.post("/volumes/prune", params=filters(all=["true"]))
    assert r.json()["VolumesDeleted"] == ["named"]

    # before API 1.42 a prune removed named volumes too
    api.post("/volumes/create", json={"Name": "old-style"})
    assert api.post("/v1.41/volumes/prune").json()["VolumesDeleted"] == ["old-style"]


def test_in_use_volume_is_refused(busybox, tmp_root) -> None:
    busybox("create", "--name", "user", "-v", "busy:/data", "busybox", "true")
    with ApiClient(Engine(tmp_root)) as api:
        r = api.delete("/volumes/busy")
        assert r.status == 409
        validate("/volumes/{name}", "delete", 409, r.body)
        assert r.json()["message"].startswith("remove busy: volume is in use - [")
        r = api.get("/volumes", params=filters(dangling=["false"]))
        assert [v["Name"] for v in r.json()["Volumes"]] == ["busy"]
        busybox("rm", "user")
        assert api.delete("/volumes/busy").status == 204
