"""Pushing images that came from an index (a multi-platform image), `push -a` and `pull -a`, and
images loaded from an OCI layout whose tag names an index -- against dockyard's own registry.

Multi-platform content is made here: the linux/amd64 image is busybox (pushed by dockyard), the
linux/arm64 one a small image put into the registry over plain HTTP, and the index that names both
is PUT by hand, so the test knows every byte and digest."""

# ruff: noqa: F811  -- the fixtures imported from test_remote are parameters of the tests here

from __future__ import annotations

import gzip
import json
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Dockyard, cleanup_root
from test_remote import Servers, inspect, layer_tar, run, sha
from test_remote import env, other_root, servers  # noqa: F401  (fixtures)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Extraction filters came in 3.11.4; Debian 12's interpreter (3.11.2) has none.  The archives here are
# dockyard's own saves, so the filter is a belt on top, used where it exists.
SAFE = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
PARTIAL_NOTE = "Not all multiplatform-content is present and only the available single-platform image was pushed"


@pytest.fixture
def third_root() -> Iterator[Dockyard]:
    d = Path(tempfile.mkdtemp(prefix="dockyard-test-", dir="/var/tmp"))
    try:
        yield Dockyard(d / "root")
    finally:
        cleanup_root(d)


# --- content made by hand ----------------------------------------------------------------------

def upload_blob(host: str, repo: str, data: bytes) -> dict[str, object]:
    """A single-request upload (POST with ``?digest=``); returns the blob's descriptor fields."""
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/?digest={sha(data)}", data=data,
                                 method="POST", headers={"Content-Type": "application/octet-stream"})
    assert urllib.request.urlopen(req).status == 201
    return {"digest": sha(data), "size": len(data)}


def put_manifest(host: str, repo: str, ref: str, data: bytes, media_type: str) -> None:
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{ref}", data=data, method="PUT",
                                 headers={"Content-Type": media_type})
    assert urllib.request.urlopen(req).status == 201


def get_manifest(host: str, repo: str, ref: str) -> bytes:
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{ref}",
                                 headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"})
    return urllib.request.urlopen(req).read()


def small_image(arch: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """Blobs of a one-layer image for ``arch``, by role: layer, config, manifest."""
    tar = layer_tar(files)
    layer = gzip.compress(tar, mtime=0)
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(tar)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer),
                    "size": len(layer)}]}).encode()
    return {"layer": layer, "config": config, "manifest": manifest}


def index_of(entries: list[tuple[bytes, str]]) -> bytes:
    """An OCI index of (manifest bytes, architecture)."""
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(m), "size": len(m),
         "platform": {"os": "linux", "architecture": arch}} for m, arch in entries]}).encode()


def extend_image(archive: Path, dest: Path, name: str, files: dict[str, bytes]) -> Path:
    """An OCI layout directory at ``dest``: the image in ``archive`` (a dockyard save, e.g. the cached
    busybox) with one more uncompressed layer holding ``files``, named ``name``.  ``dockyard load -i``
    reads it."""
    with tarfile.open(archive) as tf:
        tf.extractall(dest, **SAFE)
    blobs = dest / "blobs" / "sha256"
    top = json.loads((dest / "index.json").read_text())["manifests"][0]
    manifest = json.loads((blobs / top["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    tar = layer_tar(files)
    (blobs / sha(tar)[7:]).write_bytes(tar)
    config["rootfs"]["diff_ids"].append(sha(tar))
    config.setdefault("history", []).append({"created_by": f"test: add {' '.join(sorted(files))}"})
    cfg = json.dumps(config).encode()
    (blobs / sha(cfg)[7:]).write_bytes(cfg)
    manifest["config"].update(digest=sha(cfg), size=len(cfg))
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(tar),
                               "size": len(tar)})
    raw = json.dumps(manifest).encode()
    (blobs / sha(raw)[7:]).write_bytes(raw)
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(raw), "size": len(raw),
         "annotations": {"io.containerd.image.name": name,
                         "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}]}))
    for legacy in ("manifest.json", "repositories"):
        (dest / legacy).unlink(missing_ok=True)
    return dest


def digest_in(d: Dockyard, env: dict[str, str], name: str, repo: str) -> str:
    """The RepoDigest of image ``name`` in repository ``repo`` (a substring)."""
    found = [x.split("@")[1] for x in inspect(d, env, name)["RepoDigests"] if repo in x]
    assert len(found) == 1, found
    return found[0]


# --- tests ---------------------------------------------------------------------------------------

def test_index_pushed_whole_in_its_registry_single_platform_elsewhere(
        busybox: Dockyard, other_root: Dockyard, third_root: Dockyard, servers: Servers, env) -> None:
    host, host2 = f"127.0.0.1:{servers.dockyard_registry()}", f"127.0.0.1:{servers.dockyard_registry()}"
    run(busybox, env, "tag", "busybox", f"{host}/multi/app:amd64")
    run(busybox, env, "push", f"{host}/multi/app:amd64")
    amd = get_manifest(host, "multi/app", "amd64")
    arm = small_image("arm64", {"arm": b"arm64 only\n"})
    upload_blob(host, "multi/app", arm["layer"])
    upload_blob(host, "multi/app", arm["config"])
    put_manifest(host, "multi/app", sha(arm["manifest"]), arm["manifest"], OCI_MANIFEST)
    index = index_of([(amd, "amd64"), (arm["manifest"], "arm64")])
    put_manifest(host, "multi/app", "1", index, OCI_INDEX)

    a = other_root
    run(a, env, "pull", f"{host}/multi/app:1")
    assert digest_in(a, env, f"{host}/multi/app:1", "multi/app") == sha(index)

    # Within the registry every platform is there to copy: the tag is pushed as the same index.
    run(a, env, "tag", f"{host}/multi/app:1", f"{host}/promoted/app:1")
    out = run(a, env, "push", f"{host}/promoted/app:1").stdout
    assert out.splitlines()[-1] == f"1: digest: {sha(index)} size: {len(index)}"
    assert "Mounted from multi/app" in out and PARTIAL_NOTE not in out
    assert get_manifest(host, "promoted/app", "1") == index
    assert get_manifest(host, "promoted/app", sha(arm["manifest"])) == arm["manifest"]
    assert digest_in(a, env, f"{host}/promoted/app:1", "promoted/app") == sha(index)

    b = third_root
    run(b, env, "pull", "--platform", "linux/arm64", f"{host}/promoted/app:1")
    assert inspect(b, env, f"{host}/promoted/app:1")["Architecture"] == "arm64"
    run(b, env, "pull", f"{host}/promoted/app:1")
    assert inspect(b, env, f"{host}/promoted/app:1")["Id"] == inspect(busybox, env, "busybox")["Id"]

    # Another registry has none of the arm64 content: only this platform's manifest goes, as Docker does.
    run(a, env, "tag", f"{host}/multi/app:1", f"{host2}/elsewhere/app:1")
    out = run(a, env, "push", f"{host2}/elsewhere/app:1").stdout
    assert f"{PARTIAL_NOTE}: {sha(index)} -> {sha(amd)}" in out
    assert out.splitlines()[-1] == f"1: digest: {sha(amd)} size: {len(amd)}"
    assert get_manifest(host2, "elsewhere/app", "1") == amd
    run(b, env, "pull", f"{host2}/elsewhere/app:1")
    assert inspect(b, env, f"{host2}/elsewhere/app:1")["Id"] == inspect(busybox, env, "busybox")["Id"]

    # The index is kept with the image through garbage collection: B pulled arm64 first, then amd64
    # moved the tag; removing the arm64 image collects its blobs but not the index.
    arm_id = sha(arm["config"])
    run(b, env, "rmi", arm_id)
    run(b, env, "tag", f"{host}/promoted/app:1", f"{host}/from-b/app:1")
    out = run(b, env, "push", f"{host}/from-b/app:1").stdout
    assert out.splitlines()[-1] == f"1: digest: {sha(index)} size: {len(index)}"


def test_push_all_tags_and_pull_all_tags(busybox: Dockyard, other_root: Dockyard, servers: Servers,
                                         env, busybox_archive: Path, scratch: Path) -> None:
    host = f"127.0.0.1:{servers.dockyard_registry()}"
    for tag in ("1", "2"):
        run(busybox, env, "tag", "busybox", f"{host}/all/bb:{tag}")
    layout = extend_image(busybox_archive, scratch / "layout", f"{host}/all/bb:3", {"etc/three": b"3\n"})
    run(busybox, env, "load", "-i", str(layout))
    run(busybox, env, "tag", "busybox", f"{host}/all/other:1")          # another repository: not pushed

    p = run(busybox, env, "push", "-a", f"{host}/all/bb:1", check=False)
    assert p.returncode != 0 and "tag can't be used with --all-tags/-a" in p.stderr
    out = run(busybox, env, "push", "-a", f"{host}/all/bb").stdout.splitlines()
    assert out[0] == f"The push refers to repository [{host}/all/bb]"
    pushed = {l.split(":")[0]: l.split()[2] for l in out if ": digest: sha256:" in l}
    assert sorted(pushed) == ["1", "2", "3"] and pushed["1"] == pushed["2"] != pushed["3"]
    tags = json.loads(urllib.request.urlopen(f"http://{host}/v2/all/bb/tags/list").read())["tags"]
    assert sorted(tags) == ["1", "2", "3"]

    out = run(other_root, env, "pull", "-a", f"{host}/all/bb").stdout.splitlines()
    assert out[-1] == f"{host}/all/bb"
    for tag in ("1", "2", "3"):
        assert f"{tag}: Pulling from all/bb" in out
        name = f"{host}/all/bb:{tag}"
        assert inspect(other_root, env, name)["Id"] == inspect(busybox, env, name)["Id"]
        assert digest_in(other_root, env, name, "all/bb") == pushed[tag]
    three = inspect(other_root, env, f"{host}/all/bb:3")
    assert len(three["RootFS"]["Layers"]) == 2


def test_image_loaded_from_an_index_layout_pushes_its_platform(busybox: Dockyard, other_root: Dockyard,
                                                               servers: Servers, env, busybox_archive: Path,
                                                               scratch: Path) -> None:
    """``load`` keeps the host platform's manifest of an index; that is what a push sends."""
    host = f"127.0.0.1:{servers.dockyard_registry()}"
    layout = scratch / "layout"
    with tarfile.open(busybox_archive) as tf:
        tf.extractall(layout, **SAFE)
    blobs = layout / "blobs" / "sha256"
    amd = (blobs / json.loads((layout / "index.json").read_text())["manifests"][0]["digest"][7:]).read_bytes()
    arm = small_image("arm64", {"arm": b"arm\n"})
    for data in arm.values():
        (blobs / sha(data)[7:]).write_bytes(data)
    nested = index_of([(arm["manifest"], "arm64"), (amd, "amd64")])
    (blobs / sha(nested)[7:]).write_bytes(nested)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": sha(nested), "size": len(nested),
         "annotations": {"io.containerd.image.name": f"{host}/loaded/app:1",
                         "org.opencontainers.image.ref.name": "1"}}]}))
    for legacy in ("manifest.json", "repositories"):
        (layout / legacy).unlink(missing_ok=True)
    loader = other_root
    run(loader, env, "load", "-i", str(layout))
    assert inspect(loader, env, f"{host}/loaded/app:1")["Architecture"] == "amd64"
    out = run(loader, env, "push", f"{host}/loaded/app:1").stdout
    assert out.splitlines()[-1] == f"1: digest: {sha(amd)} size: {len(amd)}"
    assert get_manifest(host, "loaded/app", "1") == amd
    run(busybox, env, "pull", f"{host}/loaded/app:1")
    assert inspect(busybox, env, f"{host}/loaded/app:1")["Id"] == inspect(busybox, env, "busybox")["Id"]
