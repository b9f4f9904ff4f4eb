"""The registry against clients nobody here wrote: skopeo and oras (PyPI).  Their expectations are
the spec.  Every server is a real ``dockyard registry serve`` process on 127.0.0.1 over a
temporary root, stopped by its PID at teardown.

Also here, because they need real processes: two registries over one root (push through one,
pull through the other, an upload continued across them), a SIGKILL in the middle of 20
concurrent pushes followed by a restart (nothing corrupt is served, no manifest points at a
missing blob), and garbage collection from the command line while the registry serves.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

if not shutil.which("skopeo"):  # setup.sh installs it; a missing skopeo is a broken machine, not a skip
    raise RuntimeError("skopeo is not installed: run scripts/setup.sh")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A ``dockyard registry serve`` subprocess."""

    def __init__(self, root: Path, log: Path, *extra: str) -> None:
        self.root = root
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if '--tls-self-signed' in extra else 'http'}://{self.addr}"
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "registry", "serve", "--root", str(root), "--addr", self.addr,
             "--no-access-log", *extra],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while True:
            try:
                with warnings.catch_warnings():      # the readiness probe does not check the certificate
                    warnings.simplefilter("ignore")
                    status = requests.get(f"{self.url}/v2/", timeout=1, verify=False).status_code
                if status in (200, 401):
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise AssertionError(f"registry did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Registry]]:
    started: list[Registry] = []
    try:
        yield started
    finally:
        for s in started:
            s.stop()


def start(servers: list[Registry], root: Path, *extra: str) -> Registry:
    s = Registry(root, root.parent / f"registry-{len(servers)}.log", *extra)
    servers.append(s)
    return s


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, f"skopeo {' '.join(args)}: {p.stderr}"
    return p


def oci_layout(path: Path, tag: str = "v1", files: dict[str, bytes] | None = None) -> dict[str, Any]:
    """A one-layer OCI image layout at ``path``; returns its manifest, config and layer digests."""
    files = files or {"hello.txt": b"hello from dockyard\n", "bin/tool": os.urandom(4096)}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/tool"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(raw.getvalue())]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer),
                    "size": len(layer)}]}).encode()
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in (layer, config, manifest):
        (blobs / sha(data)[7:]).write_bytes(data)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return {"manifest": sha(manifest), "config": sha(config), "layer": sha(layer)}


def test_skopeo_copy_inspect_list_tags_delete(tmp_path: Path, servers: list[Registry]) -> None:
    reg = start(servers, tmp_path / "store")
    image = oci_layout(tmp_path / "src")
    ref = f"docker://{reg.addr}/team/app"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", f"{ref}:v1")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", f"{ref}:v2")
    out = json.loads(skopeo("inspect", "--tls-verify=false", f"{ref}:v1").stdout)
    assert out["Digest"] == image["manifest"] and out["Layers"] == [image["layer"]]
    assert out["Architecture"] == "amd64" and out["Os"] == "linux"
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"{ref}:v2").stdout)
    assert raw["config"]["digest"] == image["config"]
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", ref).stdout)
    assert tags == {"Repository": f"{reg.addr}/team/app", "Tags": ["v1", "v2"]}
    # back out, byte for byte
    skopeo("copy", "--src-tls-verify=false", f"{ref}:v1", f"oci:{tmp_path / 'out'}:v1")
    for digest in image.values():
        assert (tmp_path / "out/blobs/sha256" / digest[7:]).read_bytes() == \
            (tmp_path / "src/blobs/sha256" / digest[7:]).read_bytes()
    # a copy between repositories mounts the blobs
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", f"{ref}:v1", f"docker://{reg.addr}/other:v1")
    assert json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{reg.addr}/other:v1").stdout)["Digest"] \
        == image["manifest"]
    skopeo("delete", "--tls-verify=false", f"{ref}:v1")
    gone = skopeo("inspect", "--tls-verify=false", f"{ref}:v2", check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower()
    assert requests.get(f"{reg.url}/v2/_catalog").json()["repositories"] == ["other", "team/app"]


def test_oras_push_and_pull_an_artifact(tmp_path: Path, servers: list[Registry], monkeypatch: pytest.MonkeyPatch) -> None:
    import oras.client

    reg = start(servers, tmp_path / "store")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "chart.txt").write_text("an artifact of any type\n")
    (work / "sbom.json").write_text('{"packages": []}')
    client = oras.client.OrasClient(hostname=reg.addr, insecure=True)
    target = f"{reg.addr}/artifacts/demo:v1"
    r = client.push(files=["chart.txt", "sbom.json:application/spdx+json"], target=target, quiet=True)
    assert r.status_code == 201
    out = tmp_path / "pulled"
    pulled = client.pull(target=target, outdir=str(out))
    assert sorted(Path(p).name for p in pulled) == ["chart.txt", "sbom.json"]
    assert (out / "chart.txt").read_text() == "an artifact of any type\n"
    manifest = client.get_manifest(target)
    assert [layer["mediaType"] for layer in manifest["layers"]][1] == "application/spdx+json"
    assert client.get_tags(f"{reg.addr}/artifacts/demo") == ["v1"]


def test_two_processes_over_one_root(tmp_path: Path, servers: list[Registry]) -> None:
    root = tmp_path / "store"
    a = start(servers, root)
    b = start(servers, root)
    image = oci_layout(tmp_path / "src")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", f"docker://{a.addr}/shared/app:v1")
    out = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{b.addr}/shared/app:v1").stdout)
    assert out["Digest"] == image["manifest"]
    skopeo("copy", "--src-tls-verify=false", f"docker://{b.addr}/shared/app:v1", f"oci:{tmp_path / 'out'}:v1")
    assert (tmp_path / "out/blobs/sha256" / image["layer"][7:]).exists()
    # one upload, three processes' worth of requests: started on A, a chunk through B, closed on A
    data = os.urandom(200_000)
    loc = requests.post(f"{a.url}/v2/shared/app/blobs/uploads/").headers["Location"]
    r = requests.patch(f"{a.url}{loc}", data=data[:100_000], headers={"Content-Range": "0-99999"})
    r = requests.patch(f"{b.url}{r.headers['Location']}", data=data[100_000:], headers={"Content-Range": "100000-199999"})
    assert r.status_code == 202 and r.headers["Range"] == "0-199999"
    r = requests.put(f"{a.url}{r.headers['Location']}", params={"digest": sha(data)})
    assert r.status_code == 201, r.text
    assert requests.get(f"{b.url}/v2/shared/app/blobs/{sha(data)}").content == data
    # a delete through B is seen by A
    assert requests.delete(f"{b.url}/v2/shared/app/manifests/v1").status_code == 202
    assert requests.get(f"{a.url}/v2/shared/app/manifests/v1").status_code == 404


def _push(url: str, repo: str, seed: int, errors: list[str], done: list[str], delay: float = 0) -> None:
    """Push one image with two chunked 1 MiB layers (128 KiB PATCHes) and a tag."""
    time.sleep(delay)
    try:
        s = requests.Session()
        descs = []
        for i in range(2):
            blob = hashlib.sha256(f"{seed}-{i}".encode()).digest() * (1 << 20 >> 5)
            loc = s.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"]
            for off in range(0, len(blob), 128 << 10):
                chunk = blob[off:off + (128 << 10)]
                r = s.patch(f"{url}{loc}", data=chunk, headers={"Content-Range": f"{off}-{off + len(chunk) - 1}"})
                loc = r.headers["Location"]
            assert s.put(f"{url}{loc}", params={"digest": sha(blob)}).status_code == 201
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(blob), "size": len(blob)})
        config = json.dumps({"seed": seed}).encode()
        assert s.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha(config)}, data=config).status_code == 201
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
            "layers": descs}).encode()
        r = s.put(f"{url}/v2/{repo}/manifests/v1", data=manifest, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201
        done.append(repo)
    except Exception as exc:                 # the server is killed under us: expected
        errors.append(f"{repo}: {type(exc).__name__}")


def _verify_everything_served(url: str, root: Path) -> int:
    """Every served blob hashes to its digest; no manifest refers to a missing blob."""
    checked = 0
    for repo in requests.get(f"{url}/v2/_catalog").json()["repositories"]:
        tags = requests.get(f"{url}/v2/{repo}/tags/list").json()["tags"] or []
        for tag in tags:
            r = requests.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200 and sha(r.content) == r.headers["Docker-Content-Digest"]
            doc = r.json()
            for desc in [doc["config"], *doc["layers"]]:
                b = requests.get(f"{url}/v2/{repo}/blobs/{desc['digest']}")
                assert b.status_code == 200, f"{repo}:{tag} refers to missing {desc['digest']}"
                assert sha(b.content) == desc["digest"] and len(b.content) == desc["size"]
                checked += 1
        layers = root / "repositories" / repo / "_layers" / "sha256"
        for link in layers.glob("*/link") if layers.exists() else []:
            digest = link.read_text()
            b = requests.get(f"{url}/v2/{repo}/blobs/{digest}")
            if b.status_code == 200:
                assert sha(b.content) == digest
    for data in (root / "blobs" / "sha256").glob("*/*/data"):
        assert hashlib.sha256(data.read_bytes()).hexdigest() == data.parent.name   # nothing corrupt on disk
    return checked


def test_sigkill_during_20_concurrent_pushes(tmp_path: Path, servers: list[Registry]) -> None:
    root = tmp_path / "store"
    reg = start(servers, root)
    errors: list[str] = []
    done: list[str] = []
    threads = [threading.Thread(target=_push, args=(reg.url, f"crash/app{i}", i, errors, done, i * 0.02))
               for i in range(20)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while len(done) < 3 and time.time() < deadline:
        time.sleep(0.01)
    reg.stop(signal.SIGKILL)
    for t in threads:
        t.join(60)
    assert done and errors, (done, errors)          # killed in the middle, as intended
    assert any((root / "repositories/crash").glob("*/_uploads/*")), "no upload was in flight"
    again = start(servers, root)
    assert _verify_everything_served(again.url, root) >= 3 * len(done)
    # the killed pushes can simply be pushed again
    errors2: list[str] = []
    retry = [threading.Thread(target=_push, args=(again.url, f"crash/app{i}", i, errors2, [])) for i in range(20)]
    for t in retry:
        t.start()
    for t in retry:
        t.join(120)
    assert not errors2
    assert _verify_everything_served(again.url, root) == 3 * 20
    # the killed uploads are garbage: GC (dry run first) removes them and nothing else
    cmd = [sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(root), "--gc-upload-max-age", "0", "--json"]
    dry = json.loads(subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, check=True).stdout)
    assert dry["dry_run"] and dry["deleted_uploads"] and not dry["deleted_blobs"]
    assert any((root / "repositories/crash").glob("*/_uploads/*"))
    real = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert len(real["deleted_uploads"]) == len(dry["deleted_uploads"])
    assert not any((root / "repositories/crash").glob("*/_uploads/*"))
    assert _verify_everything_served(again.url, root) == 3 * 20


def test_gc_dry_run_and_real_run_while_serving(tmp_path: Path, servers: list[Registry]) -> None:
    root = tmp_path / "store"
    reg = start(servers, root)
    first = oci_layout(tmp_path / "one", files={"a": b"first image"})
    second = oci_layout(tmp_path / "two", files={"b": b"second image"})
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'one'}:v1", f"docker://{reg.addr}/gc/app:one")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'two'}:v1", f"docker://{reg.addr}/gc/app:two")
    skopeo("delete", "--tls-verify=false", f"docker://{reg.addr}/gc/app:one")
    gc = [sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(root), "--gc-grace", "0"]
    dry = subprocess.run([*gc, "--dry-run"], capture_output=True, text=True, check=True).stdout
    doomed = {first["manifest"], first["config"], first["layer"]}
    assert {line.split()[3] for line in dry.splitlines() if line.startswith("would delete blob")} == doomed
    assert "would free 3 blobs" in dry
    assert all((root / "blobs/sha256" / d[7:9] / d[7:] / "data").exists() for d in doomed)
    real = subprocess.run(gc, capture_output=True, text=True, check=True).stdout
    assert "freed 3 blobs" in real
    assert not any((root / "blobs/sha256" / d[7:9] / d[7:] / "data").exists() for d in doomed)
    out = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{reg.addr}/gc/app:two").stdout)
    assert out["Digest"] == second["manifest"]
    skopeo("copy", "--src-tls-verify=false", f"docker://{reg.addr}/gc/app:two", f"oci:{tmp_path / 'back'}:v1")
    again = subprocess.run([*gc, "--dry-run"], capture_output=True, text=True, check=True).stdout
    assert "would free 0 blobs" in again


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_skopeo_with_credentials_over_tls(tmp_path: Path, servers: list[Registry], auth: str) -> None:
    import bcrypt

    root = tmp_path / "store"
    root.mkdir()
    (root / "htpasswd").write_text("alice:" + bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(5)).decode() + "\n")
    reg = start(servers, root, "--auth", auth, "--tls-self-signed", "--tls-dir", str(tmp_path / "tls"))
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(tmp_path / "tls" / "cert.pem", certs / "ca.crt")
    image = oci_layout(tmp_path / "src")
    ref = f"docker://{reg.addr}/team/app"
    creds = ("--creds", "alice:alice-pw", "--cert-dir", str(certs))
    skopeo("copy", "--dest-creds", "alice:alice-pw", "--dest-cert-dir", str(certs), f"oci:{tmp_path / 'src'}:v1", f"{ref}:v1")
    assert json.loads(skopeo("inspect", *creds, f"{ref}:v1").stdout)["Digest"] == image["manifest"]
    assert json.loads(skopeo("list-tags", *creds, ref).stdout)["Tags"] == ["v1"]
    anonymous = skopeo("inspect", "--cert-dir", str(certs), f"{ref}:v1", check=False)
    assert anonymous.returncode != 0 and "unauthorized" in anonymous.stderr.lower()
    wrong = skopeo("inspect", "--creds", "alice:nope", "--cert-dir", str(certs), f"{ref}:v1", check=False)
    assert wrong.returncode != 0
    untrusted = skopeo("inspect", "--creds", "alice:alice-pw", f"{ref}:v1", check=False)
    assert untrusted.returncode != 0 and "certificate" in untrusted.stderr.lower()
    skopeo("delete", *creds, f"{ref}:v1")
    assert skopeo("inspect", *creds, f"{ref}:v1", check=False).returncode != 0
