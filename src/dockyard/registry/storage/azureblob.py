"""AzureBlobStorage: the RegistryStorage protocol over one Azure Blob Storage container.

Every path maps to one block blob named ``[prefix/]path`` in the container; "directories" are
name prefixes (blob storage has none of its own), so ``list`` uses the "/" delimiter and ``stat``
reports a directory when only longer names exist below a path::

    <container>/
      [<prefix>/]docker/registry/v2/blobs/sha256/ab/abcd.../data      one block blob per file
      [<prefix>/]docker/registry/v2/repositories/team/app/_uploads/<id>/data

Writes are staged blocks made visible by one Put Block List (``commit``), so a reader never sees a
partial file and a cancelled write leaves nothing (uncommitted blocks are invisible and expire on
their own).  A small file written at once is a single Put Blob, which is just as atomic and is the
cheapest call when several registry processes write the same small link file concurrently.

``writer(path, append=True)`` resumes a file by reading its committed block list and committing
the old block ids followed by the new ones, so resuming an upload never re-sends what was stored.
A blob that was not written as blocks (a Put Blob) is re-staged once, streamed, the first time it is
appended to.

Reads stream ``download_blob(offset, length).chunks()`` in ``chunk_size`` pieces; ``move`` is a
server-side copy (small files: one read and one write) followed by a delete of the source.

Errors: NotFound (no blob, or no container), InvalidArgument (a path with ``..``, ``.``, empty
segments, or absolute), Unavailable (the endpoint cannot be reached, refuses the credentials, or
fails); messages name the endpoint and container but never the account key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, BinaryIO

import aiohttp
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient, ExponentialRetry

from dockyard.errors import DockyardError, InvalidArgument, NotFound, Unavailable
from dockyard.registry.storage import FileInfo

MiB = 1024 * 1024
BLOCK_SIZE = 4 * MiB          # staged block size; memory per writer is about BLOCK_SIZE * STAGE_CONCURRENCY
STAGE_CONCURRENCY = 4         # blocks in flight per writer
SMALL_FILE = 4 * MiB          # at most this much is written with one Put Blob / moved by re-upload


def check_path(path: str, *, allow_root: bool = False) -> str:
    """Return ``path`` if it is a relative, normalised "/"-path; InvalidArgument otherwise.

    Refusing rather than normalising is deliberate: the layout never builds such paths, so one
    that arrives is an attack or a bug, and silently cleaning it could alias another file."""
    if path == "" and allow_root:
        return path
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise InvalidArgument(f"invalid storage path {path!r}")
    if any(seg in ("", ".", "..") for seg in path.split("/")):
        raise InvalidArgument(f"invalid storage path {path!r}")
    return path


def _etag(value: object) -> str:
    """ETags without their quotes: the SDK returns them quoted from writes, bare from listings."""
    return str(value or "").strip('"')


def default_endpoint(account: str) -> str:
    return f"https://{account}.blob.core.windows.net"


class AzureBlobStorage:
    """RegistryStorage over one blob container.  Construct it anywhere; the HTTP session is opened on
    first use inside the running event loop and released by ``close()``."""

    name = "azureblob"

    def __init__(self, account_name: str, account_key: str, container: str, *,
                 endpoint: str | None = None, prefix: str = "", retries: int = 3,
                 connection_timeout: float = 10, read_timeout: float = 60) -> None:
        self.account_name = account_name
        self.container = container
        self.endpoint = (endpoint or default_endpoint(account_name)).rstrip("/")
        self.prefix = check_path(prefix.strip("/"), allow_root=True)
        self._key = account_key
        # The SDK's default back-off starts at 15 s: far too long for a registry request or for
        # telling a volume's user that the endpoint is down.  ~1 s, 3 s, 5 s instead.
        retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries, random_jitter_range=1)
        self._client_options: dict[str, Any] = {
            "retry_policy": retry, "connection_timeout": connection_timeout,
            "read_timeout": read_timeout, "max_single_get_size": BLOCK_SIZE,
            "max_chunk_get_size": BLOCK_SIZE, "max_block_size": BLOCK_SIZE,
            "max_single_put_size": SMALL_FILE,
        }
        self._service: BlobServiceClient | None = None
        self._container_client: ContainerClient | None = None
        self._container_ready = False

    def __repr__(self) -> str:  # the key never shows up in a repr, a log line or a traceback
        return f"AzureBlobStorage(endpoint={self.endpoint!r}, container={self.container!r})"

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def _cc(self) -> ContainerClient:
        if self._container_client is None:
            self._service = BlobServiceClient(
                self.endpoint, credential={"account_name": self.account_name, "account_key": self._key},
                **self._client_options)
            self._container_client = self._service.get_container_client(self.container)
        return self._container_client

    def _name(self, path: str, *, allow_root: bool = False) -> str:
        path = check_path(path, allow_root=allow_root)
        if not self.prefix:
            return path
        return f"{self.prefix}/{path}" if path else self.prefix

    def _blob(self, path: str) -> BlobClient:
        return self._cc.get_blob_client(self._name(path))

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "******") if self._key else text

    @contextlib.contextmanager
    def errors(self, path: str) -> Iterator[None]:
        """Translate Azure SDK and transport exceptions into dockyard's error kinds at this seam."""
        try:
            yield
        except DockyardError:
            raise
        except ResourceNotFoundError as exc:
            raise NotFound(f"{path}: not found in blob container {self.container}") from exc
        except ClientAuthenticationError as exc:
            raise Unavailable(f"blob storage at {self.endpoint} refused the credentials of account "
                              f"{self.account_name}: {self._first_line(exc)}") from exc
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise Unavailable(f"blob storage at {self.endpoint} refused the credentials of account "
                                  f"{self.account_name}: {self._first_line(exc)}") from exc
            raise Unavailable(f"blob storage at {self.endpoint} failed on {path or '/'}: "
                              f"{self._first_line(exc)}") from exc
        except (AzureError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unavailable(f"blob storage at {self.endpoint} is unreachable: "
                              f"{self._first_line(exc)}") from exc

    def _first_line(self, exc: BaseException) -> str:
        text = str(exc).strip().splitlines()
        return self._scrub(text[0] if text else type(exc).__name__)

    async def ensure_container(self) -> None:
        """Create the container if it is missing (idempotent).  Also the cheapest way to prove that
        the endpoint answers and accepts the credentials: the volume driver calls it on create."""
        if self._container_ready:
            return
        with self.errors(""):
            try:
                await self._cc.create_container()
            except ResourceExistsError:
                pass
        self._container_ready = True

    async def close(self) -> None:
        if self._service is not None:
            await self._service.close()
        self._service = self._container_client = None

    # -- reads ------------------------------------------------------------------------------

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (all to the end when None) from ``offset``; NotFound on first
        iteration when the file is missing.  Reading at or past the end yields nothing."""
        if offset < 0 or (length is not None and length < 0):
            raise InvalidArgument(f"invalid range {offset}+{length} for {path}")
        blob = self._blob(path)
        with self.errors(path):
            if length == 0:
                await blob.get_blob_properties()
                return
            try:
                stream = await blob.download_blob(offset=offset, length=length, max_concurrency=1)
            except HttpResponseError as exc:
                if exc.status_code != 416:        # InvalidRange: offset at or past the end
                    raise
                await blob.get_blob_properties()  # still NotFound when the blob went away
                return
            async for chunk in stream.chunks():
                yield chunk

    async def download_to(self, path: str, f: BinaryIO, concurrency: int = 4) -> int:
        """Write the whole blob into the file ``f`` with ``concurrency`` ranged GETs of BLOCK_SIZE in
        flight, each written at its offset (outside the protocol: the blob volume's downloads).
        Memory stays at about ``concurrency`` x BLOCK_SIZE -- the SDK's own parallel download holds
        far more.  Every range is pinned to the first ETag: a blob replaced meanwhile fails
        (Unavailable) instead of mixing two versions.  Returns the size."""
        blob, fd = self._blob(path), f.fileno()
        with self.errors(path):
            props = await blob.get_blob_properties()
            offsets = list(range(0, props.size, BLOCK_SIZE))

            async def worker() -> None:
                while offsets:
                    off = offsets.pop(0)
                    stream = await blob.download_blob(offset=off, length=min(BLOCK_SIZE, props.size - off),
                                                      etag=props.etag, match_condition=MatchConditions.IfNotModified)
                    data = await stream.readall()
                    os.pwrite(fd, data, off)

            await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        return int(props.size)

    async def read_bytes(self, path: str) -> bytes:
        return b"".join([chunk async for chunk in self.reader(path)])

    async def stat(self, path: str) -> FileInfo:
        blob = self._blob(path)
        with self.errors(path):
            try:
                props = await blob.get_blob_properties()
                return FileInfo(path, props.size, props.last_modified.timestamp())
            except ResourceNotFoundError:
                pass
            async for _ in self._cc.list_blobs(name_starts_with=blob.blob_name + "/", results_per_page=1):
                return FileInfo(path, 0, 0.0, is_dir=True)
        raise NotFound(f"{path}: not found in blob container {self.container}")

    async def list(self, path: str) -> list[str]:
        """Direct children of a directory, sorted; NotFound when there are none."""
        name = self._name(path, allow_root=True)
        start = f"{name}/" if name else ""
        children: set[str] = set()
        with self.errors(path):
            async for item in self._cc.walk_blobs(name_starts_with=start, delimiter="/"):
                child = item.name[len(start):].rstrip("/")
                if child:
                    children.add(child)
        if not children:
            raise NotFound(f"{path or '/'}: no such directory in blob container {self.container}")
        return sorted(children)

    async def list_files(self, path: str = "") -> AsyncIterator[tuple[str, int, str, float]]:
        """Every file below ``path`` (recursively) as (path, size, etag, modified).  Not part of the
        protocol: the blob volume's two-way sync compares etags."""
        name = self._name(path, allow_root=True)
        start = f"{name}/" if name else ""
        strip = len(f"{self.prefix}/") if self.prefix else 0
        with self.errors(path):
            async for props in self._cc.list_blobs(name_starts_with=start):
                yield props.name[strip:], props.size, _etag(props.etag), props.last_modified.timestamp()

    # -- writes -----------------------------------------------------------------------------

    async def writer(self, path: str, append: bool = False) -> _BlockWriter:
        blob = self._blob(path)
        await self.ensure_container()
        writer = _BlockWriter(self, blob, path)
        if append:
            await writer.resume()
        return writer

    async def put_bytes(self, path: str, data: bytes) -> None:
        w = await self.writer(path)
        await w.write(data)
        await w.commit()

    async def move(self, src: str, dst: str) -> None:
        """Server-side copy then delete of the source; a prefix moves file by file."""
        src_blob, dst_blob = self._blob(src), self._blob(dst)
        await self.ensure_container()
        with self.errors(src):
            try:
                props = await src_blob.get_blob_properties()
            except ResourceNotFoundError:
                props = None
        if props is None:
            moved = False
            async for rel, _, _, _ in self.list_files(src):
                await self.move(rel, dst + rel[len(src):])
                moved = True
            if not moved:
                raise NotFound(f"{src}: not found in blob container {self.container}")
            return
        with self.errors(dst):
            if props.size <= SMALL_FILE:
                data = await (await src_blob.download_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)).readall()
                await dst_blob.upload_blob(data, overwrite=True)
            else:
                await self._server_copy(src_blob, dst_blob, dst)
        with self.errors(src), contextlib.suppress(ResourceNotFoundError):
            await src_blob.delete_blob()

    async def _server_copy(self, src: BlobClient, dst: BlobClient, dst_path: str) -> None:
        copy = await dst.start_copy_from_url(src.url)
        status, delay = copy.get("copy_status"), 0.02
        while status == "pending":
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            status = (await dst.get_blob_properties()).copy.status
        if status != "success":
            raise Unavailable(f"blob storage at {self.endpoint}: copy to {dst_path} ended {status}")

    async def etag(self, path: str) -> str:
        """The blob's current ETag (outside the protocol: the blob volume's sync records it)."""
        with self.errors(path):
            return _etag((await self._blob(path).get_blob_properties()).etag)

    async def delete_file(self, path: str) -> None:
        """Delete the one blob at ``path`` (never a prefix); NotFound if it is missing."""
        with self.errors(path):
            await self._blob(path).delete_blob()

    async def delete(self, path: str) -> None:
        """Delete the file at ``path`` and everything below it; NotFound if there was neither."""
        name = self._name(path)
        found = False
        with self.errors(path):
            with contextlib.suppress(ResourceNotFoundError):
                await self._cc.delete_blob(name)
                found = True
            names = [p.name async for p in self._cc.list_blobs(name_starts_with=name + "/")]
            limit = asyncio.Semaphore(16)

            async def drop(n: str) -> None:
                async with limit:
                    with contextlib.suppress(ResourceNotFoundError):
                        await self._cc.delete_blob(n)

            await asyncio.gather(*(drop(n) for n in names))
        if not found and not names:
            raise NotFound(f"{path}: not found in blob container {self.container}")


class _BlockWriter:
    """One write session of a block blob: blocks are staged as the data comes (up to
    STAGE_CONCURRENCY in flight) and become visible together on ``commit``."""

    def __init__(self, store: AzureBlobStorage, blob: BlobClient, path: str) -> None:
        self._store, self._blob, self._path = store, blob, path
        self._committed: list[str] = []      # block ids already in the blob (append)
        self._staged: list[str] = []
        self._buffer = bytearray()
        self._inflight: set[asyncio.Task[None]] = set()
        self._appending = False
        self._done = False
        self.size = 0
        self.etag: str | None = None         # the committed blob's ETag, after commit

    async def resume(self) -> None:
        """Continue the committed blob at this path (a missing blob starts empty)."""
        self._appending = True
        with self._store.errors(self._path):
            try:
                props = await self._blob.get_blob_properties()
                committed, _ = await self._blob.get_block_list("committed")
            except ResourceNotFoundError:
                return
        if sum(b.size for b in committed) == props.size:
            self._committed = [b.id for b in committed]
            self.size = props.size
            return
        # Written with Put Blob: stage its bytes once as blocks of our own, streamed.
        async for chunk in self._store.reader(self._path):
            await self.write(chunk)

    async def write(self, data: bytes) -> None:
        if self._done:
            raise InvalidArgument(f"{self._path}: write after commit or cancel")
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= BLOCK_SIZE:
            with memoryview(self._buffer) as view:
                block = bytes(view[:BLOCK_SIZE])      # one copy: the block owns its bytes
            del self._buffer[:BLOCK_SIZE]
            await self._stage(block)

    async def _stage(self, block: bytes) -> None:
        block_id = uuid.uuid4().hex          # all ids of a blob must have one length
        self._staged.append(block_id)
        while len(self._inflight) >= STAGE_CONCURRENCY:
            done, self._inflight = await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        self._inflight.add(asyncio.ensure_future(self._put_block(block_id, block)))

    async def _put_block(self, block_id: str, block: bytes) -> None:
        with self._store.errors(self._path):
            await self._blob.stage_block(block_id, block, length=len(block))

    async def _drain(self) -> None:
        if self._inflight:
            tasks, self._inflight = self._inflight, set()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, BaseException):
                    raise result

    async def commit(self) -> None:
        """Make everything written visible at the path at once (replacing what was there)."""
        if self._done:
            raise InvalidArgument(f"{self._path}: already committed or cancelled")
        self._done = True
        with self._store.errors(self._path):
            if not self._appending and not self._staged:
                result = await self._blob.upload_blob(bytes(self._buffer), overwrite=True)
            else:
                if self._buffer:
                    await self._stage(bytes(self._buffer))
                    self._buffer.clear()
                await self._drain()
                ids = self._committed + self._staged
                result = await self._blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
        self.etag = _etag(result.get("etag"))

    async def cancel(self) -> None:
        """Discard the session: staged blocks were never committed, so nothing becomes visible."""
        self._done = True
        self._buffer.clear()
        for task in self._inflight:
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._inflight.clear()
