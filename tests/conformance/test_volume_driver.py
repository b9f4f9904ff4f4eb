"""The VolumeDriver contract, run over every implementation we can start here: the local driver (a
plain directory and a tmpfs with options) and a Docker volume plugin (the test plugin, through
PluginDriver).  Another driver joins by adding a factory to DRIVERS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.errors import NotFound
from dockyard.snapshots.mount import is_mounted
from dockyard.volumes import VolumeDriver
from dockyard.volumes.local import LocalDriver
from dockyard.volumes.plugin import PluginDriver, find_plugin

HELPERS = Path(__file__).resolve().parent.parent / "helpers"


def _local(tmp: Path) -> Iterator[tuple[VolumeDriver, dict[str, str]]]:
    yield LocalDriver(tmp / "volumes"), {}


def _local_tmpfs(tmp: Path) -> Iterator[tuple[VolumeDriver, dict[str, str]]]:
    yield LocalDriver(tmp / "volumes"), {"type": "tmpfs", "device": "tmpfs", "o": "size=4m"}


def _plugin(tmp: Path) -> Iterator[tuple[VolumeDriver, dict[str, str]]]:
    sockets = tmp / "plugins"
    sockets.mkdir()
    sock = sockets / "conformance.sock"
    proc = subprocess.Popen([sys.executable, str(HELPERS / "volume_plugin.py"), "--socket", str(sock),
                             "--dir", str(tmp / "plugin")])
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        address = find_plugin("conformance", [sockets])
        assert address is not None
        yield PluginDriver.activate("conformance", address), {"colour": "blue"}
    finally:
        proc.kill()
        proc.wait()


DRIVERS: dict[str, Callable[[Path], Iterator[tuple[VolumeDriver, dict[str, str]]]]] = {
    "local": _local,
    "local-tmpfs": _local_tmpfs,
    "plugin": _plugin,
}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request, tmp_path_factory):
    if request.param == "local-tmpfs" and os.geteuid() != 0:
        raise AssertionError("mounting a tmpfs needs root: the suite runs as root")
    tmp = Path(tmp_path_factory.mktemp("voldrv"))
    gen = DRIVERS[request.param](tmp)
    drv, opts = next(gen)
    yield drv, opts
    for v in drv.list():  # leave nothing mounted behind, even when a test failed
        p = drv.path(v.name)
        while p is not None and is_mounted(p):
            subprocess.run(["umount", "-l", str(p)], check=False)
    gen.close()


def test_create_get_list_remove(driver):
    drv, opts = driver
    vol = drv.create("conf1", opts)
    assert vol.name == "conf1" and vol.driver == drv.name
    assert drv.get("conf1").name == "conf1"
    assert "conf1" in [v.name for v in drv.list()]
    assert drv.capabilities()["Scope"] in ("local", "global")
    drv.remove("conf1")
    with pytest.raises(NotFound):
        drv.get("conf1")
    assert "conf1" not in [v.name for v in drv.list()]


def test_mount_is_shared_and_counted(driver):
    drv, opts = driver
    drv.create("conf2", opts)
    p1 = drv.mount("conf2", "ref-a")
    p2 = drv.mount("conf2", "ref-b")
    assert p1 == p2 and p1.is_dir()
    (p1 / "f").write_text("x")
    assert drv.path("conf2") == p1
    drv.unmount("conf2", "ref-a")
    assert (p2 / "f").read_text() == "x"  # still mounted for ref-b
    drv.mount("conf2", "ref-b")           # the same ref twice counts once
    drv.unmount("conf2", "ref-b")
    drv.unmount("conf2", "ref-unknown")   # unknown refs are no-ops
    drv.remove("conf2")


def test_data_after_last_unmount(driver):
    """Disk-backed volumes keep their data across unmounts; a tmpfs volume (Docker's local driver
    with type=tmpfs) starts empty again once its last user unmounted it, as in Docker."""
    drv, opts = driver
    drv.create("conf3", opts)
    p = drv.mount("conf3", "r1")
    (p / "keep").write_text("kept")
    drv.unmount("conf3", "r1")
    again = drv.mount("conf3", "r2") / "keep"
    if opts.get("type") == "tmpfs":
        assert not again.exists()
    else:
        assert again.read_text() == "kept"
    drv.unmount("conf3", "r2")
    drv.remove("conf3")
