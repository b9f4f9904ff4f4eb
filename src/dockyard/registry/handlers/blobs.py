"""Blobs: ``GET``/``HEAD``/``DELETE /v2/<name>/blobs/<digest>`` (spec end-2, end-10).

A blob is served through a repository only if the repository links it (pushed or mounted
there) — the bytes are shared, the right to read them is not.  Manifests are blobs too and are
served here when the repository holds them, as distribution does for clients that fetch a
manifest by digest through the blob endpoint.

Ranges (resumable pulls): one ``bytes=`` range is honoured with 206 and ``Content-Range``; an
unsatisfiable one gets 416 RANGE_INVALID with ``Content-Range: bytes */<size>``; several ranges
are ignored (RFC 9110 allows serving the whole entity).  A whole-blob GET from a driver that can
name a local file (the filesystem driver without encryption) is handed to aiohttp's
``FileResponse``, which uses ``sendfile``: the bytes never enter Python.

DELETE removes the repository's link, not the bytes: other repositories may share them, and GC
frees bytes nothing links or references any more.
"""

from __future__ import annotations

import re

from aiohttp import web

from dockyard.errors import NotFound
from dockyard.registry import errors as rerr
from dockyard.registry.handlers.context import SENT, STREAMING, Call, api_headers
from dockyard.registry.storage import FileInfo
from dockyard.registry.storage.layout import validate_digest_param

__all__ = ["delete_blob", "get_blob", "parse_range"]

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
_SENDFILE_CHUNK = 4 << 20


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header asks for, or None to serve everything.

    Raises RANGE_INVALID (416) for a range that cannot be satisfied or a malformed bytes range.
    """
    if not header:
        return None
    header = header.strip()
    if not header.startswith("bytes="):
        return None                      # unknown unit: ignore (RFC 9110 §14.2)
    if "," in header:
        return None                      # multipart ranges: serve the whole blob
    m = _RANGE_RE.fullmatch(header.replace(" ", ""))
    unsatisfiable = rerr.RANGE_INVALID(detail={"range": header[:100], "size": size},
                                       headers={"Content-Range": f"bytes */{size}"})
    if m is None or (not m.group(1) and not m.group(2)):
        raise unsatisfiable
    first, last = m.group(1), m.group(2)
    if not first:                        # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, min(end, size - 1)


async def find_blob(call: Call, digest: str) -> FileInfo:
    """Info of a blob ``call.name`` may serve; BLOB_UNKNOWN if it is not linked or not stored."""
    layout = call.layout
    if not (await layout.layer_linked(call.name, digest) or await layout.has_manifest(call.name, digest)):
        raise rerr.BLOB_UNKNOWN(detail={"digest": digest})
    try:
        return await layout.blob_info(digest)
    except NotFound as exc:
        raise rerr.BLOB_UNKNOWN(detail={"digest": digest}) from exc


async def get_blob(call: Call) -> web.StreamResponse:
    """GET and HEAD of a blob, with Range."""
    request = call.request
    digest = validate_digest_param(call.params["digest"])
    info = await find_blob(call, digest)
    size = info.size
    headers = api_headers(
        Docker_Content_Digest=digest,
        ETag=f'"{digest}"',
        Accept_Ranges="bytes",
        Cache_Control="max-age=31536000",
    )
    headers["Content-Type"] = "application/octet-stream"
    if request.headers.get("If-None-Match", "").strip() == f'"{digest}"':
        return web.Response(status=304, headers=headers)
    rng = parse_range(request.headers.get("Range"), size)
    if rng is not None and request.headers.get("If-Range", f'"{digest}"').strip() != f'"{digest}"':
        rng = None                       # If-Range names other content: send it all (RFC 9110)
    start, end = rng if rng is not None else (0, size - 1)
    length = end - start + 1 if size else 0
    status = 206 if rng is not None else 200
    if rng is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD":
        headers["Content-Length"] = str(length)
        return web.Response(status=status, headers=headers)
    if rng is None and "Range" not in request.headers:    # FileResponse would parse Range itself
        local = call.layout.blob_local_path(digest)
        if local is not None:
            headers.pop("Content-Type")
            whole = web.FileResponse(local, chunk_size=_SENDFILE_CHUNK, headers=headers)
            whole.content_type = "application/octet-stream"
            request[SENT] = size       # for the metrics: FileResponse knows its length late
            return whole
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = length
    await resp.prepare(request)
    request[STREAMING] = True          # an error from here on can only drop the connection
    if length:
        async for chunk in call.layout.blob_reader(digest, start, length):
            await resp.write(chunk)
    await resp.write_eof()
    return resp


async def delete_blob(call: Call) -> web.StreamResponse:
    """Unlink a blob from the repository (202); BLOB_UNKNOWN if it was not linked."""
    if not call.config.delete_enabled:
        raise rerr.UNSUPPORTED(detail="deletion is disabled on this registry")
    digest = validate_digest_param(call.params["digest"])
    if not await call.layout.layer_linked(call.name, digest):
        raise rerr.BLOB_UNKNOWN(detail={"digest": digest})
    await call.layout.unlink_layer(call.name, digest)
    call.notify("delete", {"repository": call.name, "digest": digest})
    return web.Response(status=202, headers=api_headers(Content_Length="0"))
