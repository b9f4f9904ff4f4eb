"""A pull whose registry dies half-way through a layer, against dockyard's own registry.

A TCP proxy started by the test sits between dockyard and the registry so that "half-way" is exact:
it holds the connection that carries the big layer once 8 MiB of it have passed.  While it holds,
the layer below (busybox's) must already be unpacked and the big layer's first megabytes must be
unpacking -- layers are unpacked as they arrive.  Then
the registry is killed (SIGKILL, by its PID) and the proxy drops every connection: the pull retries,
fails with a clear error and leaves nothing in ``images``.  With the registry back (a new process
on the same storage) the next pull reuses the unpacked layer and resumes the big one from its
ingest's offset."""

# ruff: noqa: F811  -- the fixtures imported from test_remote are parameters of the tests here

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

from conftest import Dockyard
from test_remote import Servers, free_port, inspect, run
from test_remote import env, other_root, servers  # noqa: F401  (fixtures)
from test_remote_index import extend_image

BIG = 32 << 20
HOLD_AFTER = 8 << 20


class HoldingProxy:
    """A TCP proxy on its own thread and event loop, from ``port`` to 127.0.0.1:``upstream``.

    It forwards both ways until one connection has carried ``hold_after`` bytes towards the client;
    then it forwards nothing more on that connection and sets ``held``.  :meth:`cut` aborts every
    connection and closes new ones at once, as a dead registry does; :meth:`retarget` forwards to a
    new upstream, holding nothing."""

    def __init__(self, upstream: int, hold_after: int | None) -> None:
        self.port = free_port()
        self.upstream = upstream
        self.hold_after = hold_after
        self.dead = False
        self.held = threading.Event()
        self.transports: set[asyncio.BaseTransport] = set()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: int | None) -> None:
        sent = 0
        while data := await src.read(1 << 16):
            if limit is not None and sent + len(data) >= limit:
                dst.write(data[: limit - sent])
                await dst.drain()
                self.held.set()
                await asyncio.Event().wait()          # held until cut() aborts the connection
            dst.write(data)
            await dst.drain()
            sent += len(data)
        dst.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.transports.add(writer.transport)
        try:
            if self.dead:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            self.transports.add(up_writer.transport)
            await asyncio.gather(self._pump(reader, up_writer, None),
                                 self._pump(up_reader, writer, self.hold_after), return_exceptions=True)
        except OSError:
            pass
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        def do() -> None:
            self.dead = True
            for t in self.transports:
                t.abort()
        self.loop.call_soon_threadsafe(do)

    def retarget(self, upstream: int) -> None:
        def do() -> None:
            self.upstream, self.hold_after, self.dead = upstream, None, False
        self.loop.call_soon_threadsafe(do)

    def __enter__(self) -> Self:
        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
            self._ready.set()
            self.loop.run_forever()
            server.close()
            for t in self.transports:
                t.abort()
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(server.wait_closed())
            self.loop.close()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_registry(servers: Servers, root: Path) -> tuple[int, int]:
    """(port, pid) of a dockyard registry on ``root``."""
    port = free_port()
    p = servers.start([sys.executable, "-m", "dockyard", "registry", "serve", "--root", str(root),
                       "--addr", f"127.0.0.1:{port}"], port)
    return port, p.pid


def unpacked(root: Path) -> set[str]:
    """Chain IDs the pulling data root has unpacked (read beside the running pull: SQLite WAL)."""
    with sqlite3.connect(f"file:{root / 'dockyard.db'}?mode=ro", uri=True, timeout=30) as conn:
        return {r[0] for r in conn.execute("SELECT chain_id FROM unpacked")}


def unpacking(root: Path) -> int:
    """Bytes of /random.bin in the snapshotter's staging directories (a layer being unpacked)."""
    return sum(p.stat().st_size for p in (root / "snapshots" / "tmp").glob("apply-*/fs/random.bin"))


def ingest_sizes(root: Path) -> list[int]:
    return [p.stat().st_size for p in (root / "content" / "ingest").glob("*/data")]


def test_registry_killed_mid_layer_then_pull_resumes(busybox: Dockyard, other_root: Dockyard, servers: Servers,
                                                      env, busybox_archive: Path, scratch: Path) -> None:
    reg_root = scratch / "registry"
    port, pid = start_registry(servers, reg_root)
    layout = extend_image(busybox_archive, scratch / "layout", f"127.0.0.1:{port}/big/app:1",
                          {"random.bin": os.urandom(BIG)})
    run(busybox, env, "load", "-i", str(layout))
    run(busybox, env, "push", "-q", f"127.0.0.1:{port}/big/app:1")
    source = inspect(busybox, env, f"127.0.0.1:{port}/big/app:1")
    base_chain = source["RootFS"]["Layers"][0]
    assert base_chain == inspect(busybox, env, "busybox")["RootFS"]["Layers"][0]   # one-layer base: chain = diff

    with HoldingProxy(port, HOLD_AFTER) as proxy:
        name = f"127.0.0.1:{proxy.port}/big/app:1"
        e = {k: v for k, v in env.items() if v}
        os.environ.pop("DOCKER_CONFIG", None)
        with open(scratch / "pull1.err", "wb") as stderr:
            pull = other_root.popen("pull", name, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **e})
        try:
            assert proxy.held.wait(60), "the big layer never reached the proxy's hold point"
            # Layer 1 of 2 is unpacked while layer 2 is still (held) mid-download.
            deadline = time.monotonic() + 30
            while base_chain not in unpacked(other_root.root) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert base_chain in unpacked(other_root.root)
            assert pull.poll() is None
            assert max(ingest_sizes(other_root.root), default=0) >= HOLD_AFTER // 2
            # ... and layer 2 itself is being unpacked from the part that has arrived.
            deadline = time.monotonic() + 30
            while not unpacking(other_root.root) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert unpacking(other_root.root) >= HOLD_AFTER // 4

            os.kill(pid, signal.SIGKILL)                  # the registry dies ...
            proxy.cut()                                   # ... and its connections with it
            assert pull.wait(120) != 0
        finally:
            if pull.poll() is None:
                pull.kill()
                pull.wait()
        err = (scratch / "pull1.err").read_text()
        assert "connection lost after" in err
        assert run(other_root, env, "images", "-a", "-q").stdout.strip() == ""
        partial = max(ingest_sizes(other_root.root))
        assert HOLD_AFTER // 2 <= partial < BIG

        port2, _ = start_registry(servers, reg_root)      # back, on the same storage
        proxy.retarget(port2)
        out = run(other_root, env, "pull", name).stdout.splitlines()
    manifest = json.loads(run(busybox, env, "manifest", "inspect", f"127.0.0.1:{port2}/big/app:1").stdout)
    base_short, big_short = (l["digest"][7:19] for l in manifest["layers"])
    assert f"{base_short}: Already exists" in out
    assert f"{base_short}: Extracting" not in out                  # the unpacked layer is reused
    resumed = [l for l in out if l.startswith(f"{big_short}: Resuming from byte ")]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) >= HOLD_AFTER // 2
    assert f"{big_short}: Pull complete" in out
    got = inspect(other_root, env, name)
    assert got["Id"] == source["Id"] and got["RootFS"]["Layers"] == source["RootFS"]["Layers"]
    assert ingest_sizes(other_root.root) == []
    size = run(other_root, env, "run", "--rm", name, "sh", "-c", "wc -c < /random.bin").stdout.strip()
    assert size == str(BIG)
