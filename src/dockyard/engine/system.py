"""System facts: ``dockyard version`` and ``dockyard info``, in the shape Docker reports them."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dockyard

if TYPE_CHECKING:
    from dockyard.engine import Engine


@lru_cache(maxsize=None)
def tool_version(cmd: str) -> str:
    """First version-looking token of ``cmd --version`` ("" when the tool is missing)."""
    path = shutil.which(cmd)
    if not path:
        return ""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"(\d+\.\d+(?:\.\d+)?(?:[-+~][\w.+~-]*)?)", out)
    return m.group(1) if m else out.strip().splitlines()[0] if out.strip() else ""


def cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


def backing_fs(path: Path) -> str:
    try:
        out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
    return {"ext2/ext3": "extfs"}.get(out, out)


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


class SystemEngine:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def version(self) -> dict[str, Any]:
        return {
            "Client": {
                "Version": dockyard.__version__,
                "ApiVersion": dockyard.API_VERSION,
                "PythonVersion": platform.python_version(),
                "Os": "linux",
                "Arch": _arch(),
            },
            "Server": {
                "Version": dockyard.__version__,
                "ApiVersion": dockyard.API_VERSION,
                "MinAPIVersion": "1.24",
                "Os": "linux",
                "Arch": _arch(),
                "KernelVersion": platform.release(),
                "Components": [
                    {"Name": "Engine", "Version": dockyard.__version__},
                    {"Name": "runc", "Version": tool_version("runc")},
                    {"Name": "conmon", "Version": tool_version("conmon")},
                ],
            },
        }

    def info(self) -> dict[str, Any]:
        e = self.engine
        images = len(e.db.images())
        containers = {"running": 0, "paused": 0, "stopped": 0}
        conn = e.db.read()
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name='containers'").fetchone():
            for row in conn.execute("SELECT state, COUNT(*) AS n FROM containers GROUP BY state"):
                key = row["state"] if row["state"] in ("running", "paused") else "stopped"
                containers[key] += row["n"]
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return {
            "ID": "",
            "Containers": sum(containers.values()),
            "ContainersRunning": containers["running"],
            "ContainersPaused": containers["paused"],
            "ContainersStopped": containers["stopped"],
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", backing_fs(e.root)], ["Supports d_type", "true"]],
            "DockerRootDir": str(e.root),
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version(),
            "Runtimes": {"runc": {"path": shutil.which("runc") or "runc"}},
            "DefaultRuntime": "runc",
            "RuncVersion": tool_version("runc"),
            "ConmonVersion": tool_version("conmon"),
            "KernelVersion": platform.release(),
            "OperatingSystem": _os_name(),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem,
            "Name": platform.node(),
            "ServerVersion": dockyard.__version__,
            "PythonVersion": sys.version.split()[0],
        }
