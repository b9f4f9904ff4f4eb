"""dockyard login/logout/pull/push against real registries: dockyard's own (anonymous on loopback,
htpasswd, token auth over self-signed TLS), Debian's docker-registry (htpasswd), skopeo in both
directions, and a fake registry in the test for faults (digest mismatch, a connection dropped
mid-layer, zstd and uncompressed layers, an index with several platforms).

Every server is started by the test, found by its PID and stopped at teardown; every test has its own
data roots and its own HOME (so ~/.docker/config.json is private)."""

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
import zstandard
from aiohttp import web
from conftest import Dockyard, cleanup_root

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


class Servers:
    """Processes started by a test; stopped by PID at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.tmp / f"server-{port}.log", "wb") as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                 start_new_session=True)
        self.procs.append(p)
        wait_port(port, p)
        return p

    def dockyard_registry(self, *args: str) -> int:
        port = free_port()
        self.start([sys.executable, "-m", "dockyard", "registry", "serve", "--root", str(self.tmp / f"reg-{port}"),
                    "--addr", f"127.0.0.1:{port}", *args], port)
        return port

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


@pytest.fixture
def env(scratch: Path) -> dict[str, str]:
    home = scratch / "home"
    home.mkdir()
    return {"HOME": str(home), "DOCKER_CONFIG": "", "DOCKYARD_CERTS_D": str(scratch / "certs.d"),
            "DOCKYARD_RETRY_DELAYS": "0.1,0.2,0.4"}


@pytest.fixture
def servers(scratch: Path) -> Iterator[Servers]:
    s = Servers(scratch)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def other_root() -> Iterator[Dockyard]:
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="dockyard-test-", dir="/var/tmp"))
    try:
        yield Dockyard(d / "root")
    finally:
        cleanup_root(d)


def run(d: Dockyard, env: dict[str, str], *args: str, check: bool = True, input: str | None = None):
    e = {k: v for k, v in env.items() if v}
    os.environ.pop("DOCKER_CONFIG", None)
    return d(*args, env=e, check=check, input=input)


def inspect(d: Dockyard, env: dict[str, str], name: str) -> dict[str, Any]:
    return json.loads(run(d, env, "image", "inspect", name).stdout)[0]


def add_user(scratch: Path, env: dict[str, str], user: str, password: str) -> Path:
    htpasswd = scratch / "htpasswd"
    subprocess.run([sys.executable, "-m", "dockyard", "registry", "user", "--htpasswd", str(htpasswd), "add", user,
                    "--password-stdin"], input=password.encode(), check=True, capture_output=True)
    return htpasswd


# --- dockyard's registry -----------------------------------------------------------------------

def test_push_pull_round_trip(busybox: Dockyard, other_root: Dockyard, servers: Servers, env) -> None:
    port = servers.dockyard_registry()
    name = f"127.0.0.1:{port}/team/bb:v1"
    run(busybox, env, "tag", "busybox", name)
    out = run(busybox, env, "push", name).stdout
    assert f"The push refers to repository [127.0.0.1:{port}/team/bb]" in out
    assert ": Pushed" in out
    assert "v1: digest: sha256:" in out and " size: " in out
    again = run(busybox, env, "push", name).stdout
    assert "Layer already exists" in again and "Pushed" not in again
    run(busybox, env, "tag", "busybox", f"127.0.0.1:{port}/other:v1")
    assert "Mounted from team/bb" in run(busybox, env, "push", f"127.0.0.1:{port}/other:v1").stdout

    out = run(other_root, env, "pull", f"127.0.0.1:{port}/team/bb:v1").stdout
    lines = out.splitlines()
    assert lines[0] == "v1: Pulling from team/bb"
    assert any(l.endswith(": Pulling fs layer") for l in lines)
    assert any(l.endswith(": Download complete") for l in lines)
    assert any(l.endswith(": Pull complete") for l in lines)
    assert any(l.startswith("Digest: sha256:") for l in lines)
    assert f"Status: Downloaded newer image for {name}" in lines
    assert lines[-1] == name
    src, dst = inspect(busybox, env, "busybox"), inspect(other_root, env, name)
    assert src["Id"] == dst["Id"]
    assert dst["RepoDigests"] == [d for d in inspect(busybox, env, name)["RepoDigests"] if "team/bb" in d]
    assert f"Status: Image is up to date for {name}" in run(other_root, env, "pull", name).stdout
    assert run(other_root, env, "run", "--rm", name, "echo", "pulled-ok").stdout.strip() == "pulled-ok"
    raw = json.loads(run(other_root, env, "manifest", "inspect", name).stdout)
    assert raw["schemaVersion"] == 2 and raw["layers"]


def test_pull_without_tag_and_quiet_and_missing(busybox: Dockyard, other_root: Dockyard, servers: Servers,
                                                env) -> None:
    port = servers.dockyard_registry()
    run(busybox, env, "tag", "busybox", f"127.0.0.1:{port}/bb")
    assert run(busybox, env, "push", "-q", f"127.0.0.1:{port}/bb").stdout.strip() == f"127.0.0.1:{port}/bb:latest"
    out = run(other_root, env, "pull", f"127.0.0.1:{port}/bb").stdout
    assert out.startswith("Using default tag: latest\n")
    assert run(other_root, env, "image", "pull", "-q", f"127.0.0.1:{port}/bb").stdout.strip() == \
        f"127.0.0.1:{port}/bb:latest"
    p = run(other_root, env, "pull", f"127.0.0.1:{port}/nope:v9", check=False)
    assert p.returncode != 0 and "Error" in p.stderr


def test_login_htpasswd_wrong_password_and_logout(busybox: Dockyard, other_root: Dockyard, servers: Servers,
                                                  env, scratch: Path) -> None:
    htpasswd = add_user(scratch, env, "alice", "s3cret")
    port = servers.dockyard_registry("--auth", "htpasswd", "--htpasswd", str(htpasswd))
    host = f"127.0.0.1:{port}"
    config = Path(env["HOME"]) / ".docker" / "config.json"
    run(busybox, env, "tag", "busybox", f"{host}/app:1")
    p = run(busybox, env, "push", f"{host}/app:1", check=False)
    assert p.returncode != 0 and "unauthorized" in p.stderr

    p = run(busybox, env, "login", "-u", "alice", "--password-stdin", host, input="wrong\n", check=False)
    assert p.returncode == 1
    assert p.stderr.startswith('Error response from daemon: Get "') and "unauthorized:" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not config.exists()

    assert run(busybox, env, "login", "-u", "alice", "--password-stdin", host, input="s3cret\n").stdout.strip() \
        == "Login Succeeded"
    assert config.stat().st_mode & 0o777 == 0o600
    assert json.loads(config.read_text())["auths"][host]["auth"]
    run(busybox, env, "push", f"{host}/app:1")
    run(other_root, env, "pull", f"{host}/app:1")
    assert "Removing login credentials" in run(busybox, env, "logout", host).stdout
    assert host not in json.loads(config.read_text())["auths"]
    p = run(other_root, env, "pull", f"{host}/app:1", check=False)
    assert p.returncode != 0 and "unauthorized" in p.stderr


def test_token_auth_over_self_signed_tls(busybox: Dockyard, other_root: Dockyard, servers: Servers, env,
                                         scratch: Path) -> None:
    htpasswd = add_user(scratch, env, "bob", "pa55")
    tls_dir = scratch / "tls"
    port = servers.dockyard_registry("--auth", "token", "--htpasswd", str(htpasswd), "--tls-self-signed",
                                     "--tls-dir", str(tls_dir))
    host = f"localhost:{port}"
    # Without the CA the registry's certificate is refused.
    p = run(busybox, env, "login", "-u", "bob", "--password-stdin", host, input="pa55", check=False)
    assert p.returncode != 0
    ca_dir = Path(env["DOCKYARD_CERTS_D"]) / host
    ca_dir.mkdir(parents=True)
    shutil.copy(tls_dir / "cert.pem", ca_dir / "ca.crt")
    p = run(busybox, env, "login", "-u", "bob", "--password-stdin", host, input="nope", check=False)
    assert p.returncode == 1 and "unauthorized" in p.stderr
    run(busybox, env, "login", "-u", "bob", "--password-stdin", host, input="pa55")
    run(busybox, env, "tag", "busybox", f"{host}/secure/bb:t")
    run(busybox, env, "push", f"{host}/secure/bb:t")
    run(other_root, env, "pull", f"{host}/secure/bb:t")
    assert inspect(other_root, env, f"{host}/secure/bb:t")["Id"] == inspect(busybox, env, "busybox")["Id"]


# --- Debian's docker-registry and skopeo ----------------------------------------------------------

@pytest.mark.root  # scripts/setup.sh installs Debian's docker-registry: missing, this fails
def test_distribution_registry_with_htpasswd(busybox: Dockyard, other_root: Dockyard, servers: Servers, env,
                                             scratch: Path) -> None:
    htpasswd = add_user(scratch, env, "carol", "c4rol")
    port = free_port()
    cfg = scratch / "distribution.yml"
    cfg.write_text(f"""version: 0.1
storage:
  filesystem:
    rootdirectory: {scratch / 'distribution'}
http:
  addr: 127.0.0.1:{port}
auth:
  htpasswd:
    realm: test
    path: {htpasswd}
""")
    servers.start(["docker-registry", "serve", str(cfg)], port)
    host = f"127.0.0.1:{port}"
    p = run(busybox, env, "login", "-u", "carol", "--password-stdin", host, input="bad", check=False)
    assert p.returncode == 1 and "unauthorized" in p.stderr
    run(busybox, env, "login", "-u", "carol", "--password-stdin", host, input="c4rol")
    run(busybox, env, "tag", "busybox", f"{host}/dist/bb:1")
    run(busybox, env, "push", f"{host}/dist/bb:1")
    run(busybox, env, "tag", "busybox", f"{host}/dist/copy:1")
    assert "Mounted from dist/bb" in run(busybox, env, "push", f"{host}/dist/copy:1").stdout
    run(other_root, env, "pull", f"{host}/dist/bb:1")
    assert inspect(other_root, env, f"{host}/dist/bb:1")["Id"] == inspect(busybox, env, "busybox")["Id"]
    assert run(other_root, env, "run", "--rm", f"{host}/dist/bb:1", "true").returncode == 0


@pytest.mark.root  # scripts/setup.sh installs skopeo: missing, this fails
def test_skopeo_interop(busybox: Dockyard, other_root: Dockyard, servers: Servers, env,
                        busybox_archive: Path) -> None:
    port = servers.dockyard_registry()
    host = f"127.0.0.1:{port}"
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{busybox_archive}",
                    f"docker://{host}/by/skopeo:1"], check=True, capture_output=True)
    run(other_root, env, "pull", f"{host}/by/skopeo:1")
    assert run(other_root, env, "run", "--rm", f"{host}/by/skopeo:1", "echo", "hi").stdout.strip() == "hi"

    run(busybox, env, "tag", "busybox", f"{host}/by/dockyard:2")
    run(busybox, env, "push", f"{host}/by/dockyard:2")
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{host}/by/dockyard:2"],
                         check=True, capture_output=True, text=True).stdout
    info = json.loads(out)
    repo_digest = [d for d in inspect(busybox, env, f"{host}/by/dockyard:2")["RepoDigests"] if "dockyard" in d]
    assert info["Digest"] == repo_digest[0].split("@")[1]


# --- faults, against a registry the test controls ---------------------------------------------------

def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FakeRegistry:
    """A tiny read-only registry on a thread: blobs and manifests by digest, tags, optional faults."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.wrong_digest_header = False
        self.drop_once: set[str] = set()        # blob digests whose first GET is cut half-way
        self.ignore_range = False               # answer a Range request with the whole blob (200)
        self.requests: list[tuple[str, str, str]] = []
        self.port = free_port()
        self._ready = threading.Event()

    def add_image(self, tag: str, layers: list[tuple[bytes, str]], platform: str = "amd64") -> str:
        diff_ids, descs = [], []
        for tar, kind in layers:
            blob = {"gzip": lambda t: gzip.compress(t, mtime=0), "zstd": zstandard.compress,
                    "none": lambda t: t}[kind](tar)
            media = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
                     "none": "application/vnd.oci.image.layer.v1.tar"}[kind]
            self.blobs[sha(blob)] = blob
            diff_ids.append(sha(tar))
            descs.append({"mediaType": media, "digest": sha(blob), "size": len(blob)})
        config = json.dumps({"architecture": platform, "os": "linux",
                             "config": {"Cmd": ["/bin/sh"]},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        self.blobs[sha(config)] = config
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": sha(config), "size": len(config)},
                               "layers": descs}).encode()
        self.manifests[sha(manifest)] = (manifest, "application/vnd.oci.image.manifest.v1+json")
        self.manifests[tag] = self.manifests[sha(manifest)]
        return sha(manifest)

    def add_index(self, tag: str, entries: dict[str, str]) -> str:
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                           "digest": d, "size": len(self.manifests[d][0]),
                                           "platform": {"os": "linux", "architecture": arch}}
                                          for arch, d in entries.items()]}).encode()
        self.manifests[tag] = self.manifests[sha(index)] = (index, "application/vnd.oci.image.index.v1+json")
        return sha(index)

    async def _manifest(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        self.requests.append(("manifest", ref, ""))
        if ref not in self.manifests:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]},
                                     status=404)
        data, media = self.manifests[ref]
        digest = sha(data + b" ") if self.wrong_digest_header else sha(data)
        return web.Response(body=data, headers={"Content-Type": media, "Docker-Content-Digest": digest})

    async def _tags(self, request: web.Request) -> web.Response:
        """Two tags a page, with a ``Link`` to the next one, as Docker Hub paginates."""
        self.requests.append(("tags", request.query.get("last", ""), ""))
        tags = sorted(t for t in self.manifests if not t.startswith("sha256:"))
        last = request.query.get("last")
        rest = [t for t in tags if not last or t > last]
        headers = {}
        if len(rest) > 2:
            headers["Link"] = f'</v2/{request.match_info["name"]}/tags/list?n=2&last={rest[1]}>; rel="next"'
        return web.json_response({"name": request.match_info["name"], "tags": rest[:2]}, headers=headers)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        rng = request.headers.get("Range", "")
        self.requests.append(("blob", digest, rng))
        if self.ignore_range:
            rng = ""
        data = self.blobs[digest]
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        resp = web.StreamResponse(status=206 if rng else 200)
        resp.content_length = len(data) - start
        await resp.prepare(request)
        if digest in self.drop_once:
            self.drop_once.discard(digest)
            await resp.write(data[start:start + (len(data) - start) // 2])
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(data[start:])
        return resp

    def __enter__(self) -> Self:
        import asyncio

        async def ping(_: web.Request) -> web.Response:
            return web.json_response({})

        app = web.Application()
        app.router.add_get("/v2/", ping)
        app.router.add_get("/v2/{name:.+}/manifests/{ref}", self._manifest)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self._blob)
        app.router.add_get("/v2/{name:.+}/tags/list", self._tags)
        self.loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.runner = web.AppRunner(app)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
            self._ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_manifest_digest_mismatch_is_refused(dockyard: Dockyard, env) -> None:
    with FakeRegistry() as reg:
        digest = reg.add_image("v1", [(layer_tar({"a": b"x"}), "gzip")])
        reg.wrong_digest_header = True
        p = run(dockyard, env, "pull", f"127.0.0.1:{reg.port}/fake:v1", check=False)
        assert p.returncode != 0 and "digest mismatch" in p.stderr
        # By digest: the reference's digest is checked, whatever the header says.
        reg.manifests[digest] = (reg.manifests[digest][0] + b"\n", reg.manifests[digest][1])
        p = run(dockyard, env, "pull", f"127.0.0.1:{reg.port}/fake@{digest}", check=False)
        assert p.returncode != 0 and "digest mismatch" in p.stderr
    assert run(dockyard, env, "images", "-q").stdout.strip() == ""


def test_blob_digest_mismatch_leaves_nothing(dockyard: Dockyard, env) -> None:
    with FakeRegistry() as reg:
        reg.add_image("v1", [(layer_tar({"a": b"one"}), "gzip"), (layer_tar({"b": b"two"}), "gzip")])
        bad = list(reg.blobs)[1]
        reg.blobs[bad] = reg.blobs[bad][:-1] + bytes([reg.blobs[bad][-1] ^ 1])
        p = run(dockyard, env, "pull", f"127.0.0.1:{reg.port}/fake:v1", check=False)
        assert p.returncode != 0 and "digest mismatch" in p.stderr
    assert run(dockyard, env, "images", "-q").stdout.strip() == ""


def test_index_zstd_uncompressed_and_resume_after_dropped_connection(dockyard: Dockyard, env) -> None:
    big = os.urandom(4 << 20)
    with FakeRegistry() as reg:
        amd = reg.add_image("amd", [(layer_tar({"big": big}), "none"), (layer_tar({"z": b"zstd!"}), "zstd"),
                                    (layer_tar({"g": b"gz"}), "gzip")])
        arm = reg.add_image("arm", [(layer_tar({"arm": b"arm"}), "gzip")], platform="arm64")
        index = reg.add_index("multi", {"amd64": amd, "arm64": arm})
        big_blob = next(d for d, b in reg.blobs.items() if len(b) > (4 << 20))
        reg.drop_once.add(big_blob)
        out = run(dockyard, env, "pull", f"127.0.0.1:{reg.port}/fake:multi").stdout
        assert f"Digest: {index}" in out
        ranges = [r for kind, d, r in reg.requests if kind == "blob" and d == big_blob]
        assert ranges[0] == "" and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
        info = inspect(dockyard, env, f"127.0.0.1:{reg.port}/fake:multi")
        assert info["Architecture"] == "amd64" and len(info["RootFS"]["Layers"]) == 3
        assert info["RepoDigests"] == [f"127.0.0.1:{reg.port}/fake@{index}"]

        # Another tag with the same layers downloads nothing.
        reg.requests.clear()
        reg.manifests["again"] = reg.manifests[amd]
        out = run(dockyard, env, "pull", f"127.0.0.1:{reg.port}/fake:again").stdout
        assert not [r for r in reg.requests if r[0] == "blob"]

        run(dockyard, env, "pull", "--platform", "linux/arm64", f"127.0.0.1:{reg.port}/fake:multi")
        assert inspect(dockyard, env, f"127.0.0.1:{reg.port}/fake:multi")["Architecture"] == "arm64"


def test_resume_from_a_registry_that_ignores_range(dockyard: Dockyard, env) -> None:
    """The whole blob comes again: the bytes the ingest has are skipped, the rest appended."""
    big = os.urandom(3 << 20)
    with FakeRegistry() as reg:
        reg.add_image("v1", [(layer_tar({"big": big}), "none"), (layer_tar({"top": b"top"}), "gzip")])
        big_blob = next(d for d, b in reg.blobs.items() if len(b) > (3 << 20))
        reg.drop_once.add(big_blob)
        reg.ignore_range = True
        out = run(dockyard, env, "pull", f"127.0.0.1:{reg.port}/fake:v1").stdout
        ranges = [r for kind, d, r in reg.requests if kind == "blob" and d == big_blob]
        assert len(ranges) == 2 and ranges[1].startswith("bytes=") and "Resuming from byte" in out
    # Verified on the way in: the blob's digest at commit, the unpacked tar's diff ID at unpack.
    assert len(inspect(dockyard, env, f"127.0.0.1:{reg.port}/fake:v1")["RootFS"]["Layers"]) == 2


def test_connection_dropped_every_time_gives_a_clear_error(dockyard: Dockyard, env) -> None:
    with FakeRegistry() as reg:
        reg.add_image("v1", [(layer_tar({"big": os.urandom(1 << 20)}), "none")])
        big_blob = next(d for d, b in reg.blobs.items() if len(b) > (1 << 20))

        class Always(set):
            def discard(self, _: object) -> None:
                pass

        reg.drop_once = Always({big_blob})
        p = run(dockyard, env, "pull", f"127.0.0.1:{reg.port}/fake:v1", check=False)
        assert p.returncode != 0
        assert "connection lost after 4 attempts" in p.stderr
        assert run(dockyard, env, "images", "-q").stdout.strip() == ""

        # The connection holds again: the next pull resumes from what the ingest has.
        reg.drop_once = set()
        reg.requests.clear()
        out = run(dockyard, env, "pull", f"127.0.0.1:{reg.port}/fake:v1").stdout
        ranges = [r for kind, d, r in reg.requests if kind == "blob" and d == big_blob]
        assert len(ranges) == 1 and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"
        assert "Resuming from byte" in out
    assert len(run(dockyard, env, "images", "-q").stdout.split()) == 1


def test_pull_all_tags_follows_pages(dockyard: Dockyard, env) -> None:
    with FakeRegistry() as reg:
        amd = reg.add_image("a", [(layer_tar({"a": b"a"}), "gzip")])
        reg.add_image("b", [(layer_tar({"b": b"b"}), "gzip")])
        arm = reg.add_image("arm", [(layer_tar({"arm": b"arm"}), "gzip")], platform="arm64")
        reg.add_index("c-multi", {"amd64": amd, "arm64": arm})
        del reg.manifests["arm"]
        p = run(dockyard, env, "pull", "-a", f"127.0.0.1:{reg.port}/fake:a", check=False)
        assert p.returncode != 0 and "tag can't be used with --all-tags/-a" in p.stderr
        out = run(dockyard, env, "pull", "-a", f"127.0.0.1:{reg.port}/fake").stdout.splitlines()
        assert [r for r in reg.requests if r[0] == "tags"] == [("tags", "", ""), ("tags", "b", "")]
    assert [l for l in out if ": Pulling from fake" in l] == \
        ["a: Pulling from fake", "b: Pulling from fake", "c-multi: Pulling from fake"]
    assert out[-2:] == [f"Status: Downloaded newer image for 127.0.0.1:{reg.port}/fake",
                        f"127.0.0.1:{reg.port}/fake"]
    names = run(dockyard, env, "images", "--format", "{{.Tag}} {{.ID}}").stdout.split("\n")
    tags = dict(l.split() for l in names if l)
    assert sorted(tags) == ["a", "b", "c-multi"] and tags["a"] == tags["c-multi"] != tags["b"]
