"""/images, /commit, /auth and /distribution over a real engine on a temporary data root, through
aiohttp's test client; bodies and stream messages are checked against the Engine API reference.
Pull, push, login and distribution run against dockyard's own registry (htpasswd) on loopback."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Dockyard, cleanup_root
from helpers.apiclient import ApiClient, Reply
from helpers.openapi import validate, validate_definition

from dockyard.engine import Engine


@pytest.fixture
def api(busybox: Dockyard, tmp_root: Path) -> Iterator[ApiClient]:
    """The API over a data root holding busybox:latest."""
    with ApiClient(Engine(tmp_root)) as client:
        yield client


@pytest.fixture
def other_api() -> Iterator[ApiClient]:
    """The API over a second, empty data root."""
    d = Path(tempfile.mkdtemp(prefix="dockyard-test-", dir="/var/tmp"))
    try:
        with ApiClient(Engine(d / "root")) as client:
            yield client
    finally:
        cleanup_root(d)


def filters(**kw: list[str]) -> dict[str, str]:
    return {"filters": json.dumps({k: {v: True for v in vs} for k, vs in kw.items()})}


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def stream_ok(reply: Reply, definition: str) -> list[dict]:
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    messages = reply.messages()
    for m in messages:
        validate_definition(definition, m)
    errors = [m for m in messages if "error" in m]
    assert not errors, errors
    return messages


# --- listing, inspecting, naming ------------------------------------------------------------------

def test_list_inspect_history(api: ApiClient) -> None:
    r = api.get("/v1.43/images/json")
    assert r.status == 200
    validate("/images/json", "get", 200, r.body)
    [img] = r.json()
    assert img["RepoTags"] == ["busybox:latest"] and img["Id"].startswith("sha256:")
    assert isinstance(img["Created"], int) and img["Size"] > 0 and img["Containers"] == -1
    assert img["SharedSize"] == -1 and img["ParentId"] == ""

    r = api.get("/images/busybox/json")
    validate("/images/{name}/json", "get", 200, r.body)
    inspected = r.json()
    assert inspected["Id"] == img["Id"] and inspected["RepoTags"] == ["busybox:latest"]
    assert api.get(f"/images/{img['Id']}/json").json()["Id"] == img["Id"]
    assert api.get(f"/images/{img['Id'][7:19]}/json").json()["Id"] == img["Id"]

    r = api.get("/images/nope/json")
    assert r.status == 404
    validate("/images/{name}/json", "get", 404, r.body)
    assert r.json() == {"message": "No such image: nope:latest"}

    r = api.get("/images/busybox:latest/history")
    validate("/images/{name}/history", "get", 200, r.body)
    history = r.json()
    assert history[0]["Id"] == img["Id"] and history[0]["Tags"] == ["busybox:latest"]
    assert all(isinstance(h["Created"], int) for h in history)


def test_tag_filters_and_remove(api: ApiClient) -> None:
    image_id = api.get("/images/busybox/json").json()["Id"]
    r = api.post("/images/busybox/tag", params={"repo": "127.0.0.1:5000/team/tools", "tag": "1.36"})
    assert r.status == 201, r.body
    assert api.post("/images/busybox/tag", params={"repo": "mine"}).status == 201
    r = api.post("/images/busybox/tag", params={"tag": "x"})
    assert r.status == 400
    r = api.post("/images/nope/tag", params={"repo": "x"})
    assert r.status == 404
    validate("/images/{name}/tag", "post", 404, r.body)

    # a name with slashes and a port reaches /images/{name}/json
    r = api.get("/images/127.0.0.1:5000/team/tools:1.36/json")
    assert r.status == 200 and r.json()["Id"] == image_id
    tags = api.get("/images/json").json()[0]["RepoTags"]
    assert sorted(tags) == ["127.0.0.1:5000/team/tools:1.36", "busybox:latest", "mine:latest"]
    r = api.get("/images/json", params=filters(reference=["mine"]))
    assert [i["RepoTags"] for i in r.json()] == [["mine:latest"]]
    r = api.get("/images/json", params=filters(reference=["nothing*"]))
    assert r.json() == []
    r = api.get("/images/json", params=filters(dangling=["true"]))
    assert r.json() == []
    r = api.get("/images/json", params=filters(bogus=["1"]))
    assert r.status == 400 and r.json() == {"message": "invalid filter 'bogus'"}

    r = api.delete(f"/images/{image_id}")
    assert r.status == 409
    validate("/images/{name}", "delete", 409, r.body)
    assert "image is referenced in multiple repositories" in r.json()["message"]
    r = api.delete("/images/127.0.0.1:5000/team/tools:1.36")
    validate("/images/{name}", "delete", 200, r.body)
    assert r.json() == [{"Untagged": "127.0.0.1:5000/team/tools:1.36"}]
    r = api.delete("/images/mine", params={"noprune": "1"})
    assert r.json() == [{"Untagged": "mine:latest"}]
    r = api.delete("/images/nope")
    assert r.status == 404 and r.json() == {"message": "No such image: nope:latest"}


def test_import_changes_prune_and_legacy_placeholders(api: ApiClient) -> None:
    tar = rootfs_tar({"hello.txt": b"hi\n"})
    r = api.post("/images/create", params=[("fromSrc", "-"), ("repo", "imported"), ("tag", "v1"),
                                           ("message", "from the API"), ("changes", "ENV COLOUR=blue"),
                                           ("changes", 'CMD ["cat", "/hello.txt"]')], data=tar)
    [msg] = stream_ok(r, "CreateImageInfo")
    assert msg["status"].startswith("sha256:")
    inspected = api.get("/images/imported:v1/json").json()
    assert inspected["Id"] == msg["status"] and inspected["Comment"] == "from the API"
    assert inspected["Config"]["Env"] == ["COLOUR=blue"] and inspected["Config"]["Cmd"] == ["cat", "/hello.txt"]

    # an untagged image: [] since API 1.43, <none> placeholders before
    r = api.post("/images/create", params={"fromSrc": "-"}, data=rootfs_tar({"other": b"x"}))
    dangling_id = stream_ok(r, "CreateImageInfo")[0]["status"]
    r = api.get("/images/json", params=filters(dangling=["true"]))
    assert [(i["Id"], i["RepoTags"], i["RepoDigests"]) for i in r.json()] == [(dangling_id, [], [])]
    r = api.get("/v1.41/images/json", params=filters(dangling=["true"]))
    assert [(i["RepoTags"], i["RepoDigests"]) for i in r.json()] == [(["<none>:<none>"], ["<none>@<none>"])]

    r = api.post("/images/prune")
    validate("/images/prune", "post", 200, r.body)
    report = r.json()
    assert report["ImagesDeleted"][0] == {"Deleted": dangling_id} and report["SpaceReclaimed"] > 0
    assert all(set(i) == {"Deleted"} for i in report["ImagesDeleted"])        # the image, then its layers
    assert api.post("/images/prune").json() == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    r = api.post("/images/prune", params=filters(dangling=["false"]))
    deleted = r.json()["ImagesDeleted"]
    assert {"Untagged": "imported:v1"} in deleted and {"Untagged": "busybox:latest"} in deleted

    r = api.post("/images/create", params={"fromSrc": "-"}, data=b"")
    assert r.status == 400 and "empty" in r.json()["message"]
    r = api.post("/images/create")
    assert r.status == 400


def test_save_load_round_trip(api: ApiClient, other_api: ApiClient) -> None:
    image_id = api.get("/images/busybox/json").json()["Id"]
    r = api.get("/images/get", params=[("names", "busybox")])
    assert r.status == 200 and r.headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.body)) as tf:
        names = tf.getnames()
    assert "manifest.json" in names and "index.json" in names
    assert api.get("/images/busybox/get").body == r.body

    loaded = stream_ok(other_api.post("/images/load", params={"quiet": "1"}, data=r.body,
                                      headers={"Content-Type": "application/x-tar"}), "BuildInfo")
    assert loaded == [{"stream": "Loaded image: busybox:latest\n"}]
    assert other_api.get("/images/busybox/json").json()["Id"] == image_id
    by_id = api.get(f"/images/{image_id}/get").body
    again = stream_ok(other_api.post("/images/load", data=by_id), "BuildInfo")
    assert again == [{"stream": f"Loaded image ID: {image_id}\n"}]

    r = api.get("/images/get", params=[("names", "busybox"), ("names", "nope")])
    assert r.status == 404 and r.json() == {"message": "No such image: nope:latest"}
    r = other_api.post("/images/load", data=b"this is no archive")
    assert r.status == 400 and r.json()["message"]


def test_commit(api: ApiClient, busybox: Dockyard) -> None:
    busybox("create", "--name", "box", "busybox", "sh", "-c", "true")
    r = api.post("/commit", params=[("container", "box"), ("repo", "committed"), ("tag", "1"),
                                    ("comment", "a message"), ("author", "Ann <ann@example.com>"),
                                    ("changes", "ENV MODE=test"), ("pause", "0")], json={})
    assert r.status == 201, r.body
    validate("/commit", "post", 201, r.body)
    image_id = r.json()["Id"]
    inspected = api.get("/images/committed:1/json").json()
    assert inspected["Id"] == image_id and inspected["Author"] == "Ann <ann@example.com>"
    assert "MODE=test" in inspected["Config"]["Env"] and inspected["Comment"] == "a message"
    r = api.post("/commit", params={"container": "nope"})
    assert r.status == 404
    validate("/commit", "post", 404, r.body)
    busybox("rm", "box")


def test_search_says_there_is_no_hub(api: ApiClient) -> None:
    r = api.get("/images/search", params={"term": "busybox"})
    assert r.status == 503 and "no Docker Hub" in r.json()["message"]


# --- registries -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(scratch: Path) -> Iterator[str]:
    """dockyard's registry with htpasswd auth (user alice, password s3cret) on loopback."""
    htpasswd = scratch / "htpasswd"
    subprocess.run([sys.executable, "-m", "dockyard", "registry", "user", "--htpasswd", str(htpasswd), "add",
                    "alice", "--password-stdin"], input=b"s3cret", check=True, capture_output=True)
    port = free_port()
    with open(scratch / "registry.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dockyard", "registry", "serve", "--root",
                                 str(scratch / "reg"), "--addr", f"127.0.0.1:{port}", "--auth", "htpasswd",
                                 "--htpasswd", str(htpasswd)], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (scratch / "registry.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the registry never listened"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def auth_header(username: str, password: str, server: str) -> dict[str, str]:
    doc = json.dumps({"username": username, "password": password, "serveraddress": server}).encode()
    return {"X-Registry-Auth": base64.urlsafe_b64encode(doc).decode().rstrip("=")}


def test_auth_push_pull_distribution(api: ApiClient, other_api: ApiClient, registry: str) -> None:
    r = api.post("/auth", json={"username": "alice", "password": "wrong", "serveraddress": registry})
    assert r.status == 401
    validate("/auth", "post", 401, r.body)
    assert r.json()["message"].startswith(f'Get "http://{registry}/v2/": unauthorized')
    r = api.post("/auth", json={"username": "alice", "password": "s3cret", "serveraddress": registry})
    assert r.status == 200, r.body
    validate("/auth", "post", 200, r.body)
    assert r.json() == {"Status": "Login Succeeded", "IdentityToken": ""}

    name = f"{registry}/team/bb"
    api.post("/images/busybox/tag", params={"repo": name, "tag": "v1"})
    # no credentials: the stream has started ("The push refers to ...") and ends with the error
    r = api.post(f"/images/{name}/push", params={"tag": "v1"})
    assert r.status == 200
    messages = r.messages()
    for m in messages:
        validate_definition("PushImageInfo", m)
    assert messages[0] == {"status": f"The push refers to repository [{name}]"}
    assert "unauthorized" in messages[-1]["error"]
    assert messages[-1]["errorDetail"]["message"] == messages[-1]["error"]

    alice = auth_header("alice", "s3cret", registry)
    messages = stream_ok(api.post(f"/images/{name}/push", params={"tag": "v1"}, headers=alice), "PushImageInfo")
    assert messages[0] == {"status": f"The push refers to repository [{name}]"}
    assert any(m.get("status") == "Pushed" and m["id"] for m in messages)
    [aux] = [m["aux"] for m in messages if "aux" in m]
    assert aux["Tag"] == "v1" and aux["Digest"].startswith("sha256:") and aux["Size"] > 0
    assert any(m.get("status") == f"v1: digest: {aux['Digest']} size: {aux['Size']}" for m in messages)
    r = api.post(f"/images/{registry}/nope/push", params={"tag": "v1"}, headers=alice)
    assert r.status == 404
    validate("/images/{name}/push", "post", 404, r.body)

    r = api.get(f"/distribution/{name}:v1/json", headers=alice)
    assert r.status == 200, r.body
    validate("/distribution/{name}/json", "get", 200, r.body)
    dist = r.json()
    assert dist["Descriptor"]["digest"] == aux["Digest"] and dist["Descriptor"]["size"] == aux["Size"]
    assert dist["Platforms"] == [{"architecture": "amd64", "os": "linux"}]

    r = other_api.post("/images/create", params={"fromImage": name, "tag": "v1"})
    assert r.status == 404    # as dockerd: a 401 would make the docker CLI prompt for a login
    assert r.json()["message"].startswith(f"pull access denied for {registry}/team/bb, repository does not exist "
                                          "or may require 'docker login': ")
    assert "unauthorized" in r.json()["message"]
    r = other_api.post("/images/create", params={"fromImage": f"{registry}/team/missing", "tag": "v1"},
                       headers=alice)
    assert r.status == 404, r.body
    validate("/images/create", "post", 404, r.body)

    messages = stream_ok(other_api.post("/images/create", params={"fromImage": name, "tag": "v1"},
                                        headers=alice), "CreateImageInfo")
    assert messages[0] == {"status": "Pulling from team/bb", "id": "v1"}
    layer_ids = {m["id"] for m in messages if m.get("status") == "Pulling fs layer"}
    assert layer_ids and all(m["progressDetail"] == {} for m in messages if m.get("status") == "Pulling fs layer")
    assert {m["id"] for m in messages if m.get("status") == "Pull complete"} == layer_ids
    downloading = [m for m in messages if m.get("status") == "Downloading"]
    assert all(0 < m["progressDetail"]["current"] <= m["progressDetail"]["total"] for m in downloading)
    assert messages[-2] == {"status": f"Digest: {aux['Digest']}"}
    assert messages[-1] == {"status": f"Status: Downloaded newer image for {name}:v1"}
    pulled = other_api.get(f"/images/{name}:v1/json").json()
    assert pulled["Id"] == api.get("/images/busybox/json").json()["Id"]
    assert pulled["RepoDigests"] == [f"{name}@{aux['Digest']}"]

    # by digest (dockerd's tag parameter may hold one), and again: up to date
    messages = stream_ok(other_api.post("/images/create", params={"fromImage": name, "tag": aux["Digest"]},
                                        headers=alice), "CreateImageInfo")
    assert messages[-1] == {"status": f"Status: Image is up to date for {name}@{aux['Digest']}"}
