"""The image commands end to end: the real dockyard command against a private data root."""

from __future__ import annotations

import gzip
import io
import json
import os
import sqlite3
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def store_state(root: Path) -> tuple[set[str], list[tuple], list[tuple], set[str]]:
    """Everything that must not change when an operation fails: blobs, image rows, tags, snapshots."""
    blobs = set(os.listdir(root / "content" / "blobs" / "sha256")) if (root / "content").exists() else set()
    if not (root / "dockyard.db").exists():
        return blobs, [], [], set()
    conn = sqlite3.connect(root / "dockyard.db")
    images = sorted(conn.execute("SELECT id, manifest_digest FROM images").fetchall())
    tags = sorted(conn.execute("SELECT name, image_id FROM tags").fetchall())
    conn.close()
    snaps = {p.name for p in (root / "snapshots").iterdir() if p.is_dir()} if (root / "snapshots").exists() else set()
    return blobs, images, tags, snaps


def inspect(d, name: str) -> dict:
    return json.loads(d("image", "inspect", name).stdout)[0]


def test_busybox_image_lists_and_inspects(busybox):
    out = busybox("images").stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:2] == ["busybox", "latest"]
    info = inspect(busybox, "busybox")
    assert info["Id"].startswith("sha256:") and len(info["Id"]) == 71
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 1
    assert info["Size"] > 1_000_000
    labels = info["Config"]["Labels"]
    assert "busybox-static" in labels["org.opencontainers.image.source"]
    # the same image by full ID, short ID, sha256-prefixed ID and fully-qualified name
    for name in (info["Id"], info["Id"][7:19], info["Id"][:19], "docker.io/library/busybox:latest"):
        assert inspect(busybox, name)["Id"] == info["Id"]
    assert busybox("images", "-q").stdout.strip() == info["Id"][7:19]
    assert busybox("images", "-q", "--no-trunc").stdout.strip() == info["Id"]
    fmt = busybox("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert fmt == "busybox:latest\n"
    line = busybox("images", "--format", "json").stdout.strip()
    assert json.loads(line)["Repository"] == "busybox"


def test_unknown_image_and_bad_reference(dockyard):
    p = dockyard("image", "inspect", "nosuch", check=False)
    assert p.returncode == 1
    assert "No such image: nosuch" in p.stderr
    p = dockyard("tag", "nosuch", "x", check=False)
    assert p.returncode == 125 and p.stderr.strip() == "Error: No such image: nosuch:latest"
    p = dockyard("rmi", "Busybox", check=False)
    assert p.returncode == 1
    assert "invalid reference format: repository name (library/Busybox) must be lowercase" in p.stderr
    p = dockyard("images", "--filter", "bogus=1", check=False)
    assert p.returncode == 125 and "invalid filter 'bogus'" in p.stderr


def test_tag_and_rmi_semantics(busybox):
    image_id = inspect(busybox, "busybox")["Id"]
    busybox("tag", "busybox", "example.com:5000/team/tool:1.0")
    busybox("tag", image_id[7:19], "mine")
    tags = sorted(inspect(busybox, "busybox")["RepoTags"])
    assert tags == ["busybox:latest", "example.com:5000/team/tool:1.0", "mine:latest"]
    # by ID with several names: refused unless forced, in Docker's words
    p = busybox("rmi", image_id[7:19], check=False)
    assert p.returncode == 1
    assert f"unable to delete {image_id[7:19]} (must be forced) - image is referenced in multiple repositories" in p.stderr
    # by name: only untags
    assert busybox("rmi", "mine").stdout == "Untagged: mine:latest\n"
    assert busybox("rmi", "example.com:5000/team/tool:1.0").stdout == "Untagged: example.com:5000/team/tool:1.0\n"
    blobs_before = set(os.listdir(busybox.root / "content" / "blobs" / "sha256"))
    assert len(blobs_before) == 3  # manifest, config, layer
    # the last name deletes the image and its content
    out = busybox("rmi", "busybox").stdout.splitlines()
    assert out[0] == "Untagged: busybox:latest"
    assert out[1] == f"Deleted: {image_id}"
    assert os.listdir(busybox.root / "content" / "blobs" / "sha256") == []
    assert busybox("images", "-q").stdout == ""
    assert [p for p in (busybox.root / "snapshots").iterdir() if p.name.isdigit()] == []


def test_rmi_force_by_id_removes_all_tags(busybox):
    image_id = inspect(busybox, "busybox")["Id"]
    busybox("tag", "busybox", "other:2")
    out = busybox("rmi", "-f", image_id).stdout.splitlines()
    assert sorted(out[:2]) == ["Untagged: busybox:latest", "Untagged: other:2"]
    assert f"Deleted: {image_id}" in out


def test_history(busybox):
    lines = busybox("history", "busybox").stdout.splitlines()
    assert lines[0].split()[:4] == ["IMAGE", "CREATED", "CREATED", "BY"]
    assert lines[1].startswith(inspect(busybox, "busybox")["Id"][7:19])
    assert busybox("history", "-q", "busybox").stdout.strip() == inspect(busybox, "busybox")["Id"][7:19]


def test_save_load_roundtrip_same_ids(busybox, tmp_path, scratch):
    from conftest import Dockyard

    info = inspect(busybox, "busybox")
    busybox("tag", "busybox", "localhost:5000/a/b:t")
    archive = tmp_path / "out.tar"
    busybox("save", "-o", str(archive), "busybox", "localhost:5000/a/b:t")
    with tarfile.open(archive) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))
        index = json.load(tf.extractfile("index.json"))
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names)
    assert sorted(manifest[0]["RepoTags"]) == ["busybox:latest", "localhost:5000/a/b:t"]
    assert {m["annotations"]["io.containerd.image.name"] for m in index["manifests"]} == {
        "docker.io/library/busybox:latest", "localhost:5000/a/b:t"}
    other = Dockyard(scratch / "root2")
    out = other("load", "-i", str(archive)).stdout.splitlines()
    assert sorted(out) == ["Loaded image: busybox:latest", "Loaded image: localhost:5000/a/b:t"]
    info2 = inspect(other, "localhost:5000/a/b:t")
    assert info2["Id"] == info["Id"]
    assert info2["RootFS"] == info["RootFS"]
    # loading from standard input, and loading again, are both fine
    data = archive.read_bytes()
    out = other("load", input=data).stdout
    assert "Loaded image: busybox:latest" in out
    # save to stdout
    p = busybox("save", "busybox", input=b"", binary=True)
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tf:
        assert "manifest.json" in tf.getnames()


def test_save_oci_dir_and_oci_archive(busybox, tmp_path, scratch):
    from conftest import Dockyard

    layout = tmp_path / "layout"
    busybox("save", "--format", "oci-dir", "-o", str(layout), "busybox")
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    other = Dockyard(scratch / "r")
    assert other("load", "-i", str(layout)).stdout.strip() == "Loaded image: busybox:latest"
    oci_tar = tmp_path / "oci.tar"
    busybox("save", "--format", "oci-archive", "-o", str(oci_tar), "busybox")
    with tarfile.open(oci_tar) as tf:
        assert "manifest.json" not in tf.getnames()


def test_save_refuses_terminal_and_unknown(busybox):
    p = busybox("save", "nosuch", check=False)
    assert p.returncode == 125 and "No such image: nosuch" in p.stderr


def test_import_with_changes_and_compression(dockyard, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("hello.txt", b"hello\n"), ("etc/motd", b"hi\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    image_id = dockyard("import", "-c", 'CMD ["/bin/sh", "-c", "cat /hello.txt"]', "-c", "ENV A=1 B=two",
                        "-c", "WORKDIR /srv", "-c", "EXPOSE 8080", "-c", "LABEL team=core",
                        "-m", "first import", "-", "imported:1", input=gzip.compress(raw)).stdout.strip()
    info = inspect(dockyard, "imported:1")
    assert info["Id"] == image_id
    assert info["Config"]["Cmd"] == ["/bin/sh", "-c", "cat /hello.txt"]
    assert info["Config"]["Env"] == ["A=1", "B=two"]
    assert info["Config"]["WorkingDir"] == "/srv"
    assert info["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert info["Config"]["Labels"] == {"team": "core"}
    assert info["Comment"] == "first import"
    hist = dockyard("history", "--format", "{{.Comment}}", "imported:1").stdout.strip()
    assert hist == "first import"
    f = tmp_path / "root.tar"
    f.write_bytes(raw)
    id2 = dockyard("import", str(f)).stdout.strip()
    assert id2 != image_id  # created time differs; untagged
    assert dockyard("images", "--filter", "dangling=true", "-q").stdout.strip() == id2[7:19]
    p = dockyard("import", "-c", "RUN true", str(f), check=False)
    assert p.returncode == 125 and "RUN is not a valid change command" in p.stderr


@pytest.mark.parametrize("case", ["truncated", "not-a-tar", "digest-mismatch", "empty", "missing-blob"])
def test_bad_archives_leave_store_unchanged(busybox, busybox_archive, tmp_path, case):
    before = store_state(busybox.root)
    data = busybox_archive.read_bytes()
    bad = tmp_path / "bad.tar"
    if case == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif case == "not-a-tar":
        bad.write_bytes(os.urandom(100_000))
    elif case == "empty":
        bad.write_bytes(b"")
    else:
        src = tarfile.open(busybox_archive)
        with tarfile.open(bad, "w") as out:
            for m in src.getmembers():
                f = src.extractfile(m) if m.isreg() else None
                content = f.read() if f else None
                if m.isreg() and m.name.startswith("blobs/") and m.size > 100_000:
                    if case == "missing-blob":
                        continue
                    content = content[:-10] + b"0123456789"
                if content is not None:
                    m.size = len(content)
                    out.addfile(m, io.BytesIO(content))
                else:
                    out.addfile(m)
    p = busybox("load", "-i", str(bad), check=False)
    assert p.returncode == 125, p.stderr
    assert p.stderr.startswith("Error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert store_state(busybox.root) == before
    assert os.listdir(busybox.root / "content" / "ingest") == []


def test_load_into_empty_root_fails_cleanly(dockyard, busybox_archive, tmp_path):
    data = busybox_archive.read_bytes()
    bad = tmp_path / "bad.tar"
    bad.write_bytes(data[: len(data) - 600_000])
    p = dockyard("load", "-i", str(bad), check=False)
    assert p.returncode == 125
    blobs, images, tags, snaps = store_state(dockyard.root)
    assert (blobs, images, tags) == (set(), [], [])


def test_prune(busybox):
    busybox("tag", "busybox", "keep:1")
    p = busybox("image", "prune", "-f")
    assert p.stdout.strip() == "Total reclaimed space: 0B"
    p = busybox("image", "prune", "-a", "-f")
    assert "untagged: busybox:latest" in p.stdout and "deleted: sha256:" in p.stdout
    assert "Total reclaimed space: " in p.stdout and "Total reclaimed space: 0B" not in p.stdout
    assert busybox("images", "-q").stdout == ""


def test_concurrent_load_and_tag(busybox_archive, dockyard):
    """Two processes loading the same archive and tagging at once: both succeed, store consistent."""
    procs = []
    for i in range(4):
        procs.append(dockyard.popen("load", "-i", str(busybox_archive), stdout=-1, stderr=-1))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    tagger = [dockyard.popen("tag", "busybox", f"t{i}:x", stdout=-1, stderr=-1) for i in range(8)]
    for p in tagger:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    tags = inspect(dockyard, "busybox")["RepoTags"]
    assert sorted(tags) == sorted(["busybox:latest", *[f"t{i}:x" for i in range(8)]])
    assert len(dockyard("images", "-q", "--no-trunc").stdout.split()) == 9
    blobs = os.listdir(dockyard.root / "content" / "blobs" / "sha256")
    assert len(blobs) == 3
