"""The RegistryStorage contract, run over every implementation (the CNCF registry's ``testsuites``).

Implementations: FilesystemStorage (temp dir), AzureBlobStorage (on the session's Azurite), the
in-memory fake below, and EncryptedStorage over a temp-dir FilesystemStorage and over Azurite.
Every test gets a fresh backend; ``make()`` opens another instance over the same backend, as a second
registry process would.

The contract (see ``dockyard/registry/storage/__init__.py``): relative "/"-paths only (InvalidArgument
for anything else); a non-append writer is invisible until ``commit`` and leaves nothing on
``cancel``; ``writer(append=True)`` resumes a file and a cancelled append leaves it as it was;
``reader`` streams ranges and yields nothing at or past the end; ``list`` gives sorted direct children
and NotFound when there are none; ``move`` replaces the destination; ``delete`` takes a file or a whole
prefix; NotFound for every missing path; large files stream without being held in memory.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import os
import shutil
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import InvalidArgument, NotFound
from dockyard.registry.storage import FileInfo

MiB = 1024 * 1024


class MemoryStorage:
    """An in-memory RegistryStorage: the fake that unit tests use, held to the same contract."""

    name = "memory"

    def __init__(self, files: dict[str, tuple[bytes, float]] | None = None) -> None:
        self.files = {} if files is None else files

    @staticmethod
    def _check(path: str, root_ok: bool = False) -> str:
        if root_ok and path == "":
            return path
        if not path or path.startswith("/") or "\\" in path or "\x00" in path or \
                any(p in ("", ".", "..") for p in path.split("/")):
            raise InvalidArgument(f"invalid storage path {path!r}")
        return path

    def _below(self, path: str) -> list[str]:
        return [p for p in self.files if p.startswith(path + "/")]

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        data = await self.read_bytes(path)
        end = len(data) if length is None else min(len(data), offset + length)
        for i in range(offset, end, MiB):
            yield data[i:min(i + MiB, end)]

    async def read_bytes(self, path: str) -> bytes:
        if self._check(path) not in self.files:
            raise NotFound(path)
        return self.files[path][0]

    async def writer(self, path: str, append: bool = False) -> _MemoryWriter:
        self._check(path)
        old = self.files.get(path, (b"", 0.0))[0] if append else b""
        return _MemoryWriter(self, path, old)

    async def put_bytes(self, path: str, data: bytes) -> None:
        self.files[self._check(path)] = (bytes(data), time.time())

    async def stat(self, path: str) -> FileInfo:
        if self._check(path) in self.files:
            return FileInfo(path, len(self.files[path][0]), self.files[path][1])
        if self._below(path):
            return FileInfo(path, 0, 0.0, True)
        raise NotFound(path)

    async def list(self, path: str) -> list[str]:
        start = self._check(path, root_ok=True) + "/" if path else ""
        names = {p[len(start):].split("/")[0] for p in self.files if p.startswith(start)}
        if not names:
            raise NotFound(path)
        return sorted(names)

    async def move(self, src: str, dst: str) -> None:
        self._check(dst)
        if self._check(src) not in self.files:
            raise NotFound(src)
        self.files[dst] = self.files.pop(src)

    async def delete(self, path: str) -> None:
        doomed = ([path] if self._check(path) in self.files else []) + self._below(path)
        if not doomed:
            raise NotFound(path)
        for p in doomed:
            del self.files[p]

    async def close(self) -> None:
        return None


class _MemoryWriter:
    def __init__(self, store: MemoryStorage, path: str, old: bytes) -> None:
        self.store, self.path, self.buf = store, path, bytearray(old)
        self.size = len(old)

    async def write(self, data: bytes) -> None:
        self.buf += data
        self.size += len(data)

    async def commit(self) -> None:
        self.store.files[self.path] = (bytes(self.buf), time.time())

    async def cancel(self) -> None:
        self.buf.clear()


# -- the implementations --------------------------------------------------------------------


@dataclass
class Case:
    kind: str
    make: Callable[[], Any]          # a new instance over this test's backend


def _filesystem(root: Path) -> Any:
    from dockyard.registry.storage.filesystem import FilesystemStorage
    return FilesystemStorage(root, fsync=False)


def _encrypted(inner: Callable[[], Any], ring: Any) -> Callable[[], Any]:
    from dockyard.registry.storage.encryption import EncryptedStorage
    return lambda: EncryptedStorage(inner(), ring)


KINDS = ["filesystem", "azureblob", "memory", "encrypted+filesystem", "encrypted+azureblob"]


@pytest.fixture(params=KINDS)
def case(request: pytest.FixtureRequest) -> Any:
    kind: str = request.param
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-storage-", dir="/var/tmp"))
    try:
        inner: Callable[[], Any]
        base = kind.removeprefix("encrypted+")
        if base == "filesystem":
            inner = functools.partial(_filesystem, tmp / "store")
        elif base == "memory":
            files: dict[str, tuple[bytes, float]] = {}
            inner = functools.partial(MemoryStorage, files)
        else:
            from dockyard.registry.storage.azureblob import AzureBlobStorage
            az = request.getfixturevalue("azurite")
            container = f"conformance-{uuid.uuid4().hex[:12]}"
            inner = functools.partial(AzureBlobStorage, az.account, az.key, container, endpoint=az.endpoint)
        if kind.startswith("encrypted+"):
            from dockyard.registry.storage.encryption import KeyRing, MasterKey
            inner = _encrypted(inner, KeyRing(MasterKey(os.urandom(32))))
        yield Case(kind, inner)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def storage_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an ``async def test(store, ...)`` in its own event loop with a fresh store, closed after."""

    @functools.wraps(fn)
    def wrapper(case: Case, *args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            store = case.make()
            try:
                await fn(store, *args, **kwargs)
            finally:
                await store.close()
        asyncio.run(main())

    params = list(inspect.signature(fn).parameters.values())[1:]
    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("case", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])
    return wrapper


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


# -- the contract ---------------------------------------------------------------------------


@storage_test
async def test_put_read_stat(store: Any) -> None:
    before = time.time() - 5
    await store.put_bytes("a/b/file", b"hello world")
    assert await store.read_bytes("a/b/file") == b"hello world"
    info = await store.stat("a/b/file")
    assert (info.size, info.is_dir) == (11, False)
    assert info.modified >= before - 60          # clocks of remote stores may differ a little
    assert (await store.stat("a")).is_dir and (await store.stat("a/b")).is_dir
    await store.put_bytes("a/b/file", b"replaced")
    assert await store.read_bytes("a/b/file") == b"replaced"
    await store.put_bytes("empty", b"")
    assert await store.read_bytes("empty") == b"" and (await store.stat("empty")).size == 0


@storage_test
async def test_missing_paths_are_not_found(store: Any) -> None:
    await store.put_bytes("present/x", b"x")
    for call in (lambda: store.stat("missing"), lambda: store.read_bytes("missing/deeper"),
                 lambda: collect(store.reader("missing")), lambda: store.list("missing"),
                 lambda: store.list("present/x"), lambda: store.move("missing", "elsewhere"),
                 lambda: store.delete("missing"), lambda: store.delete("present/y")):
        with pytest.raises(NotFound):
            await call()


@storage_test
async def test_writer_is_invisible_until_commit(store: Any) -> None:
    await store.put_bytes("dir/old", b"old contents")
    w = await store.writer("dir/new")
    await w.write(b"part one, ")
    w2 = await store.writer("dir/old")
    await w2.write(b"new contents that are longer")
    with pytest.raises(NotFound):
        await store.stat("dir/new")
    assert await store.list("dir") == ["old"]
    assert await store.read_bytes("dir/old") == b"old contents"
    await w.write(b"part two")
    assert w.size == len(b"part one, part two")
    await w.commit()
    await w2.commit()
    assert await store.read_bytes("dir/new") == b"part one, part two"
    assert await store.read_bytes("dir/old") == b"new contents that are longer"
    assert await store.list("dir") == ["new", "old"]


@storage_test
async def test_cancel_leaves_nothing(store: Any) -> None:
    w = await store.writer("uploads/u1/data")
    await w.write(os.urandom(300_000))
    await w.cancel()
    for call in (lambda: store.stat("uploads/u1/data"), lambda: store.list("uploads"),
                 lambda: store.read_bytes("uploads/u1/data")):
        with pytest.raises(NotFound):
            await call()
    await store.put_bytes("kept", b"kept")
    w = await store.writer("kept")
    await w.write(b"never seen")
    await w.cancel()
    assert await store.read_bytes("kept") == b"kept"


@storage_test
async def test_append_resumes(store: Any) -> None:
    first, second, third = os.urandom(70_000), os.urandom(5 * MiB + 3), b"tail"
    w = await store.writer("_uploads/u/data", append=True)      # a missing file starts empty
    assert w.size == 0
    await w.write(first)
    await w.commit()
    w = await store.writer("_uploads/u/data", append=True)
    assert w.size == len(first)
    await w.write(second)
    await w.commit()
    assert (await store.stat("_uploads/u/data")).size == len(first) + len(second)
    w = await store.writer("_uploads/u/data", append=True)
    await w.write(b"a chunk cut off by a disconnect")
    await w.cancel()
    assert (await store.stat("_uploads/u/data")).size == len(first) + len(second)
    w = await store.writer("_uploads/u/data", append=True)
    assert w.size == len(first) + len(second)
    await w.write(third)
    await w.commit()
    assert await store.read_bytes("_uploads/u/data") == first + second + third


@storage_test
async def test_reads_with_offset_and_length(store: Any) -> None:
    data = os.urandom(200_000)                 # crosses several 64 KiB encryption chunks
    await store.put_bytes("blob", data)
    for offset, length in [(0, None), (0, 1), (5, 10), (65_530, 20), (65_536, 65_536),
                           (131_071, 2), (199_990, None), (199_990, 100), (0, 200_000), (1, 199_999),
                           (100_000, 0), (200_000, None), (200_000, 10)]:
        got = await collect(store.reader("blob", offset, length))
        want = data[offset:] if length is None else data[offset:offset + length]
        assert got == want, (offset, length)


@storage_test
async def test_list(store: Any) -> None:
    for p in ("r/a/1", "r/a/2", "r/b", "r/c/d/e", "other"):
        await store.put_bytes(p, p.encode())
    assert await store.list("r") == ["a", "b", "c"]
    assert await store.list("r/a") == ["1", "2"]
    assert await store.list("r/c") == ["d"]
    root = await store.list("")
    assert "r" in root and "other" in root


@storage_test
async def test_move(store: Any) -> None:
    big = os.urandom(5 * MiB)                  # beyond the blob driver's re-upload size: server copy
    await store.put_bytes("up/1/data", big)
    await store.put_bytes("up/2/data", b"small")
    await store.put_bytes("blobs/x/data", b"to be replaced")
    await store.move("up/1/data", "blobs/y/data")
    await store.move("up/2/data", "blobs/x/data")
    assert await store.read_bytes("blobs/y/data") == big
    assert await store.read_bytes("blobs/x/data") == b"small"
    for gone in ("up/1/data", "up/2/data"):
        with pytest.raises(NotFound):
            await store.stat(gone)


@storage_test
async def test_delete_file_and_prefix(store: Any) -> None:
    for p in ("repo/a/_uploads/1/data", "repo/a/_uploads/1/startedat", "repo/a/_uploads/2/data",
              "repo/a/_layers/x", "repo/ab/keep"):
        await store.put_bytes(p, b"x")
    await store.delete("repo/a/_uploads/1/startedat")
    assert await store.list("repo/a/_uploads/1") == ["data"]
    await store.delete("repo/a/_uploads")
    assert await store.list("repo/a") == ["_layers"]
    with pytest.raises(NotFound):
        await store.stat("repo/a/_uploads/2/data")
    await store.delete("repo/a")
    assert await store.list("repo") == ["ab"]          # a sibling sharing the name's start survives
    assert await store.read_bytes("repo/ab/keep") == b"x"


BAD_PATHS = ["../escape", "a/../../b", "/etc/passwd", "a//b", "./a", "a/.", "a/", "", "a\\..\\b", "a\x00b"]


@pytest.mark.parametrize("bad", BAD_PATHS)
@storage_test
async def test_refuses_paths_outside_the_store(store: Any, bad: str) -> None:
    await store.put_bytes("ok", b"ok")
    calls = [lambda: store.stat(bad), lambda: store.read_bytes(bad), lambda: store.put_bytes(bad, b"x"),
             lambda: store.writer(bad), lambda: store.writer(bad, append=True), lambda: store.delete(bad),
             lambda: store.move("ok", bad), lambda: store.move(bad, "ok2"), lambda: collect(store.reader(bad))]
    if bad:                                   # "" is the root for list (and only for list)
        calls.append(lambda: store.list(bad))
    for call in calls:
        with pytest.raises(InvalidArgument):
            await call()
    assert await store.read_bytes("ok") == b"ok"


def test_instances_over_one_backend_agree(case: Case) -> None:
    """What one registry process writes, another process over the same store reads and resumes."""
    async def main() -> None:
        one, two = case.make(), case.make()
        try:
            await one.put_bytes("shared/link", b"sha256:abc")
            assert await two.read_bytes("shared/link") == b"sha256:abc"
            w = await one.writer("shared/upload", append=True)
            await w.write(b"first half, ")
            await w.commit()
            w = await two.writer("shared/upload", append=True)
            assert w.size == len(b"first half, ")
            await w.write(b"second half")
            await w.commit()
            assert await one.read_bytes("shared/upload") == b"first half, second half"
            await two.move("shared/upload", "shared/blob")
            assert await one.list("shared") == ["blob", "link"]
            await one.delete("shared")
            with pytest.raises(NotFound):
                await two.list("shared")
        finally:
            await one.close()
            await two.close()
    asyncio.run(main())


@pytest.mark.parametrize("size", [64 * MiB])
def test_large_file_streams(case: Case, size: int) -> None:
    """64 MiB in and out in 1 MiB pieces, while tracing Python's allocations: neither the write nor the
    read may hold more than a fraction of the file (the in-memory fake holds it by definition)."""
    async def main() -> tuple[int, int]:
        store = case.make()
        try:
            tracemalloc.start()
            want = hashlib.sha256()
            w = await store.writer("blobs/big/data")
            for _ in range(size // MiB):
                piece = os.urandom(MiB)
                want.update(piece)
                await w.write(piece)
            await w.commit()
            _, write_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            got, n = hashlib.sha256(), 0
            async for chunk in store.reader("blobs/big/data"):
                got.update(chunk)
                n += len(chunk)
            _, read_peak = tracemalloc.get_traced_memory()
            assert n == size and got.hexdigest() == want.hexdigest()
            assert (await store.stat("blobs/big/data")).size == size
            tail = await collect(store.reader("blobs/big/data", size - 10))
            assert len(tail) == 10
            return write_peak, read_peak
        finally:
            tracemalloc.stop()
            await store.close()

    write_peak, read_peak = asyncio.run(main())
    if case.kind != "memory":
        assert write_peak < size // 2, f"write held {write_peak / MiB:.1f} MiB"
        assert read_peak < size // 2, f"read held {read_peak / MiB:.1f} MiB"
