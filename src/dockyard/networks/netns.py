"""Named network namespaces: one nsfs bind mount per container, ``<dataroot>/netns/<container id>``.

The namespace must outlive the dockyard process that made it (the container joins it through runc,
netavark configures it, ``exec`` and ``container:<name>`` join it later), so it is pinned by a bind
mount of its nsfs file, as ``ip netns add`` does.  util-linux's ``unshare --net=FILE`` creates and
pins it in one step.  After a host reboot the file stays but the mount is gone: :func:`exists`
tells the two apart.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dockyard.errors import Unavailable
from dockyard.snapshots.mount import is_mounted, unmount


def exists(path: Path) -> bool:
    return path.exists() and is_mounted(path)


def create(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if exists(path):
        return path
    path.touch()
    proc = subprocess.run(["unshare", f"--net={path}", "true"], capture_output=True, text=True)
    if proc.returncode != 0:
        path.unlink(missing_ok=True)
        raise Unavailable(f"creating a network namespace: {proc.stderr.strip()}")
    return path


def remove(path: Path) -> None:
    if is_mounted(path):
        unmount(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
