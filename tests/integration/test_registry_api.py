"""The registry API, endpoint by endpoint, against the OCI distribution spec v1.1.

Each test starts the registry in-process (``make_app`` on a real socket, 127.0.0.1, a free port,
served by an event loop on a thread) over its own temporary filesystem root, and talks plain
HTTP to it with ``requests`` (or ``http.client`` where a path must reach the server unaltered).
The spec's expectations are asserted literally: status codes, headers, error codes and bodies.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web

from dockyard.errors import InvalidArgument, NotFound, PermissionDenied
from dockyard.oci import mediatypes as mt
from dockyard.registry.app import REGISTRY, make_app
from dockyard.registry.auth import Grant, Unauthenticated
from dockyard.registry.config import GCConfig
from dockyard.registry.gc import collect
from dockyard.registry.storage.filesystem import FilesystemStorage
from dockyard.registry.storage.layout import Layout

EMPTY_CONFIG = b"{}"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Server:
    """The registry app served on 127.0.0.1:<free port> by an event loop on a thread."""

    def __init__(self, root: Path, config: dict[str, Any] | None = None, authorizer: Any = None) -> None:
        self.root = root
        cfg = {"storage": {"root": str(root), "fsync": False}, **(config or {})}
        self.app = make_app(cfg, authorizer=authorizer)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (to reach the layout directly)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    # --- client helpers ----------------------------------------------------------------------

    def push_blob(self, repo: str, data: bytes) -> str:
        d = sha(data)
        r = requests.post(f"{self.url}/v2/{repo}/blobs/uploads/", params={"digest": d}, data=data)
        assert r.status_code == 201, r.text
        return d

    def manifest(self, repo: str, layers: list[bytes], config: bytes = EMPTY_CONFIG,
                 media_type: str = mt.OCI_MANIFEST, config_type: str = mt.OCI_CONFIG, **extra: Any) -> bytes:
        cd = self.push_blob(repo, config)
        layer_type = mt.OCI_LAYER_GZIP if media_type == mt.OCI_MANIFEST else mt.DOCKER_LAYER_GZIP
        descs = [{"mediaType": layer_type, "digest": self.push_blob(repo, b), "size": len(b)} for b in layers]
        doc = {"schemaVersion": 2, "mediaType": media_type,
               "config": {"mediaType": config_type, "digest": cd, "size": len(config)}, "layers": descs, **extra}
        return json.dumps(doc).encode()

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str = mt.OCI_MANIFEST) -> requests.Response:
        return requests.put(f"{self.url}/v2/{repo}/manifests/{ref}", data=body,
                            headers={"Content-Type": media_type})

    def push_image(self, repo: str, tag: str, layers: list[bytes] | None = None, **kw: Any) -> tuple[str, bytes]:
        body = self.manifest(repo, layers if layers is not None else [os.urandom(64)], **kw)
        r = self.put_manifest(repo, tag, body, kw.get("media_type", mt.OCI_MANIFEST))
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"], body


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "store")
    try:
        yield s
    finally:
        s.stop()


def error_code(r: requests.Response | Any) -> str:
    body = r.json() if hasattr(r, "json") else json.loads(r)
    assert set(body) == {"errors"} and body["errors"], body
    for e in body["errors"]:
        assert {"code", "message"} <= set(e)
    return body["errors"][0]["code"]


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


# --- base ----------------------------------------------------------------------------------------

def test_base_and_health(reg: Server) -> None:
    r = requests.get(f"{reg.url}/v2/")
    assert r.status_code == 200 and r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert requests.get(f"{reg.url}/v2").status_code == 200
    h = requests.get(f"{reg.url}/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    r = requests.request("PATCH", f"{reg.url}/v2/")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"


# --- blobs and uploads ---------------------------------------------------------------------------

def test_post_then_put_and_blob_get_head(reg: Server) -> None:
    data = os.urandom(100_000)
    d = sha(data)
    r = requests.post(f"{reg.url}/v2/team/app/blobs/uploads/")
    assert r.status_code == 202 and r.headers["Range"] == "0-0"
    loc = r.headers["Location"]
    assert loc.startswith("/v2/team/app/blobs/uploads/") and r.headers["Docker-Upload-UUID"] in loc
    r = requests.put(f"{reg.url}{loc}", params={"digest": d}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/team/app/blobs/{d}" and r.headers["Docker-Content-Digest"] == d
    g = requests.get(f"{reg.url}/v2/team/app/blobs/{d}")
    assert g.status_code == 200 and g.content == data and g.headers["Docker-Content-Digest"] == d
    h = requests.head(f"{reg.url}/v2/team/app/blobs/{d}")
    assert h.status_code == 200 and h.headers["Content-Length"] == str(len(data)) and not h.content
    # stored once, content-addressed, and the upload is gone
    hexd = d.split(":")[1]
    assert (reg.root / "blobs/sha256" / hexd[:2] / hexd / "data").read_bytes() == data
    assert not list((reg.root / "repositories/team/app").glob("_uploads/*"))


def test_single_post_and_empty_blob(reg: Server) -> None:
    d = reg.push_blob("a", b"")
    assert requests.get(f"{reg.url}/v2/a/blobs/{d}").content == b""
    d2 = reg.push_blob("a", b"x" * 10)
    assert requests.head(f"{reg.url}/v2/a/blobs/{d2}").headers["Content-Length"] == "10"


def test_chunked_upload_with_out_of_order_chunk_and_status(reg: Server) -> None:
    data = os.urandom(300_000)
    loc = requests.post(f"{reg.url}/v2/chunks/blobs/uploads/", headers={"Content-Length": "0"}).headers["Location"]
    r = requests.patch(f"{reg.url}{loc}", data=data[:100_000],
                       headers={"Content-Range": "0-99999", "Content-Type": "application/octet-stream"})
    assert r.status_code == 202 and r.headers["Range"] == "0-99999"
    loc = r.headers["Location"]
    bad = requests.patch(f"{reg.url}{loc}", data=data[150_000:200_000], headers={"Content-Range": "150000-199999"})
    assert bad.status_code == 416 and error_code(bad) == "RANGE_INVALID" and bad.headers["Range"] == "0-99999"
    st = requests.get(f"{reg.url}{loc}")
    assert st.status_code == 204 and st.headers["Range"] == "0-99999" and st.headers["Location"] == loc
    r = requests.patch(f"{reg.url}{loc}", data=data[100_000:200_000], headers={"Content-Range": "100000-199999"})
    assert r.status_code == 202 and r.headers["Range"] == "0-199999"
    # the last chunk comes with the closing PUT
    r = requests.put(f"{reg.url}{loc}", params={"digest": sha(data)}, data=data[200_000:],
                     headers={"Content-Range": "200000-299999"})
    assert r.status_code == 201, r.text
    assert requests.get(f"{reg.url}/v2/chunks/blobs/{sha(data)}").content == data


def test_streamed_patch_without_content_range(reg: Server) -> None:
    data = os.urandom(9 << 20)           # more than one 4 MiB batch
    loc = requests.post(f"{reg.url}/v2/s/blobs/uploads/").headers["Location"]

    def gen() -> Iterator[bytes]:
        for i in range(0, len(data), 1 << 20):
            yield data[i:i + (1 << 20)]

    r = requests.patch(f"{reg.url}{loc}", data=gen())
    assert r.status_code == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = requests.put(f"{reg.url}{r.headers['Location']}", params={"digest": sha(data)})
    assert r.status_code == 201
    assert hashlib.sha256(requests.get(f"{reg.url}/v2/s/blobs/{sha(data)}").content).hexdigest() == sha(data)[7:]


def test_put_verifies_when_hash_state_is_gone(reg: Server) -> None:
    """Another process (or a restart) finishing the upload re-reads it to check the digest."""
    data = os.urandom(50_000)
    loc = requests.post(f"{reg.url}/v2/x/blobs/uploads/").headers["Location"]
    requests.patch(f"{reg.url}{loc}", data=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    reg.app[REGISTRY].hashes._states.clear()
    r = requests.put(f"{reg.url}{loc}", params={"digest": sha(data)})
    assert r.status_code == 201


def test_digest_mismatch_stores_nothing(reg: Server) -> None:
    data = os.urandom(1000)
    wrong = sha(b"something else")
    r = requests.post(f"{reg.url}/v2/m/blobs/uploads/", params={"digest": wrong}, data=data)
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    loc = requests.post(f"{reg.url}/v2/m/blobs/uploads/").headers["Location"]
    r = requests.put(f"{reg.url}{loc}", params={"digest": wrong}, data=data)
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert not (reg.root / "blobs").exists() or not files_under(reg.root / "blobs")
    assert not any("_uploads" in f for f in files_under(reg.root))
    assert requests.head(f"{reg.url}/v2/m/blobs/{sha(data)}").status_code == 404
    # the upload is gone too
    assert requests.get(f"{reg.url}{loc}").status_code == 404


def test_put_without_or_with_bad_digest(reg: Server) -> None:
    loc = requests.post(f"{reg.url}/v2/m/blobs/uploads/").headers["Location"]
    r = requests.put(f"{reg.url}{loc}", data=b"abc")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = requests.put(f"{reg.url}{loc}", params={"digest": "sha256:zz"}, data=b"abc")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = requests.post(f"{reg.url}/v2/m/blobs/uploads/", params={"digest": "md5:abc"}, data=b"abc")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_cancel_and_unknown_uploads(reg: Server) -> None:
    loc = requests.post(f"{reg.url}/v2/c/blobs/uploads/").headers["Location"]
    requests.patch(f"{reg.url}{loc}", data=b"partial")
    r = requests.delete(f"{reg.url}{loc}")
    assert r.status_code == 204
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = requests.request(method, f"{reg.url}{loc}", params={"digest": sha(b"")} if method == "PUT" else None)
        assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN", method
    r = requests.get(f"{reg.url}/v2/c/blobs/uploads/not-a-uuid")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"


def test_blob_ranges(reg: Server) -> None:
    data = bytes(range(256)) * 40
    d = reg.push_blob("r", data)
    url = f"{reg.url}/v2/r/blobs/{d}"
    cases = {"bytes=0-9": (0, 9), "bytes=100-": (100, len(data) - 1), "bytes=-5": (len(data) - 5, len(data) - 1),
             "bytes=10-999999": (10, len(data) - 1)}
    for header, (start, end) in cases.items():
        r = requests.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == data[start:end + 1]
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    for header in ("bytes=20000-", "bytes=5-2", "bytes=-0", "bytes=x-y"):
        r = requests.get(url, headers={"Range": header})
        assert r.status_code == 416 and error_code(r) == "RANGE_INVALID", header
        assert r.headers["Content-Range"] == f"bytes */{len(data)}"
    assert requests.get(url, headers={"Range": "bytes=0-1,5-6"}).status_code == 200
    assert requests.get(url, headers={"Range": "items=0-1"}).content == data
    assert requests.head(url, headers={"Range": "bytes=0-9"}).headers["Content-Length"] == "10"


def test_blob_unknown_and_not_linked(reg: Server) -> None:
    d = reg.push_blob("one", b"private bytes")
    r = requests.get(f"{reg.url}/v2/two/blobs/{d}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    r = requests.head(f"{reg.url}/v2/one/blobs/{sha(b'nope')}")
    assert r.status_code == 404 and not r.content
    r = requests.get(f"{reg.url}/v2/one/blobs/sha256:1234")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_mounts(reg: Server) -> None:
    d = reg.push_blob("src/repo", b"shared layer")
    r = requests.post(f"{reg.url}/v2/dst/blobs/uploads/", params={"mount": d, "from": "src/repo"})
    assert r.status_code == 201 and r.headers["Location"] == f"/v2/dst/blobs/{d}"
    assert requests.get(f"{reg.url}/v2/dst/blobs/{d}").content == b"shared layer"
    # from a repository that does not have it: an ordinary upload starts
    r = requests.post(f"{reg.url}/v2/dst2/blobs/uploads/", params={"mount": d, "from": "elsewhere"})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]
    # unknown blob: upload session
    r = requests.post(f"{reg.url}/v2/dst2/blobs/uploads/", params={"mount": sha(b"unknown")})
    assert r.status_code == 202
    # mount without from: the registry knows the blob (auth none: everything is pullable)
    r = requests.post(f"{reg.url}/v2/dst3/blobs/uploads/", params={"mount": d})
    assert r.status_code == 201
    assert requests.head(f"{reg.url}/v2/dst3/blobs/{d}").status_code == 200


# --- manifests -----------------------------------------------------------------------------------

def test_manifest_put_get_head_by_tag_and_digest(reg: Server) -> None:
    body = reg.manifest("team/app", [b"layer-1", b"layer-2"])
    r = reg.put_manifest("team/app", "v1", body)
    assert r.status_code == 201
    d = sha(body)
    assert r.headers["Docker-Content-Digest"] == d and r.headers["Location"] == f"/v2/team/app/manifests/{d}"
    for ref in ("v1", d):
        g = requests.get(f"{reg.url}/v2/team/app/manifests/{ref}", headers={"Accept": mt.OCI_MANIFEST})
        assert g.status_code == 200 and g.content == body
        assert g.headers["Content-Type"] == mt.OCI_MANIFEST and g.headers["Docker-Content-Digest"] == d
        h = requests.head(f"{reg.url}/v2/team/app/manifests/{ref}")
        assert h.status_code == 200 and h.headers["Content-Length"] == str(len(body)) and not h.content
    r = requests.get(f"{reg.url}/v2/team/app/manifests/v2")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    # PUT by digest, and the manifest can be read as a blob of the repository too
    assert reg.put_manifest("team/app", d, body).status_code == 201
    assert requests.get(f"{reg.url}/v2/team/app/blobs/{d}").content == body


def test_docker_schema2_and_indexes(reg: Server) -> None:
    d1, b1 = reg.push_image("multi", "amd64", media_type=mt.DOCKER_MANIFEST, config_type=mt.DOCKER_CONFIG)
    d2, b2 = reg.push_image("multi", "arm64")
    g = requests.get(f"{reg.url}/v2/multi/manifests/amd64", headers={"Accept": mt.DOCKER_MANIFEST})
    assert g.headers["Content-Type"] == mt.DOCKER_MANIFEST
    for index_type, child_type in ((mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST), (mt.OCI_INDEX, mt.OCI_MANIFEST)):
        index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": [
            {"mediaType": child_type, "digest": d1, "size": len(b1), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": mt.OCI_MANIFEST, "digest": d2, "size": len(b2), "platform": {"os": "linux", "architecture": "arm64"}},
        ]}).encode()
        r = reg.put_manifest("multi", "latest", index, index_type)
        assert r.status_code == 201, r.text
        g = requests.get(f"{reg.url}/v2/multi/manifests/latest", headers={"Accept": index_type})
        assert g.headers["Content-Type"] == index_type and g.content == index
    # an index whose child is not in the repository
    missing = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": sha(b"nope"), "size": 4}]}).encode()
    r = reg.put_manifest("multi", "broken", missing, mt.OCI_INDEX)
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_accept_negotiation(reg: Server) -> None:
    reg.push_image("neg", "v1")
    r = requests.get(f"{reg.url}/v2/neg/manifests/v1", headers={"Accept": mt.DOCKER_MANIFEST})
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    for accept in ("*/*", f"{mt.DOCKER_MANIFEST}, {mt.OCI_MANIFEST}", ""):
        assert requests.get(f"{reg.url}/v2/neg/manifests/v1", headers={"Accept": accept}).status_code == 200


def test_malformed_manifests(reg: Server) -> None:
    good = json.loads(reg.manifest("bad", [b"l"]))
    cases: list[tuple[bytes, str, str, int]] = [
        (b"{not json", mt.OCI_MANIFEST, "MANIFEST_INVALID", 400),
        (b"[]", mt.OCI_MANIFEST, "MANIFEST_INVALID", 400),
        (b"[" * 100_000, mt.OCI_MANIFEST, "MANIFEST_INVALID", 400),                     # never a 500
        (json.dumps({**good, "config": None}).encode(), mt.OCI_MANIFEST, "MANIFEST_INVALID", 400),
        (json.dumps({**good, "schemaVersion": 1}).encode(), mt.OCI_MANIFEST, "MANIFEST_INVALID", 400),
        (json.dumps({**good, "layers": [{"mediaType": mt.OCI_LAYER, "digest": "sha256:xyz", "size": 1}]}).encode(),
         mt.OCI_MANIFEST, "MANIFEST_INVALID", 400),
        (json.dumps(good).encode(), mt.DOCKER_MANIFEST, "MANIFEST_INVALID", 400),         # type disagrees
        (json.dumps(good).encode(), "text/html", "MANIFEST_INVALID", 400),               # wrong media type
        (json.dumps({**good, "mediaType": "application/x-foo"}).encode(), "application/json", "MANIFEST_INVALID", 400),
        (json.dumps({**good, "layers": [{"mediaType": mt.OCI_LAYER, "digest": sha(b"absent"), "size": 6}]}).encode(),
         mt.OCI_MANIFEST, "MANIFEST_BLOB_UNKNOWN", 400),
    ]
    for body, ctype, code, status in cases:
        r = reg.put_manifest("bad", "t", body, ctype)
        assert (r.status_code, error_code(r)) == (status, code), body[:80]
    body = json.dumps(good).encode()
    r = reg.put_manifest("bad", sha(b"other"), body)
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = reg.put_manifest("bad", "-bad-tag", body)
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"
    big = json.dumps({**good, "annotations": {"pad": "x" * (4 << 20)}}).encode()
    r = reg.put_manifest("bad", "big", big)
    assert r.status_code == 413 and error_code(r) == "MANIFEST_INVALID"
    assert requests.get(f"{reg.url}/v2/bad/manifests/t").status_code == 404
    assert requests.get(f"{reg.url}/v2/bad/tags/list").json()["tags"] == []


def test_delete_manifests_tags_and_blobs(reg: Server) -> None:
    d, body = reg.push_image("del", "v1", [b"layer"])
    reg.put_manifest("del", "v2", body)
    r = requests.delete(f"{reg.url}/v2/del/manifests/v1")
    assert r.status_code == 202
    assert requests.get(f"{reg.url}/v2/del/manifests/v1").status_code == 404
    assert requests.get(f"{reg.url}/v2/del/manifests/v2").status_code == 200
    r = requests.delete(f"{reg.url}/v2/del/manifests/{d}")
    assert r.status_code == 202
    for ref in ("v2", d):
        r = requests.get(f"{reg.url}/v2/del/manifests/{ref}")
        assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = requests.delete(f"{reg.url}/v2/del/manifests/{d}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    ld = sha(b"layer")
    assert requests.delete(f"{reg.url}/v2/del/blobs/{ld}").status_code == 202
    r = requests.get(f"{reg.url}/v2/del/blobs/{ld}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    assert requests.delete(f"{reg.url}/v2/del/blobs/{ld}").status_code == 404


# --- discovery -----------------------------------------------------------------------------------

def test_tags_list_pagination(reg: Server) -> None:
    _, body = reg.push_image("pages", "a")
    for tag in ("e", "c", "b", "d", "B"):
        assert reg.put_manifest("pages", tag, body).status_code == 201
    all_tags = requests.get(f"{reg.url}/v2/pages/tags/list").json()
    assert all_tags == {"name": "pages", "tags": ["B", "a", "b", "c", "d", "e"]}
    seen: list[str] = []
    url: str | None = f"{reg.url}/v2/pages/tags/list?n=2"
    while url:
        r = requests.get(url)
        page = r.json()["tags"]
        assert len(page) <= 2
        seen += page
        link = r.headers.get("Link")
        url = reg.url + link.split(">")[0].lstrip("<") if link else None
        if link:
            assert link.endswith('rel="next"')
    assert seen == all_tags["tags"]
    assert requests.get(f"{reg.url}/v2/pages/tags/list?n=3&last=b").json()["tags"] == ["c", "d", "e"]
    assert requests.get(f"{reg.url}/v2/pages/tags/list?last=d").json()["tags"] == ["e"]
    z = requests.get(f"{reg.url}/v2/pages/tags/list?n=0")
    assert z.json()["tags"] == [] and "Link" not in z.headers
    r = requests.get(f"{reg.url}/v2/pages/tags/list?n=-1")
    assert r.status_code == 400
    r = requests.get(f"{reg.url}/v2/nothing/here/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


def test_catalog_pagination(reg: Server) -> None:
    names = ["a", "b/c", "b/c/d", "z-z", "m.n"]
    for n in names:
        reg.push_blob(n, b"x")
    assert requests.get(f"{reg.url}/v2/_catalog").json() == {"repositories": sorted(names)}
    r = requests.get(f"{reg.url}/v2/_catalog?n=2")
    assert r.json()["repositories"] == ["a", "b/c"]
    assert r.headers["Link"] == '</v2/_catalog?n=2&last=b%2Fc>; rel="next"'
    r = requests.get(f"{reg.url}/v2/_catalog?n=2&last=b%2Fc")
    assert r.json()["repositories"] == ["b/c/d", "m.n"]


def test_referrers(reg: Server) -> None:
    subject, subject_body = reg.push_image("ref", "v1")
    sdesc = {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": len(subject_body)}
    sbom = reg.manifest("ref", [b"sbom"], artifactType="application/vnd.example.sbom", subject=sdesc,
                        annotations={"org.example": "1"})
    r = reg.put_manifest("ref", sha(sbom), sbom)
    assert r.status_code == 201 and r.headers["OCI-Subject"] == subject
    sig = reg.manifest("ref", [b"sig"], config=b'{"sig":1}', config_type="application/vnd.example.sig.config",
                       subject=sdesc)
    assert reg.put_manifest("ref", sha(sig), sig).status_code == 201
    r = requests.get(f"{reg.url}/v2/ref/referrers/{subject}")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(mt.OCI_INDEX)
    idx = r.json()
    assert idx["schemaVersion"] == 2 and idx["mediaType"] == mt.OCI_INDEX
    by_type = {m["artifactType"]: m for m in idx["manifests"]}
    assert set(by_type) == {"application/vnd.example.sbom", "application/vnd.example.sig.config"}
    assert by_type["application/vnd.example.sbom"] == {
        "mediaType": mt.OCI_MANIFEST, "digest": sha(sbom), "size": len(sbom),
        "artifactType": "application/vnd.example.sbom", "annotations": {"org.example": "1"}}
    f = requests.get(f"{reg.url}/v2/ref/referrers/{subject}", params={"artifactType": "application/vnd.example.sbom"})
    assert f.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in f.json()["manifests"]] == [sha(sbom)]
    assert requests.delete(f"{reg.url}/v2/ref/manifests/{sha(sbom)}").status_code == 202
    assert [m["digest"] for m in requests.get(f"{reg.url}/v2/ref/referrers/{subject}").json()["manifests"]] == [sha(sig)]
    empty = requests.get(f"{reg.url}/v2/unknown/referrers/{subject}")
    assert empty.status_code == 200 and empty.json()["manifests"] == []
    r = requests.get(f"{reg.url}/v2/ref/referrers/sha256:nothex")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


# --- hostile input -------------------------------------------------------------------------------

def raw_request(server: Server, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``path`` exactly as written (no client-side normalisation of .. or %2e)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body or None)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_hostile_names_never_leave_the_store(reg: Server, tmp_path: Path) -> None:
    before = files_under(tmp_path)
    d = sha(b"evil")
    names = ["..", "../../etc", "a/../../b", "UPPER", "a" * 300, "a/" * 150 + "a", "%2e%2e/x", "a//b",
             "-lead", "a/_manifests", ".hidden", "a\\b", "a%00b", "a%2F..%2F..%2Fb"]
    for name in names:
        for method, suffix in (("GET", "/manifests/latest"), ("PUT", "/manifests/latest"),
                               ("POST", f"/blobs/uploads/?digest={d}"), ("GET", "/tags/list"),
                               ("GET", f"/blobs/{d}"), ("DELETE", f"/blobs/{d}")):
            status, body = raw_request(reg, method, f"/v2/{name}{suffix}", b"evil" if method != "GET" else b"")
            assert status in (400, 404), (name, method, status, body)
            if status == 400:
                assert json.loads(body)["errors"][0]["code"] in ("NAME_INVALID", "MANIFEST_INVALID"), (name, body)
    assert raw_request(reg, "GET", f"/v2/{'a' * 300}/tags/list")[0] == 400
    assert json.loads(raw_request(reg, "GET", "/v2/UPPER/tags/list")[1])["errors"][0]["code"] == "NAME_INVALID"
    after = files_under(tmp_path)
    assert {f for f in after - before if not f.startswith("store/")} == set()
    assert not (reg.root / "repositories").exists() or not files_under(reg.root / "repositories")


def test_filesystem_driver_refuses_escaping_paths(tmp_path: Path) -> None:
    fs = FilesystemStorage(tmp_path / "root")

    async def main() -> None:
        for bad in ("../x", "/etc/passwd", "a/../../x", "a//b", "", "a/./b", "_tmp/x", "a\\b", "a\x00b"):
            with pytest.raises(InvalidArgument):
                await fs.put_bytes(bad, b"x")
            with pytest.raises(InvalidArgument):
                await fs.stat(bad)
        await fs.put_bytes("a/b/c", b"123")
        w = await fs.writer("a/b/c", append=True)
        await w.write(b"456")
        await w.cancel()                       # a cut-off chunk leaves nothing behind
        assert await fs.read_bytes("a/b/c") == b"123"
        w = await fs.writer("a/b/c", append=True)
        await w.write(b"456")
        await w.commit()
        assert b"".join([c async for c in fs.reader("a/b/c", 2, 3)]) == b"345"
        w = await fs.writer("new/file")
        await w.write(b"x")
        with pytest.raises(NotFound):          # invisible until committed
            await fs.stat("new/file")
        await w.commit()
        assert (await fs.stat("new/file")).size == 1
        await fs.delete("a")
        with pytest.raises(NotFound):
            await fs.list("a")
        assert await fs.list("") == ["new"]    # empty parents pruned, temp dir hidden

    asyncio.run(main())
    assert not (tmp_path / "x").exists()


# --- policy, operations --------------------------------------------------------------------------

def test_immutable_tags_and_retention(tmp_path: Path) -> None:
    s = Server(tmp_path / "store", {"rules": [
        {"repositories": "prod/**", "tags": "v*", "immutable": True},
        {"repositories": "ci/*", "keep": 2}]})
    try:
        d1, b1 = s.push_image("prod/app", "v1")
        _, b2 = s.push_image("prod/app", "latest")
        assert s.put_manifest("prod/app", "v1", b1).status_code == 201          # same digest: fine
        r = s.put_manifest("prod/app", "v1", b2)
        assert r.status_code == 403 and error_code(r) == "DENIED"
        assert s.put_manifest("prod/app", "latest", b1).status_code == 201      # not matched: mutable
        assert requests.delete(f"{s.url}/v2/prod/app/manifests/v1").status_code == 403
        assert requests.delete(f"{s.url}/v2/prod/app/manifests/{d1}").status_code == 403
        for i in range(4):
            s.push_image("ci/app", f"build-{i}")
            time.sleep(0.02)
        assert requests.get(f"{s.url}/v2/ci/app/tags/list").json()["tags"] == ["build-2", "build-3"]
    finally:
        s.stop()


def test_metrics_and_access_log(reg: Server, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dockyard.registry.access"):
        reg.push_image("met", "v1")
        requests.get(f"{reg.url}/v2/met/manifests/v1")
        requests.get(f"{reg.url}/v2/met/manifests/nope")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "dockyard.registry.access"]
    assert any(line["route"] == "manifest" and line["status"] == 404 and line["repository"] == "met" for line in lines)
    text = requests.get(f"{reg.url}/metrics").text
    assert 'dockyard_registry_http_requests_total{route="manifest",method="GET",status="200"} 1' in text
    assert 'dockyard_registry_http_request_duration_seconds_bucket{route="manifest",method="PUT",le="+Inf"} 1' in text
    assert "# TYPE dockyard_registry_http_request_duration_seconds histogram" in text


def test_webhooks_retry_until_delivered(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    attempts = []

    async def hook(request: web.Request) -> web.Response:
        attempts.append(1)
        if len(attempts) == 1:
            return web.Response(status=503)
        received.extend((await request.json())["events"])
        return web.Response()

    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook)
    receiver = Server.__new__(Server)
    receiver.app = hook_app
    receiver.loop = asyncio.new_event_loop()
    receiver.thread = threading.Thread(target=receiver.loop.run_forever, daemon=True)
    receiver.thread.start()
    receiver.sock = socket.socket()
    receiver.sock.bind(("127.0.0.1", 0))
    receiver.port = receiver.sock.getsockname()[1]
    asyncio.run_coroutine_threadsafe(receiver._start(), receiver.loop).result(10)
    s = Server(tmp_path / "store", {"notifications": {"endpoints": [
        {"url": f"http://127.0.0.1:{receiver.port}/hook", "backoff": "50ms", "attempts": 5}]}})
    try:
        d, _ = s.push_image("hooked", "v1")
        requests.delete(f"{s.url}/v2/hooked/manifests/v1")
        deadline = time.time() + 10
        while len(received) < 2 and time.time() < deadline:
            time.sleep(0.05)
        actions = [(e["action"], e["target"].get("tag"), e["target"]["repository"]) for e in received]
        assert actions == [("push", "v1", "hooked"), ("delete", "v1", "hooked")]
        assert received[0]["target"]["digest"] == d and len(attempts) >= 2
    finally:
        s.stop()
        receiver.stop()


class Gatekeeper:
    """A test authorizer: anonymous callers may pull ``public/*``; ``Bearer ok`` may do anything."""

    async def authorize(self, request: Any, access: Any) -> Grant:
        if request.headers.get("Authorization") == "Bearer ok":
            return Grant("tester", tuple(access))
        if all(a.type == "repository" and a.name.startswith("public/") and a.action == "pull" for a in access) and access:
            return Grant("", tuple(access))
        if request.headers.get("Authorization"):
            raise PermissionDenied("not allowed")
        raise Unauthenticated(challenge='Bearer realm="http://auth.test/token",service="test"')


def test_authorisation_in_the_dispatcher(tmp_path: Path) -> None:
    s = Server(tmp_path / "store", authorizer=Gatekeeper())
    ok = {"Authorization": "Bearer ok"}
    try:
        r = requests.get(f"{s.url}/v2/")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer realm=")
        assert error_code(r) == "UNAUTHORIZED"
        r = requests.get(f"{s.url}/v2/private/x/tags/list")
        assert r.status_code == 401 and r.json()["errors"][0]["detail"] == [
            {"Type": "repository", "Name": "private/x", "Action": "pull"}]
        r = requests.get(f"{s.url}/v2/_catalog", headers={"Authorization": "Bearer bad"})
        assert r.status_code == 403 and error_code(r) == "DENIED"
        d = sha(b"secret")
        r = requests.post(f"{s.url}/v2/private/x/blobs/uploads/", params={"digest": d}, data=b"secret", headers=ok)
        assert r.status_code == 201
        r = requests.post(f"{s.url}/v2/public/y/blobs/uploads/", params={"digest": d}, data=b"secret")
        assert r.status_code == 401                                             # push needs credentials
        # mounting needs pull on the source; mount without from finds only pullable repositories
        hdr = {"Authorization": "Bearer bad"}
        r = requests.post(f"{s.url}/v2/public/y/blobs/uploads/", params={"mount": d, "from": "private/x"}, headers=hdr)
        assert r.status_code == 403
        r = requests.get(f"{s.url}/v2/public/y/tags/list")
        assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"         # allowed, just unknown
    finally:
        s.stop()


def test_gc_dry_run_real_run_and_stale_uploads(reg: Server) -> None:
    reg.push_image("gc", "keep", [b"kept-layer"])
    drop_d, _ = reg.push_image("gc", "drop", [b"dropped-layer"])
    requests.delete(f"{reg.url}/v2/gc/manifests/{drop_d}")
    loc = requests.post(f"{reg.url}/v2/gc/blobs/uploads/").headers["Location"]
    requests.patch(f"{reg.url}{loc}", data=b"abandoned")
    layout: Layout = reg.app[REGISTRY].layout
    cfg = GCConfig(grace_period=0, upload_max_age=0)
    dry = reg.run(collect(layout, cfg, dry_run=True, now=time.time() + 1))
    freed = {d for d, _ in dry.deleted_blobs}
    assert freed == {drop_d, sha(b"dropped-layer")}
    assert len(dry.deleted_uploads) == 1
    assert requests.head(f"{reg.url}/v2/gc/blobs/{sha(b'dropped-layer')}").status_code == 200  # nothing changed
    real = reg.run(collect(layout, cfg, now=time.time() + 1))
    assert {d for d, _ in real.deleted_blobs} == freed and real.freed_bytes > 0
    assert requests.head(f"{reg.url}/v2/gc/blobs/{sha(b'dropped-layer')}").status_code == 404
    assert requests.get(f"{reg.url}/v2/gc/manifests/keep").status_code == 200
    assert requests.get(f"{reg.url}/v2/gc/blobs/{sha(b'kept-layer')}").status_code == 200
    assert requests.get(f"{reg.url}{loc}").status_code == 404
    # a young blob is left alone by default
    reg.push_blob("gc", b"fresh")
    assert not reg.run(collect(layout, GCConfig())).deleted_blobs


def test_manifest_push_racing_gc_is_refused_not_corrupted(reg: Server) -> None:
    layer = reg.push_blob("race", b"old layer")
    layout: Layout = reg.app[REGISTRY].layout
    reg.run(layout.add_tombstone(layer))          # GC has decided to delete it
    body = reg.manifest("race", [b"old layer"])
    r = reg.put_manifest("race", "v1", body)
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert requests.get(f"{reg.url}/v2/race/manifests/{sha(body)}").status_code == 404
    reg.run(layout.remove_tombstone(layer))
    assert reg.put_manifest("race", "v1", body).status_code == 201


def test_documented_configuration_loads() -> None:
    import re

    import yaml

    from dockyard.registry.config import config_from_dict

    text = (Path(__file__).resolve().parents[2] / "docs" / "registry.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    cfg = config_from_dict(yaml.safe_load(block.group(1)))
    assert cfg.manifest_max_bytes == 4 << 20 and cfg.gc.grace_period == 3600 and cfg.auth.token.expiry == 300
    assert cfg.is_immutable("prod/a/b", "v1.2") and not cfg.is_immutable("prod/a", "latest")
    assert [r.keep for r in cfg.retention_rules("ci/app")] == [20]


def test_serve_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "serve", "--root", str(tmp_path / "r"),
                        "--addr", "0.0.0.0:5999"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 125 and "loopback" in p.stderr
    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "serve", "--config", str(tmp_path / "nope.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 125 and "nope.yaml" in p.stderr
    (tmp_path / "bad.yaml").write_text("storage:\n  rooot: /x\n")
    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", "--config", str(tmp_path / "bad.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 125 and "storage.rooot" in p.stderr


def test_gc_delete_untagged_keeps_index_children_and_referrers(reg: Server) -> None:
    tagged, tagged_body = reg.push_image("u", "v1", [b"tagged layer"])
    loose_body = reg.manifest("u", [b"loose layer"])
    assert reg.put_manifest("u", sha(loose_body), loose_body).status_code == 201
    child_body = reg.manifest("u", [b"child layer"])
    assert reg.put_manifest("u", sha(child_body), child_body).status_code == 201
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": sha(child_body), "size": len(child_body)}]}).encode()
    assert reg.put_manifest("u", "multi", index, mt.OCI_INDEX).status_code == 201
    sig = reg.manifest("u", [b"signature"], artifactType="application/vnd.example.sig",
                       subject={"mediaType": mt.OCI_MANIFEST, "digest": tagged, "size": len(tagged_body)})
    assert reg.put_manifest("u", sha(sig), sig).status_code == 201
    layout: Layout = reg.app[REGISTRY].layout
    report = reg.run(collect(layout, GCConfig(grace_period=0, delete_untagged=True), now=time.time() + 1))
    assert report.deleted_manifests == [("u", sha(loose_body))]
    assert {d for d, _ in report.deleted_blobs} == {sha(loose_body), sha(b"loose layer")}
    for ref in (tagged, sha(child_body), sha(sig), "multi"):
        assert requests.get(f"{reg.url}/v2/u/manifests/{ref}").status_code == 200, ref
    assert requests.get(f"{reg.url}/v2/u/manifests/{sha(loose_body)}").status_code == 404
    assert [m["digest"] for m in requests.get(f"{reg.url}/v2/u/referrers/{tagged}").json()["manifests"]] == [sha(sig)]


def test_the_api_over_encrypted_storage(tmp_path: Path) -> None:
    """The same routes over the encryption wrapper: no sendfile, ranges decrypted on the fly."""
    from dockyard.registry.storage.encryption import generate_key_file

    generate_key_file(tmp_path / "master.key")
    s = Server(tmp_path / "store", {"encryption": {"key_file": str(tmp_path / "master.key")}})
    try:
        plain = b"PLAINTEXT-MARKER-" * 20_000
        d, body = s.push_image("enc/app", "v1", [plain])
        layer = sha(plain)
        assert requests.get(f"{s.url}/v2/enc/app/blobs/{layer}").content == plain
        r = requests.get(f"{s.url}/v2/enc/app/blobs/{layer}", headers={"Range": "bytes=100000-100099"})
        assert r.status_code == 206 and r.content == plain[100_000:100_100]
        assert requests.get(f"{s.url}/v2/enc/app/manifests/v1").content == body
        loc = requests.post(f"{s.url}/v2/enc/app/blobs/uploads/").headers["Location"]
        chunked = os.urandom(100_000)
        r = requests.patch(f"{s.url}{loc}", data=chunked[:60_000], headers={"Content-Range": "0-59999"})
        r = requests.patch(f"{s.url}{r.headers['Location']}", data=chunked[60_000:],
                           headers={"Content-Range": "60000-99999"})
        assert requests.put(f"{s.url}{r.headers['Location']}", params={"digest": sha(chunked)}).status_code == 201
        assert requests.get(f"{s.url}/v2/enc/app/blobs/{sha(chunked)}").content == chunked
    finally:
        s.stop()
    for f in (tmp_path / "store").rglob("*"):
        if f.is_file():
            assert b"PLAINTEXT-MARKER" not in f.read_bytes(), f
