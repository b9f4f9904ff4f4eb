"""Base images made by `dockyard image bootstrap`, unpacked into overlay snapshots and used for real:
the image's root filesystem is mounted from its layers and programs in it run (chroot; containers come
with the runtime)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import cached_image_archive
from dockyard.engine import Engine
from dockyard.snapshots.mount import mount_all, unmount

pytestmark = pytest.mark.root


@contextmanager
def mounted_rootfs(root: Path, image: str):
    """Mount a writable overlay of the image's layers, as a container's root filesystem would be."""
    engine = Engine(root)
    row = engine.image_store.resolve(image)
    key = f"test-{uuid.uuid4().hex}"
    target = root.parent / key
    target.mkdir()
    mounts = engine.snapshotter.prepare(key, engine.image_store.top_snapshot(row.id))
    mount_all(mounts, target)
    try:
        yield target
    finally:
        unmount(target)
        engine.snapshotter.remove(key)
        target.rmdir()


def chroot(target: Path, *cmd: str) -> str:
    p = subprocess.run(["chroot", str(target), *cmd], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root"})
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_busybox_rootfs_runs(busybox):
    with mounted_rootfs(busybox.root, "busybox") as target:
        assert chroot(target, "/bin/sh", "-c", "echo hello from $(basename $(readlink -f /proc/self/exe 2>/dev/null || echo busybox))").startswith("hello")
        applets = chroot(target, "/bin/busybox", "--list").split()
        for a in applets:
            assert (target / "bin" / a).exists() or any((target / d / a).exists() for d in ("sbin", "usr/bin", "usr/sbin")), a
        # the container's writes land in its own upper dir, never in the shared layer
        chroot(target, "/bin/sh", "-c", "echo changed > /etc/motd-test && rm /bin/ls")
    with mounted_rootfs(busybox.root, "busybox") as target:
        assert not (target / "etc" / "motd-test").exists()
        assert (target / "bin" / "ls").exists()


def test_hostile_import_refused_and_nothing_written(dockyard, tmp_path):
    sentinel = tmp_path / "outside"
    sentinel.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        link = tarfile.TarInfo("escape")
        link.type = tarfile.SYMTYPE
        link.linkname = "../" * 12 + str(sentinel).lstrip("/")
        tf.addfile(link)
        evil = tarfile.TarInfo("escape/pwned")
        evil.size = 5
        tf.addfile(evil, io.BytesIO(b"pwned"))
    p = dockyard("import", "-", "evil:1", input=buf.getvalue(), check=False)
    assert p.returncode == 125
    assert p.stderr.startswith("Error: ") and "escape" in p.stderr
    assert os.listdir(sentinel) == []
    assert dockyard("images", "-q").stdout == ""
    assert os.listdir(dockyard.root / "content" / "blobs" / "sha256") == []


@pytest.mark.slow
def test_debian_and_python_base_images(dockyard):
    debian = cached_image_archive("debian:bookworm-slim")
    python = cached_image_archive("python:3.11-slim")
    dockyard("load", "-i", str(debian))
    dockyard("load", "-i", str(python))
    deb = json.loads(dockyard("image", "inspect", "debian:bookworm-slim").stdout)[0]
    py = json.loads(dockyard("image", "inspect", "python:3.11-slim").stdout)[0]
    assert len(deb["RootFS"]["Layers"]) == 1
    assert py["RootFS"]["Layers"][:1] == deb["RootFS"]["Layers"]  # layered on debian, sharing its layer
    assert len(py["RootFS"]["Layers"]) == 2
    assert py["Config"]["Cmd"] == ["python3"]
    assert any(e.startswith("PYTHON_VERSION=3.11") for e in py["Config"]["Env"])
    for info in (deb, py):
        assert info["Config"]["Labels"]["org.opencontainers.image.source"]
    # the debian layer is unpacked once and shared
    images = dockyard("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout.split("\n")
    assert any(l.startswith("python:3.11-slim ") for l in images)
    with mounted_rootfs(dockyard.root, "debian:bookworm-slim") as target:
        assert 'VERSION_CODENAME=bookworm' in (target / "etc" / "os-release").read_text()
        man = target / "usr" / "share" / "man"
        assert not man.exists() or not [p for p in man.rglob("*") if p.is_file()]
        lists = target / "var" / "lib" / "apt" / "lists"
        assert [p.name for p in lists.iterdir() if p.is_file() and p.name != "lock"] == []
        assert os.listdir(target / "dev") == []
        chroot(target, "/bin/bash", "-c", "dpkg -s bash >/dev/null")
    with mounted_rootfs(dockyard.root, "python:3.11-slim") as target:
        out = chroot(target, "/usr/local/bin/python", "-c", "import sys, venv, ssl; print(sys.version_info[:2])")
        assert out.strip() == "(3, 11)"
        assert "pip" in chroot(target, "/usr/bin/pip", "--version")
        assert not (target / "usr/lib/python3.11/EXTERNALLY-MANAGED").exists()
