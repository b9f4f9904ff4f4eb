"""podman (Debian's, with runc) pulls from and pushes to dockyard's registry."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from test_registry_clients import Registry, skopeo, start  # noqa: F401  (fixture `servers` below)
from test_registry_clients import servers  # noqa: F401

pytestmark = pytest.mark.root


def podman(tmp: Path, run: Path, *args: str) -> str:
    cmd = ["podman", "--root", str(tmp / "pm-root"), "--runroot", str(run), "--storage-driver", "vfs",
           "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"podman {' '.join(args)}: {p.stderr}"
    return p.stdout


def test_podman_pull_and_push(tmp_path: Path, servers, busybox_archive) -> None:  # noqa: F811
    import tempfile

    run = Path(tempfile.mkdtemp(prefix="pm-", dir="/run"))  # podman wants a short runroot (< 50 chars)
    try:
        _pull_and_push(tmp_path, run, servers, busybox_archive)
    finally:
        subprocess.run(["rm", "-rf", str(run)], check=False)


def _pull_and_push(tmp_path: Path, run: Path, servers, busybox_archive) -> None:  # noqa: F811
    reg = start(servers, tmp_path / "reg")
    skopeo("copy", "-q", "--dest-tls-verify=false", f"docker-archive:{busybox_archive}",
           f"docker://{reg.addr}/library/bb:v1")
    image_id = podman(tmp_path, run, "pull", "-q", "--tls-verify=false", f"{reg.addr}/library/bb:v1").strip()
    assert len(image_id) == 64
    podman(tmp_path, run, "push", "-q", "--tls-verify=false", f"{reg.addr}/library/bb:v1", f"{reg.addr}/team/copy:v2")
    pushed = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{reg.addr}/team/copy:v2").stdout)
    original = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{reg.addr}/library/bb:v1").stdout)
    assert len(pushed["Layers"]) == len(original["Layers"]) == 1
    cfg = json.loads(skopeo("inspect", "--config", "--tls-verify=false", f"docker://{reg.addr}/team/copy:v2").stdout)
    assert cfg["config"]["Cmd"] == ["sh"]
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{reg.addr}/team/copy").stdout)
    assert tags["Tags"] == ["v2"]
