"""Blob uploads: ``/v2/<name>/blobs/uploads/[<uuid>]`` (spec end-4a/4b, 5, 6, 11, 13, 14).

Lifecycle (all state is in storage, so any process may serve any step):

* ``POST``           start an upload (202 + Location), or with ``?digest=`` take the whole blob in
                     one request (201), or with ``?mount=<digest>[&from=<repo>]`` link a blob the
                     registry already holds (201) — falling back to a fresh upload (202) when it
                     cannot (unknown blob, or no pull access to the source);
* ``PATCH``          append a chunk; ``Content-Range: <start>-<end>`` must start where the upload
                     ends, else 416 with the current ``Range`` so the client can resume;
* ``PUT ?digest=``   optionally append a last chunk, verify the digest of everything received,
                     then move the bytes to the blob store (a rename) and link the blob into the
                     repository (201).  A mismatch is DIGEST_INVALID and the upload is discarded:
                     nothing is stored;
* ``GET``            status: 204 with ``Range: 0-<last byte>``;
* ``DELETE``         cancel (204).

Bodies are streamed to the driver's append writer in 4 MiB batches while the same bytes are
hashed in a worker thread (hashlib releases the GIL), one batch behind the socket: receive,
write and hash overlap.  A body cut short (client gone) is truncated away by the writer's
``cancel``, so the upload stays at a chunk boundary.  Uploads killed mid-way are removed by GC
once older than ``gc.upload_max_age``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

from aiohttp import ClientPayloadError, web

from dockyard.registry import errors as rerr
from dockyard.registry.auth import Access
from dockyard.registry.handlers.context import Call, api_headers
from dockyard.registry.storage.layout import UploadState, validate_digest_param, validate_name

__all__ = ["cancel_upload", "patch_upload", "post_upload", "put_upload", "upload_status"]

FLUSH = 4 << 20
MOUNT_SCAN_LIMIT = 1000
_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")


def _location(call: Call, upload_id: str) -> str:
    return f"/v2/{call.name}/blobs/uploads/{upload_id}"


def _status_headers(call: Call, upload_id: str, size: int) -> dict[str, str]:
    return api_headers(Location=_location(call, upload_id), Range=f"0-{max(size - 1, 0)}",
                       Docker_Upload_UUID=upload_id, Content_Length="0")


def _created(call: Call, digest: str) -> web.Response:
    return web.Response(status=201, headers=api_headers(
        Location=f"/v2/{call.name}/blobs/{digest}", Docker_Content_Digest=digest, Content_Length="0"))


async def _process(call: Call, writer: Any, hasher: Any, data: bytes) -> None:
    if hasher is None:
        await writer.write(data)
        return
    loop = asyncio.get_running_loop()
    await asyncio.gather(writer.write(data), loop.run_in_executor(None, hasher.update, data))


async def _receive(call: Call, upload_id: str, state: UploadState, expect: int | None = None) -> int:
    """Append the request body to the upload; returns the new size (hash state cached)."""
    request = call.request
    layout = call.layout
    hasher = call.registry.hashes.take(upload_id, state.size)
    writer = await layout.upload_writer(call.name, upload_id)
    if writer.size != state.size:        # another process appended meanwhile: state is stale
        hasher = None
    pending: asyncio.Future[None] | None = None
    parts: list[bytes] = []              # joined once per batch: growing a bytearray copies more
    batched = 0
    received = 0
    try:
        while True:
            chunk = await request.content.readany()
            if chunk:
                parts.append(chunk)
                batched += len(chunk)
            if parts and (batched >= FLUSH or not chunk):
                if pending is not None:
                    await pending
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                received += len(data)
                pending = asyncio.ensure_future(_process(call, writer, hasher, data))
                parts, batched = [], 0
            if not chunk:
                break
        if pending is not None:
            await pending
            pending = None
        if expect is not None and received != expect:
            raise rerr.SIZE_INVALID(detail={"declared": expect, "received": received})
        await writer.commit()
    except BaseException as exc:
        if pending is not None:
            try:
                await pending
            except BaseException:
                pass
        await writer.cancel()
        if isinstance(exc, (ClientPayloadError, ConnectionError)):
            raise rerr.BLOB_UPLOAD_INVALID(detail="request body ended early") from exc
        raise
    size = writer.size
    if hasher is not None:
        call.registry.hashes.put(upload_id, size, hasher)
    call.registry.metrics.count_upload(received)
    return size


async def _digest_of(call: Call, upload_id: str, size: int, algorithm: str) -> str:
    """The digest of everything the upload holds, from the cached state or by re-reading it."""
    hasher = call.registry.hashes.take(upload_id, size)
    if hasher is None or algorithm != "sha256":
        hasher = hashlib.new(algorithm)
        if size:
            loop = asyncio.get_running_loop()
            async for chunk in call.layout.upload_reader(call.name, upload_id):
                await loop.run_in_executor(None, hasher.update, chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


async def _finish(call: Call, upload_id: str, size: int, digest: str) -> web.Response:
    actual = await _digest_of(call, upload_id, size, digest.split(":", 1)[0])
    if actual != digest:
        await call.layout.delete_upload(call.name, upload_id)
        raise rerr.DIGEST_INVALID(detail={"expected": digest, "actual": actual, "size": size})
    await call.layout.commit_upload(call.name, upload_id, digest, size)
    return _created(call, digest)


def _declared_range(call: Call, state: UploadState) -> int | None:
    """Check ``Content-Range`` against the upload; the chunk length it declares, or None."""
    header = call.request.headers.get("Content-Range")
    if not header:
        return None
    m = _CONTENT_RANGE_RE.fullmatch(header.strip())
    start, end = (int(m.group(1)), int(m.group(2))) if m else (-1, -2)
    length = call.request.content_length
    if m is None or start != state.size or end < start or (length is not None and length != end - start + 1):
        raise rerr.RANGE_INVALID(detail={"content_range": header[:100], "size": state.size},
                                 headers=_status_headers(call, state.id, state.size))
    return end - start + 1


async def _try_mount(call: Call, digest: str) -> bool:
    """Link ``digest`` into the repository from ``from`` (or any repository the caller may pull)."""
    layout = call.layout
    if not await layout.has_blob(digest) or await layout.has_tombstone(digest):
        return False
    source = call.request.query.get("from")
    if source:
        try:
            validate_name(source)
        except rerr.RegistryError:
            return False
        if not await call.may(Access("repository", source, "pull")):
            return False
        if not (await layout.layer_linked(source, digest) or await layout.has_manifest(source, digest)):
            return False
    elif not call.registry.open_access:
        for repo in (await layout.repositories())[:MOUNT_SCAN_LIMIT]:
            if await layout.layer_linked(repo, digest) and await call.may(Access("repository", repo, "pull")):
                break
        else:
            return False
    await layout.link_layer(call.name, digest)
    return True


async def post_upload(call: Call) -> web.StreamResponse:
    query = call.request.query
    if "mount" in query:
        digest = validate_digest_param(query["mount"])
        if await _try_mount(call, digest):
            call.notify("mount", {"repository": call.name, "digest": digest, "from": query.get("from", "")})
            return _created(call, digest)
    upload_id = await call.layout.start_upload(call.name)
    if "digest" in query and "mount" not in query:
        digest = validate_digest_param(query["digest"])
        state = UploadState(upload_id, 0, 0.0)
        try:
            size = await _receive(call, upload_id, state)
            return await _finish(call, upload_id, size, digest)
        except BaseException:
            await call.layout.delete_upload(call.name, upload_id)
            raise
    return web.Response(status=202, headers=_status_headers(call, upload_id, 0))


async def patch_upload(call: Call) -> web.StreamResponse:
    upload_id = call.params["uuid"]
    state = await call.layout.upload_state(call.name, upload_id)
    expect = _declared_range(call, state)
    size = await _receive(call, upload_id, state, expect)
    return web.Response(status=202, headers=_status_headers(call, upload_id, size))


async def put_upload(call: Call) -> web.StreamResponse:
    upload_id = call.params["uuid"]
    raw = call.request.query.get("digest")
    if not raw:
        raise rerr.DIGEST_INVALID(detail="the digest query parameter is required",
                                  message="digest missing")
    digest = validate_digest_param(raw)
    state = await call.layout.upload_state(call.name, upload_id)
    size = state.size
    if call.request.content_length or call.request.headers.get("Transfer-Encoding"):
        expect = _declared_range(call, state)
        size = await _receive(call, upload_id, state, expect)
    return await _finish(call, upload_id, size, digest)


async def upload_status(call: Call) -> web.StreamResponse:
    upload_id = call.params["uuid"]
    state = await call.layout.upload_state(call.name, upload_id)
    return web.Response(status=204, headers=_status_headers(call, upload_id, state.size))


async def cancel_upload(call: Call) -> web.StreamResponse:
    upload_id = call.params["uuid"]
    await call.layout.upload_state(call.name, upload_id)
    await call.layout.delete_upload(call.name, upload_id)
    call.registry.hashes.drop(upload_id)
    return web.Response(status=204, headers=api_headers(Content_Length="0"))

