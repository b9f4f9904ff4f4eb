"""Interoperability with skopeo, a client nobody here wrote: its expectations are the spec."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Dockyard
from helpers import ocischema

pytestmark = pytest.mark.root

if not shutil.which("skopeo"):  # setup.sh installs it; a missing skopeo is a broken machine, not a skip
    raise RuntimeError("skopeo is not installed: run scripts/setup.sh")


def skopeo(*args: str) -> str:
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"skopeo {' '.join(args)}: {p.stderr}"
    return p.stdout


def inspect(d: Dockyard, name: str) -> dict:
    return json.loads(d("image", "inspect", name).stdout)[0]


def test_skopeo_reads_dockyard_save(busybox, tmp_path):
    archive = tmp_path / "busybox.tar"
    busybox("save", "-o", str(archive), "busybox")
    info = inspect(busybox, "busybox")
    out = json.loads(skopeo("inspect", f"docker-archive:{archive}"))
    assert out["Layers"] and out["Os"] == "linux" and out["Architecture"] == "amd64"
    cfg = json.loads(skopeo("inspect", "--config", f"docker-archive:{archive}"))
    assert cfg["rootfs"]["diff_ids"] == info["RootFS"]["Layers"]
    assert cfg["config"]["Cmd"] == ["sh"]
    # the same archive is an OCI archive too
    out2 = json.loads(skopeo("inspect", f"oci-archive:{archive}"))
    # docker-archive sources show layers by diff ID (skopeo decompresses), OCI by blob digest
    assert out["Layers"] == info["RootFS"]["Layers"]
    assert out2["Digest"] == inspect_manifest_digest(busybox)
    assert len(out2["Layers"]) == 1 and out2["Layers"][0] != out["Layers"][0]
    # and skopeo copies it
    skopeo("copy", "-q", f"docker-archive:{archive}", f"dir:{tmp_path / 'dir'}")
    assert (tmp_path / "dir" / "manifest.json").exists()


def test_skopeo_oci_layout_loads_into_dockyard(busybox, tmp_path, scratch):
    archive = tmp_path / "busybox.tar"
    busybox("save", "-o", str(archive), "busybox")
    layout = tmp_path / "layout"
    skopeo("copy", "-q", f"docker-archive:{archive}", f"oci:{layout}:busybox:latest")
    other = Dockyard(scratch / "other")
    out = other("load", "-i", str(layout)).stdout.strip()
    assert out == "Loaded image: busybox:latest"
    # skopeo converts the Docker-style config to an OCI one (so the ID differs); the layers are the same
    assert inspect(other, "busybox")["RootFS"] == inspect(busybox, "busybox")["RootFS"]
    assert inspect(other, "busybox")["Config"]["Cmd"] == ["sh"]
    # an OCI archive written by skopeo, with gzip layers, from standard input
    oci_tar = tmp_path / "b.oci.tar"
    skopeo("copy", "-q", "--dest-compress", f"docker-archive:{archive}", f"oci-archive:{oci_tar}:example/bb:2")
    other("load", input=oci_tar.read_bytes())
    assert inspect(other, "example/bb:2")["RootFS"] == inspect(busybox, "busybox")["RootFS"]


def test_skopeo_docker_archive_loads_into_dockyard(busybox, tmp_path, scratch):
    archive = tmp_path / "busybox.tar"
    busybox("save", "--format", "oci-dir", "-o", str(tmp_path / "l"), "busybox")
    skopeo("copy", "-q", f"oci:{tmp_path / 'l'}", f"docker-archive:{archive}:skopeo/made:1")
    other = Dockyard(scratch / "other")
    assert other("load", "-i", str(archive)).stdout.strip() == "Loaded image: skopeo/made:1"
    assert inspect(other, "skopeo/made:1")["RootFS"] == inspect(busybox, "busybox")["RootFS"]


def test_written_json_validates_against_oci_schemas(busybox, tmp_path):
    busybox("import", "-c", "CMD [\"sh\"]", "-c", "ENV X=1", str(_tiny_tar(tmp_path)), "imp:1")
    layout = tmp_path / "layout"
    busybox("save", "--format", "oci-dir", "-o", str(layout), "busybox", "imp:1")
    index = json.loads((layout / "index.json").read_text())
    ocischema.validate(index, ocischema.INDEX)
    assert len(index["manifests"]) == 2
    for desc in index["manifests"]:
        manifest = json.loads((layout / "blobs" / "sha256" / desc["digest"][7:]).read_text())
        ocischema.validate(manifest, ocischema.MANIFEST)
        config = json.loads((layout / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_text())
        ocischema.validate(config, ocischema.CONFIG)
    # every manifest and config in the store, too
    blobs = Path(busybox.root) / "content" / "blobs" / "sha256"
    checked = 0
    for blob in blobs.iterdir():
        head = blob.read_bytes()[:1]
        if head != b"{":
            continue
        doc = json.loads(blob.read_text())
        if "layers" in doc:
            ocischema.validate(doc, ocischema.MANIFEST)
        elif "rootfs" in doc:
            ocischema.validate(doc, ocischema.CONFIG)
        checked += 1
    assert checked == 4


def inspect_manifest_digest(d: Dockyard) -> str:
    layout = Path(d.root).parent / "layout-for-digest"
    d("save", "--format", "oci-dir", "-o", str(layout), "busybox")
    return json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]


def _tiny_tar(tmp_path: Path) -> Path:
    import io
    import tarfile

    p = tmp_path / "tiny.tar"
    with tarfile.open(p, "w") as tf:
        ti = tarfile.TarInfo("hello")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"hi\n"))
    return p
