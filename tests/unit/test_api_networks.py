"""/networks over a real engine on a temporary data root, through aiohttp's test client; every body is
checked against the Engine API reference.  Creating a network records it (the bridge appears when a
container starts), so these run no container."""

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
    return {"filters": json.dumps({k: {v: True for v in vs} for k, vs in kw.items()})}


def test_builtin_networks_listed(api: ApiClient) -> None:
    r = api.get("/v1.43/networks")
    assert r.status == 200
    validate("/networks", "get", 200, r.body)
    by_name = {n["Name"]: n for n in r.json()}
    assert {"bridge", "host", "none"} <= set(by_name)
    assert by_name["bridge"]["Driver"] == "bridge" and by_name["host"]["Driver"] == "host"
    assert by_name["none"]["Driver"] == "null"
    assert all(n["Containers"] == {} and n["Scope"] == "local" for n in r.json())
    r = api.get(f"/networks/{by_name['bridge']['Id']}")
    validate("/networks/{id}", "get", 200, r.body)
    assert r.json()["Name"] == "bridge"


def test_create_inspect_remove(api: ApiClient) -> None:
    r = api.post("/networks/create", json={
        "Name": "shop", "CheckDuplicate": True, "Driver": "bridge", "Internal": True,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.123.0.0/16", "IPRange": "10.123.5.0/24",
                                                   "Gateway": "10.123.0.254"}]},
        "Options": {"com.docker.network.driver.mtu": "1400"}, "Labels": {"team": "a"}})
    assert r.status == 201, r.body
    validate("/networks/create", "post", 201, r.body)
    created = r.json()
    assert created["Warning"] == "" and len(created["Id"]) == 64

    for key in ("shop", created["Id"], created["Id"][:12]):
        r = api.get(f"/networks/{key}")
        assert r.status == 200, key
        validate("/networks/{id}", "get", 200, r.body)
    net = r.json()
    assert net["Id"] == created["Id"] and net["Name"] == "shop" and net["Driver"] == "bridge"
    assert net["Internal"] is True and net["EnableIPv6"] is False
    assert net["IPAM"]["Config"] == [{"Subnet": "10.123.0.0/16", "Gateway": "10.123.0.254",
                                      "IPRange": "10.123.5.0/24"}]
    assert net["Labels"] == {"team": "a"} and net["Options"] == {"com.docker.network.driver.mtu": "1400"}
    assert net["Containers"] == {}

    r = api.post("/networks/create", json={"Name": "shop"})
    assert r.status == 409 and r.json() == {"message": "network with name shop already exists"}
    r = api.post("/networks/create", json={"Name": "auto"})            # a free subnet from the pools
    assert r.status == 201
    assert api.get("/networks/auto").json()["IPAM"]["Config"][0]["Subnet"]

    assert api.delete("/networks/shop").status == 204
    r = api.get("/networks/shop")
    assert r.status == 404
    validate("/networks/{id}", "get", 404, r.body)
    assert r.json() == {"message": "network shop not found"}
    assert api.delete("/networks/shop").status == 404


def test_create_refusals(api: ApiClient) -> None:
    r = api.post("/networks/create", json={"Name": "x", "Driver": "overlay"})
    assert r.status == 404 and r.json() == {"message": 'plugin "overlay" not found'}
    r = api.post("/networks/create", json={"Driver": "bridge"})
    assert r.status == 400
    r = api.post("/networks/create", json={"Name": "v6", "EnableIPv6": True})
    assert r.status == 400
    r = api.post("/networks/create", json={"Name": "two", "IPAM": {"Config": [{"Subnet": "10.9.0.0/24"},
                                                                              {"Subnet": "10.10.0.0/24"}]}})
    assert r.status == 400
    r = api.post("/networks/create", json={"Name": "host"})
    assert r.status == 409
    r = api.delete("/networks/bridge")
    assert r.status == 403
    validate("/networks/{id}", "delete", 403, r.body)
    assert r.json() == {"message": "bridge is a pre-defined network and cannot be removed"}


def test_list_filters(api: ApiClient) -> None:
    a = api.post("/networks/create", json={"Name": "front-net", "Labels": {"tier": "front"}}).json()["Id"]
    api.post("/networks/create", json={"Name": "back-net", "Labels": {"tier": "back"}})

    def names(**kw: list[str]) -> list[str]:
        r = api.get("/networks", params=filters(**kw))
        assert r.status == 200, r.body
        return sorted(n["Name"] for n in r.json())

    assert names(name=["-net"]) == ["back-net", "front-net"]
    assert names(label=["tier=front"]) == ["front-net"]
    assert names(label=["tier"]) == ["back-net", "front-net"]
    assert names(id=[a[:10]]) == ["front-net"]
    assert names(type=["custom"]) == ["back-net", "front-net"]
    assert names(type=["builtin"]) == ["bridge", "host", "none"]
    assert names(driver=["host"]) == ["host"]
    assert names(dangling=["true"]) == ["back-net", "front-net"]
    r = api.get("/networks", params=filters(colour=["red"]))
    assert r.status == 400 and r.json() == {"message": "invalid filter 'colour'"}


def test_connect_disconnect(busybox, tmp_root) -> None:
    busybox("create", "--name", "c1", "busybox", "true")
    with ApiClient(Engine(tmp_root)) as api:
        api.post("/networks/create", json={"Name": "app", "IPAM": {"Config": [{"Subnet": "10.77.0.0/24"}]}})
        r = api.post("/networks/app/connect", json={
            "Container": "c1", "EndpointConfig": {"Aliases": ["db", "primary"],
                                                  "IPAMConfig": {"IPv4Address": "10.77.0.42"}}})
        assert r.status == 200, r.body
        settings = json.loads(busybox("inspect", "c1").stdout)[0]["NetworkSettings"]["Networks"]
        assert set(settings) == {"bridge", "app"}
        assert settings["app"]["Aliases"] == ["db", "primary"]
        r = api.post("/networks/app/connect", json={"Container": "c1"})
        assert r.status in (400, 409) and "already exists in network app" in r.json()["message"]
        r = api.post("/networks/app/connect", json={"Container": "nope"})
        assert r.status == 404
        validate("/networks/{id}/connect", "post", 404, r.body)
        r = api.post("/networks/nope/connect", json={"Container": "c1"})
        assert r.status == 404 and r.json() == {"message": "network nope not found"}

        # a network in use is not dangling and not pruned
        r = api.get("/networks", params=filters(dangling=["false"], type=["custom"]))
        assert [n["Name"] for n in r.json()] == ["app"]
        r = api.post("/networks/prune")
        validate("/networks/prune", "post", 200, r.body)
        assert r.json() == {"NetworksDeleted": None}

        r = api.post("/networks/app/disconnect", json={"Container": "c1", "Force": False})
        assert r.status == 200, r.body
        settings = json.loads(busybox("inspect", "c1").stdout)[0]["NetworkSettings"]["Networks"]
        assert set(settings) == {"bridge"}
        r = api.post("/networks/app/disconnect", json={"Container": "c1"})
        assert r.status == 404
        busybox("rm", "c1")


def test_prune_filters(api: ApiClient) -> None:
    api.post("/networks/create", json={"Name": "keep", "Labels": {"keep": "yes"}})
    api.post("/networks/create", json={"Name": "drop"})
    r = api.post("/networks/prune", params={"filters": json.dumps({"label!": {"keep": True}})})
    assert r.status == 200 and r.json() == {"NetworksDeleted": ["drop"]}
    r = api.post("/v1.43/networks/prune")
    assert r.json() == {"NetworksDeleted": ["keep"]}
    assert sorted(n["Name"] for n in api.get("/networks").json()) == ["bridge", "host", "none"]
