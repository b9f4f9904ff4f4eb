"""Sync between an Azure Blob volume's local cache and its blob container; the sync agent.

One volume's state directory (made by :mod:`dockyard.volumes.azureblob`)::

    <state>/<name>/
      _data/             the cache: what containers mount; one file per blob, "/" = directories
      volume.json        account, container, endpoint, options (no secret)
      credentials.json   {"storage_account_key": ...}, mode 0600
      index.json         what was last synced, per file: size, mtime_ns (local) and etag (remote)
      staging/           downloads in progress (same filesystem as _data: renamed into place)
      sync.lock          flock held by whoever reads or writes index.json and the cache for a sync
      agent.pid          the running agent's pid, written once its watches are in place
      sync.log           the agent's log (file names and errors; never the key)

:class:`VolumeSync` compares three views -- the local files, the blobs, and the index of the last sync
-- and acts per file: changed here -> upload, changed there -> download, unchanged here but gone there
-> delete here, and the reverse; both changed -> the newer modification time wins.  ``mode="push"``
(flush) only sends local changes.  Uploads are staged blocks committed at once, downloads land in
``staging/`` and are renamed into place, so neither side ever sees half a file; both stream in 4 MiB
pieces, so file size does not matter.

The agent (``python -m dockyard.volumes.azuresync --state DIR --volume NAME``, started detached by
the driver on the first mount, stopped with SIGTERM on the last unmount) watches ``_data`` with
inotify: IN_CLOSE_WRITE and IN_MOVED_TO upload, IN_DELETE and unpaired IN_MOVED_FROM delete, a
paired IN_MOVED_FROM/IN_MOVED_TO is a server-side move.  Events are batched for DEBOUNCE seconds;
failures are retried every RETRY seconds; a queue overflow triggers a full push.  SIGTERM finishes
the batch in hand and what is queued, then exits.  Not synced: empty directories, symlinks and
other special files, ownership and permissions; hard links are seen when a sync runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import logging
import os
import signal
import stat
import struct
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound

log = logging.getLogger("dockyard.volumes.azuresync")

PIECE = 4 * 1024 * 1024
DEBOUNCE = 0.2
RETRY = 5.0
CONCURRENCY = 4

IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x8, 0x40, 0x80, 0x100, 0x200
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR, IN_ONLYDIR = 0x4000, 0x8000, 0x40000000, 0x01000000
WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ONLYDIR
_EVENT = struct.Struct("iIII")


@dataclass
class Entry:
    size: int
    mtime_ns: int
    etag: str


@contextlib.contextmanager
def sync_lock(vol: Path) -> Iterator[None]:
    """Whoever syncs (the agent's batches, the driver's full syncs) holds this flock."""
    fd = os.open(vol / "sync.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def open_store(vol: Path, **kw: Any) -> Any:
    """The AzureBlobStorage of a volume, from its state directory (InvalidArgument if unreadable)."""
    from dockyard.registry.storage.azureblob import AzureBlobStorage
    try:
        cfg = json.loads((vol / "volume.json").read_text())
        key = json.loads((vol / "credentials.json").read_text())["storage_account_key"]
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"volume {vol.name}: unreadable configuration ({type(exc).__name__})") from exc
    return AzureBlobStorage(cfg["account"], key, cfg["container"], endpoint=cfg["endpoint"], **kw)


class VolumeSync:
    """Sync operations on one volume; the caller holds :func:`sync_lock` and calls load/save."""

    def __init__(self, vol: Path, store: Any) -> None:
        self.vol, self.data, self.store = vol, vol / "_data", store
        self.index: dict[str, Entry] = {}

    def load(self) -> None:
        try:
            raw = json.loads((self.vol / "index.json").read_text())
        except (OSError, ValueError):
            raw = {}
        self.index = {k: Entry(*v) for k, v in raw.get("files", {}).items()}

    def save(self) -> None:
        tmp = self.vol / f"index.json.{os.getpid()}"
        tmp.write_text(json.dumps({"files": {k: [e.size, e.mtime_ns, e.etag] for k, e in self.index.items()}}))
        tmp.replace(self.vol / "index.json")

    # -- single files -------------------------------------------------------------------------

    def _stat(self, rel: str) -> os.stat_result | None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return os.lstat(self.data / rel)
        return None

    def changed(self, rel: str, st: os.stat_result) -> bool:
        e = self.index.get(rel)
        return e is None or (e.size, e.mtime_ns) != (st.st_size, st.st_mtime_ns)

    async def upload(self, rel: str) -> None:
        """Stream the local file up (gone meanwhile: nothing to do; its delete event follows)."""
        # Blocking reads of the local cache are deliberate: page-cache speed, and the agent's
        # loop has nothing else to serve meanwhile.
        with contextlib.ExitStack() as stack:
            try:
                f = stack.enter_context(open(self.data / rel, "rb"))  # noqa: ASYNC230
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return
            st = os.fstat(f.fileno())       # taken first: a write during the upload shows as a change
            w = await self.store.writer(rel)
            try:
                while piece := f.read(PIECE):
                    await w.write(piece)
            except BaseException:
                await w.cancel()
                raise
            await w.commit()
        self.index[rel] = Entry(st.st_size, st.st_mtime_ns, w.etag)
        log.info("uploaded %s (%d bytes)", rel, st.st_size)

    async def download(self, rel: str, etag: str, modified: float) -> None:
        dest = self.data / rel
        if dest.is_dir() and not dest.is_symlink():
            log.warning("not downloading %s: a local directory has that name", rel)
            return
        (self.vol / "staging").mkdir(exist_ok=True)
        tmp = self.vol / "staging" / uuid.uuid4().hex
        try:
            with open(tmp, "wb") as f:  # noqa: ASYNC230  (see upload)
                await self.store.download_to(rel, f)
            os.utime(tmp, (modified, modified))
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                log.warning("not downloading %s: a local file is in the way", rel)
                return
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        st = os.lstat(dest)
        self.index[rel] = Entry(st.st_size, st.st_mtime_ns, etag)
        log.info("downloaded %s (%d bytes)", rel, st.st_size)

    async def delete_remote(self, rel: str) -> None:
        with contextlib.suppress(NotFound):
            await self.store.delete_file(rel)
        self.index.pop(rel, None)
        log.info("deleted %s", rel)

    def delete_local(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.data / rel)
        self.index.pop(rel, None)
        parent = (self.data / rel).parent
        while parent != self.data:               # drop directories that this emptied
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        log.info("removed %s (deleted remotely)", rel)

    # -- what the agent calls -----------------------------------------------------------------

    async def reconcile(self, rel: str) -> None:
        """Push the local state of ``rel`` (a file, a directory, or a path that is gone)."""
        st = self._stat(rel)
        if st is None:
            for k in [k for k in self.index if k == rel or k.startswith(rel + "/")]:
                await self.delete_remote(k)
        elif stat.S_ISDIR(st.st_mode):
            for sub in local_files(self.data / rel, rel):
                if self.changed(sub, os.lstat(self.data / sub)):
                    await self.upload(sub)
        elif stat.S_ISREG(st.st_mode) and self.changed(rel, st):
            await self.upload(rel)

    async def rename(self, src: str, dst: str) -> None:
        """A local rename: server-side moves for what was synced and is unchanged, then reconcile."""
        for k in [k for k in self.index if k == src or k.startswith(src + "/")]:
            new = dst + k[len(src):]
            st = self._stat(new)
            entry = self.index.pop(k)
            if st is not None and (st.st_size, st.st_mtime_ns) == (entry.size, entry.mtime_ns):
                try:
                    await self.store.move(k, new)
                    self.index[new] = Entry(entry.size, entry.mtime_ns, await self.store.etag(new))
                    log.info("moved %s -> %s", k, new)
                    continue
                except NotFound:
                    pass
            self.index[k] = entry
            await self.delete_remote(k)
        await self.reconcile(dst)

    # -- full sync ----------------------------------------------------------------------------

    async def full_sync(self, mode: str = "both") -> dict[str, int]:
        """Compare local, remote and index for every file and act (see the module docstring)."""
        local: dict[str, tuple[int, int, float]] = {}
        for rel in local_files(self.data, ""):
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(self.data / rel)
                local[rel] = (st.st_size, st.st_mtime_ns, st.st_mtime)
        remote: dict[str, tuple[int, str, float]] = {}
        async for rel, size, etag, modified in self.store.list_files(""):
            if valid_name(rel):
                remote[rel] = (size, etag, modified)
            else:
                log.warning("skipping blob %r: not a usable file name", rel)
        counts = dict.fromkeys(("upload", "download", "delete_remote", "delete_local"), 0)
        actions: list[tuple[str, str]] = []
        for rel in sorted(set(local) | set(remote) | set(self.index)):
            e, lo, re_ = self.index.get(rel), local.get(rel), remote.get(rel)
            lchg = lo is not None and (e is None or (lo[0], lo[1]) != (e.size, e.mtime_ns))
            rchg = re_ is not None and (e is None or re_[1] != e.etag)
            if lo and re_:
                if lchg and (not rchg or mode == "push" or lo[2] >= re_[2]):
                    actions.append(("upload", rel))
                elif rchg and mode == "both":
                    actions.append(("download", rel))
            elif lo:
                if e is not None and not lchg:
                    if mode == "both":
                        actions.append(("delete_local", rel))
                else:
                    actions.append(("upload", rel))
            elif re_:
                if e is not None and not rchg:
                    actions.append(("delete_remote", rel))
                elif mode == "both":
                    actions.append(("download", rel))
            else:
                self.index.pop(rel, None)
        limit = asyncio.Semaphore(CONCURRENCY)

        async def act(kind: str, rel: str) -> None:
            async with limit:
                if kind == "upload":
                    await self.upload(rel)
                elif kind == "download":
                    await self.download(rel, remote[rel][1], remote[rel][2])
                elif kind == "delete_remote":
                    await self.delete_remote(rel)
                else:
                    self.delete_local(rel)
            counts[kind] += 1

        await asyncio.gather(*(act(kind, rel) for kind, rel in actions))
        return counts


def valid_name(rel: str) -> bool:
    """A name usable both as a blob and as a relative file path (surrogates: undecodable bytes)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(rel) and not rel.startswith("/") and "\\" not in rel and "\x00" not in rel and \
        all(seg not in ("", ".", "..") for seg in rel.split("/"))


def local_files(top: Path, rel: str) -> Iterator[str]:
    """Regular files below ``top`` as "/"-paths relative to the cache root (``rel`` is top's)."""
    for dirpath, dirnames, names in os.walk(top):
        base = os.path.relpath(dirpath, top)
        prefix = rel if base == "." else (f"{rel}/{base}" if rel else base)
        dirnames.sort()
        for name in sorted(names):
            path = f"{prefix}/{name}" if prefix else name
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISREG(os.lstat(os.path.join(dirpath, name)).st_mode):
                    if valid_name(path):
                        yield path
                    else:
                        log.warning("skipping %r: not a usable blob name", path)


# -- the agent ------------------------------------------------------------------------------


class Inotify:
    """Just enough of inotify(7) through ctypes (no third-party package)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    def add(self, path: Path) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), WATCH_MASK)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path} failed")
        return int(wd)

    def remove(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)

    def read(self) -> list[tuple[int, int, int, str]]:
        out: list[tuple[int, int, int, str]] = []
        while True:
            try:
                buf = os.read(self.fd, 256 * 1024)
            except BlockingIOError:
                return out
            pos = 0
            while pos < len(buf):
                wd, mask, cookie, length = _EVENT.unpack_from(buf, pos)
                name = os.fsdecode(buf[pos + _EVENT.size:pos + _EVENT.size + length].rstrip(b"\0"))
                out.append((wd, mask, cookie, name))
                pos += _EVENT.size + length


class Agent:
    def __init__(self, vol: Path) -> None:
        self.vol = vol
        self.sync = VolumeSync(vol, open_store(vol))
        self.inotify = Inotify()
        self.wds: dict[int, str] = {}           # watch descriptor -> directory relative to _data
        self.events: list[tuple[int, int, int, str]] = []
        self.retry: set[str] = set()
        self.wake = asyncio.Event()
        self.stopping = False

    def watch_tree(self, rel: str) -> None:
        top = self.sync.data / rel if rel else self.sync.data
        for dirpath, _, _ in os.walk(top):
            sub = os.path.relpath(dirpath, self.sync.data)
            try:
                self.wds[self.inotify.add(Path(dirpath))] = "" if sub == "." else sub
            except OSError as exc:     # e.g. fs.inotify.max_user_watches: synced by full syncs only
                log.warning("cannot watch %s: %s", dirpath, exc)

    def _readable(self) -> None:
        self.events += self.inotify.read()
        self.wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.watch_tree("")
        loop.add_reader(self.inotify.fd, self._readable)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        tmp = self.vol / f"agent.pid.{os.getpid()}"
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(self.vol / "agent.pid")   # ready: from here on no event is missed
        log.info("agent %d watching %s", os.getpid(), self.sync.data)
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), RETRY if self.retry else None)
                if not self.stopping:
                    await asyncio.sleep(DEBOUNCE)        # let a burst of events arrive together
                self.wake.clear()
                self._readable()
                await self.process()
                if self.stopping and not self.events:
                    break
        finally:
            await self.sync.store.close()
            with contextlib.suppress(FileNotFoundError):
                if (self.vol / "agent.pid").read_text().strip() == str(os.getpid()):
                    (self.vol / "agent.pid").unlink()
            log.info("agent %d stopped", os.getpid())

    def _stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def process(self) -> None:
        events, self.events = self.events, []
        moved_from: dict[int, str] = {}
        moves: list[tuple[str, str]] = []
        dirty: dict[str, None] = dict.fromkeys(sorted(self.retry))
        overflow = False
        for wd, mask, cookie, name in events:
            if mask & IN_Q_OVERFLOW:
                overflow = True
            if mask & IN_IGNORED:
                self.wds.pop(wd, None)
            base = self.wds.get(wd)
            if base is None or not name:
                continue
            rel = f"{base}/{name}" if base else name
            if mask & IN_MOVED_FROM:
                moved_from[cookie] = rel
            elif mask & IN_MOVED_TO and cookie in moved_from:
                moves.append((moved_from.pop(cookie), rel))
            elif mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE) or mask & IN_CREATE and mask & IN_ISDIR:
                dirty[rel] = None
        for rel in moved_from.values():                # moved out of the volume: gone
            self._forget_watches(rel)
            dirty[rel] = None
        if not (dirty or moves or overflow):
            return
        self.retry.clear()
        with sync_lock(self.vol):
            self.sync.load()
            if overflow:
                self.watch_tree("")
                await self._guard("*", self.sync.full_sync("push"))
            for src, dst in moves:
                self._rename_watches(src, dst)
                await self._guard(dst, self.sync.rename(src, dst), also=src)
            for rel in dirty:
                if (self.sync.data / rel).is_dir():
                    self.watch_tree(rel)
                await self._guard(rel, self.sync.reconcile(rel))
            self.sync.save()

    async def _guard(self, rel: str, work: Any, also: str | None = None) -> None:
        try:
            await work
        except (DockyardError, OSError) as exc:
            log.error("sync of %s failed, retrying in %ss: %s", rel, RETRY, exc)
            self.retry.update(p for p in (rel, also) if p and p != "*")

    def _rename_watches(self, src: str, dst: str) -> None:
        for wd, path in list(self.wds.items()):
            if path == src or path.startswith(src + "/"):
                self.wds[wd] = dst + path[len(src):]

    def _forget_watches(self, rel: str) -> None:
        for wd, path in list(self.wds.items()):
            if path == rel or path.startswith(rel + "/"):
                self.inotify.remove(wd)
                self.wds.pop(wd, None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dockyard.volumes.azuresync",
                                 description="Sync agent of one Azure Blob volume (started by the driver).")
    ap.add_argument("--state", required=True, help="the driver's state directory")
    ap.add_argument("--volume", required=True, help="the volume name")
    ap.add_argument("--detach", action="store_true", help="fork into the background and return at once")
    args = ap.parse_args(argv)
    vol = Path(args.state) / args.volume
    if not (vol / "volume.json").is_file():
        print(f"no such azureblob volume: {args.volume}", file=sys.stderr)
        return 1
    vol = vol.resolve()
    if args.detach:
        if os.fork() > 0:                 # the driver waits for this parent; the child lives on
            os._exit(0)
        os.setsid()
        os.chdir("/")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)   # no request logs (they name URLs, headers)
    asyncio.run(Agent(vol).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
