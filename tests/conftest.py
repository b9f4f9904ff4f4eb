"""Shared fixtures: a private data root per test, a dockyard runner, cached base images.

Base images are built once per machine (bootstrapping debian takes minutes) and cached as
docker-archives in /var/cache/dockyard-tests, keyed by the code and host packages they come from;
each test loads them into its own temporary data root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["helpers.azurite_plugin"]

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "dockyard"
CACHE = Path(os.environ.get("DOCKYARD_TEST_CACHE", "/var/cache/dockyard-tests"))


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(prefix) or mp == str(path):
                out.append(mp)
    return out


def stop_containers(path: Path) -> None:
    """Kill what the tests' containers left running under ``path``: containers (runc), their conmon
    monitors and dockyard helper processes (health monitors, exit commands) of that data root."""
    import signal

    for runc_root in path.glob("**/runc"):
        if not runc_root.is_dir():
            continue
        for state in runc_root.iterdir():
            subprocess.run(["runc", "--root", str(runc_root), "kill", "--all", state.name, "KILL"],
                           capture_output=True, check=False)
            subprocess.run(["runc", "--root", str(runc_root), "delete", "-f", state.name],
                           capture_output=True, check=False)
    needle = str(path).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"aardvark-dns" in cmdline:
            continue  # netavark's teardown below stops it when the last record goes
        if needle in cmdline and (b"conmon" in cmdline or b"dockyard" in cmdline):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass
    # The killed containers' networks: `ps -a` records their exits (which tears their network
    # namespaces, veths, port rules and DNS records down), `network prune` removes the networks.
    for db in path.glob("**/dockyard.db"):
        for args in (("ps", "-a", "-q"), ("network", "prune", "-f")):
            subprocess.run([sys.executable, "-m", "dockyard", "--root", str(db.parent), *args],
                           capture_output=True, check=False, timeout=300)


def cleanup_root(path: Path) -> None:
    """Stop containers, unmount everything below ``path`` (deepest first), then remove it."""
    stop_containers(path)
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False, capture_output=True)
    if mounts_under(path):
        raise RuntimeError(f"mounts left under {path}: {mounts_under(path)}")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tmp_root():
    """A fresh data root on a filesystem that supports overlay (not tmpfs /tmp)."""
    d = Path(tempfile.mkdtemp(prefix="dockyard-test-", dir="/var/tmp"))
    try:
        yield d / "root"
    finally:
        cleanup_root(d)


@pytest.fixture
def scratch():
    d = Path(tempfile.mkdtemp(prefix="dockyard-scratch-", dir="/var/tmp"))
    try:
        yield d
    finally:
        cleanup_root(d)


class Dockyard:
    """Runs the real ``dockyard`` command (a new process each time) against one data root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, input: bytes | str | None = None, check: bool = True,
                 timeout: float = 600, env: dict | None = None, binary: bool = False) -> subprocess.CompletedProcess:
        """Run ``dockyard --root ROOT ARGS``; stdout/stderr are text unless ``binary``."""
        cmd = [sys.executable, "-m", "dockyard", "--root", str(self.root), *args]
        data = input.encode() if isinstance(input, str) else input
        p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout,
                           env={**os.environ, **(env or {})})
        p.stderr = p.stderr.decode(errors="replace")
        if not binary:
            p.stdout = p.stdout.decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {p.returncode}\nstdout: {p.stdout!r}\nstderr: {p.stderr}")
        return p

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "dockyard", "--root", str(self.root), *args], **kw)


@pytest.fixture
def dockyard(tmp_root) -> Dockyard:
    return Dockyard(tmp_root)


def _cache_key(kind: str) -> str:
    h = hashlib.sha256(kind.encode())
    for rel in ("images/bootstrap.py", "images/bootstrapper.py", "snapshots/tarfs.py", "images/archive.py"):
        h.update((SRC / rel).read_bytes())
    for pkg in ("busybox-static", "debootstrap"):
        v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True).stdout
        h.update(v.encode())
    return h.hexdigest()[:16]


def cached_image_archive(name: str) -> Path:
    """A docker-archive of a bootstrapped base image, built once per machine."""
    kind = name.replace(":", "-").replace("/", "-")
    target = CACHE / f"{kind}-{_cache_key(kind)}.tar"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob(f"{kind}-*.tar"):
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix="dockyard-cache-", dir="/var/tmp"))
    try:
        d = Dockyard(work / "root")
        d("image", "bootstrap", name, timeout=1800)
        tmp = target.with_suffix(".part")
        d("save", "-o", str(tmp), name)
        tmp.replace(target)
    finally:
        cleanup_root(work)
    return target


@pytest.fixture(scope="session")
def busybox_archive() -> Path:
    return cached_image_archive("busybox")


@pytest.fixture
def busybox(dockyard, busybox_archive) -> Dockyard:
    """A data root with busybox:latest loaded."""
    dockyard("load", "-i", str(busybox_archive))
    return dockyard
