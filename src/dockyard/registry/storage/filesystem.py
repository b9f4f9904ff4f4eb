"""FilesystemStorage: the ``RegistryStorage`` protocol over a directory (the default driver).

Why it is shaped like this:

* **Nothing outside the root.**  Every path goes through :meth:`FilesystemStorage._resolve`,
  which refuses absolute paths, empty, ``.`` and ``..`` components, backslashes and NUL bytes
  (InvalidArgument) before joining it to the root.  The layout only builds paths from validated
  names and digests; this is the second wall, so a bug there still cannot leave the store.
* **Readers never see a partial file.**  ``put_bytes`` and ``writer(path)`` write a temporary
  file under ``<root>/_tmp/`` (same filesystem, so ``rename`` is atomic), ``fsync`` it and
  rename it into place.  A process killed mid-write leaves only a temp file, which nothing
  lists and which is removed when it is a day old (at start-up).
* **Appends are in place.**  ``writer(path, append=True)`` is how uploads grow: it writes at the
  end of the existing file; ``commit`` fsyncs, ``cancel`` truncates back to the size the file
  had when the writer opened, so a chunk cut off by a disconnect leaves no half-chunk behind.
* **Empty directories disappear** after ``delete``, as "directories" do in a blob store, so
  ``list`` and ``stat`` mean the same on every driver (``list`` of an empty prefix: NotFound).
  A writer racing the pruning of its parent directory simply recreates it and retries.
* **Small metadata operations run inline.**  ``stat``, ``list`` and ``read_bytes`` (links and
  manifests: bytes to a few MiB, served from the page cache) cost less than a thread hop, and
  they are the hot path of manifest GETs; bulk data (readers, writers, fsync, tree removal)
  goes to the default thread pool so the event loop keeps serving.

:meth:`local_path` is an optimisation outside the protocol: the blob GET handler hands the
file to aiohttp's ``FileResponse`` (``sendfile``) when the driver can name a local file.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from dockyard.errors import InvalidArgument, NotFound, Unavailable
from dockyard.registry.storage import FileInfo

__all__ = ["FilesystemStorage"]

CHUNK = 4 << 20            # streaming read size: large, so a 512 MiB blob is ~128 thread hops
TMP_DIR = "_tmp"           # temp files for atomic writes; hidden from list()
TMP_MAX_AGE = 24 * 3600    # temp files older than this are leftovers of killed writers

T = TypeVar("T")


def _run(fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


class _FileWriter:
    """A FileWriter over a file descriptor; see the module docstring for the two modes."""

    def __init__(self, fd: int, final: str, tmp: str | None, start: int, fsync: bool,
                 storage: FilesystemStorage) -> None:
        self._fd = fd
        self._final = final
        self._tmp = tmp            # None for append mode (writes go straight to the file)
        self._start = start
        self._fsync = fsync
        self._storage = storage
        self._closed = False
        self.size = start

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise InvalidArgument("write to a closed writer")
        if not data:
            return
        await _run(self._write_all, data)
        self.size += len(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    async def commit(self) -> None:
        if self._closed:
            raise InvalidArgument("commit of a closed writer")
        self._closed = True
        await _run(self._commit)

    def _commit(self) -> None:
        try:
            if self._fsync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
        if self._tmp is not None:
            self._storage._rename_into_place(self._tmp, self._final)

    async def cancel(self) -> None:
        if self._closed:
            return
        self._closed = True
        await _run(self._cancel)

    def _cancel(self) -> None:
        try:
            if self._tmp is None:
                os.ftruncate(self._fd, self._start)
        finally:
            os.close(self._fd)
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass


class FilesystemStorage:
    """A plain path store under ``root`` (created if missing)."""

    name = "filesystem"

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self._prefix = str(self.root) + os.sep
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / TMP_DIR).mkdir(exist_ok=True)
        self._purge_temp(TMP_MAX_AGE)

    # --- paths ---------------------------------------------------------------------------------

    def _resolve(self, path: str) -> str:
        """Join a store-relative path to the root, refusing anything that could escape it."""
        if not isinstance(path, str) or not path or "\x00" in path or "\\" in path:
            raise InvalidArgument(f"invalid storage path {path!r}")
        if path.startswith("/"):
            raise InvalidArgument(f"storage path must be relative: {path!r}")
        parts = path.split("/")
        if any(p in ("", ".", "..") for p in parts) or parts[0] == TMP_DIR:
            raise InvalidArgument(f"invalid storage path {path!r}")
        return self._prefix + path

    def local_path(self, path: str) -> str:
        """The absolute file name behind ``path`` (for sendfile); NotFound if it is not a file."""
        full = self._resolve(path)
        if not os.path.isfile(full):
            raise NotFound(f"{path}: not found")
        return full

    def _tmp_name(self) -> str:
        return os.path.join(self.root, TMP_DIR, f"{uuid.uuid4().hex}.tmp")

    def _rename_into_place(self, src: str, dst: str) -> None:
        """rename(2) ``src`` to ``dst``, creating parents; retried if a pruner removes them."""
        for _ in range(5):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                os.replace(src, dst)
                return
            except FileNotFoundError:
                if not os.path.exists(src):
                    raise
        raise Unavailable(f"could not create the parent directory of {dst}")

    def _prune(self, directory: str) -> None:
        """Remove empty directories from ``directory`` up to (not including) the root."""
        root = str(self.root)
        while directory.startswith(root + os.sep) and directory != root:
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    def _purge_temp(self, older_than: float) -> None:
        cutoff = time.time() - older_than
        try:
            with os.scandir(self.root / TMP_DIR) as it:
                for entry in it:
                    try:
                        if entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
                    except OSError:
                        pass
        except OSError:
            pass

    # --- reads ---------------------------------------------------------------------------------

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Yield the bytes of ``path`` from ``offset`` (``length`` bytes, or to the end)."""
        full = self._resolve(path)
        if offset < 0 or (length is not None and length < 0):
            raise InvalidArgument("negative offset or length")
        try:
            fd = await _run(os.open, full, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise NotFound(f"{path}: not found") from exc
        except IsADirectoryError as exc:
            raise NotFound(f"{path}: not a file") from exc
        try:
            pos = offset
            remaining = length
            while remaining is None or remaining > 0:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                data = await _run(os.pread, fd, want, pos)
                if not data:
                    break
                pos += len(data)
                if remaining is not None:
                    remaining -= len(data)
                yield data
        finally:
            os.close(fd)

    async def read_bytes(self, path: str) -> bytes:
        full = self._resolve(path)
        try:
            fd = os.open(full, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"{path}: not found") from exc
        try:
            # os-level calls: a third of the cost of open().read() on a link-sized file
            chunks = []
            while True:
                data = os.read(fd, 1 << 20)
                if not data:
                    break
                chunks.append(data)
        except IsADirectoryError as exc:
            raise NotFound(f"{path}: not a file") from exc
        finally:
            os.close(fd)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def stat(self, path: str) -> FileInfo:
        full = self._resolve(path)
        try:
            st = os.stat(full)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"{path}: not found") from exc
        is_dir = stat.S_ISDIR(st.st_mode)
        return FileInfo(path=path, size=0 if is_dir else st.st_size, modified=st.st_mtime, is_dir=is_dir)

    async def list(self, path: str) -> list[str]:
        full = self._resolve(path) if path not in ("", "/") else str(self.root)
        try:
            names = os.listdir(full)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"{path}: not found") from exc
        if full == str(self.root):
            names = [n for n in names if n != TMP_DIR]
        if not names:
            raise NotFound(f"{path}: empty")
        return sorted(names)

    # --- writes --------------------------------------------------------------------------------

    async def writer(self, path: str, append: bool = False) -> _FileWriter:
        full = self._resolve(path)
        return await _run(self._open_writer, full, append)

    def _open_writer(self, full: str, append: bool) -> _FileWriter:
        if not append:
            tmp = self._tmp_name()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            return _FileWriter(fd, full, tmp, 0, self.fsync, self)
        for _ in range(5):
            os.makedirs(os.path.dirname(full), exist_ok=True)
            try:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                break
            except FileNotFoundError:
                continue
        else:
            raise Unavailable(f"could not open {full} for appending")
        return _FileWriter(fd, full, None, os.fstat(fd).st_size, self.fsync, self)

    async def put_bytes(self, path: str, data: bytes) -> None:
        full = self._resolve(path)
        await _run(self._put, full, data)

    def _put(self, full: str, data: bytes) -> None:
        tmp = self._tmp_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        self._rename_into_place(tmp, full)

    async def move(self, src: str, dst: str) -> None:
        s, d = self._resolve(src), self._resolve(dst)
        try:
            await _run(self._move, s, d)
        except FileNotFoundError as exc:
            raise NotFound(f"{src}: not found") from exc

    def _move(self, s: str, d: str) -> None:
        if not os.path.isfile(s):
            raise FileNotFoundError(errno.ENOENT, "not found", s)
        self._rename_into_place(s, d)
        self._prune(os.path.dirname(s))

    async def delete(self, path: str) -> None:
        full = self._resolve(path)
        await _run(self._delete, full, path)

    def _delete(self, full: str, path: str) -> None:
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                # rename first so a concurrent reader sees all or nothing of the tree
                doomed = self._tmp_name() + ".d"
                os.rename(full, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            else:
                os.unlink(full)
        except FileNotFoundError as exc:
            raise NotFound(f"{path}: not found") from exc
        self._prune(os.path.dirname(full))

    async def close(self) -> None:
        return None
