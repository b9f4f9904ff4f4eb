"""Manifests: ``GET``/``HEAD``/``PUT``/``DELETE /v2/<name>/manifests/<reference>`` (end-3, 7, 9).

``<reference>`` is a tag or a digest.  A manifest is stored as a blob (content-addressed, byte
for byte as pushed) plus a revision link in the repository; a tag is a link to a revision.

PUT checks, in this order, and stores nothing unless all pass:

1. size (``manifest_max_bytes``, 4 MiB by default) -> 413 MANIFEST_INVALID;
2. a digest reference must equal the digest of the body -> DIGEST_INVALID;
3. JSON, shape and media type (OCI manifest/index, Docker schema 2 manifest/list; the body's
   ``mediaType`` must agree with ``Content-Type``; schema 1 refused) -> MANIFEST_INVALID;
4. everything it references is in the repository: config and layers linked (foreign layers with
   ``urls`` excepted), index children present as manifests -> MANIFEST_BLOB_UNKNOWN;
5. an immutable tag already pointing elsewhere -> DENIED.

Then: blob, revision link, a re-check that no referenced blob is being collected (the GC
handshake, see ``gc.py``: if one is, the revision is withdrawn and the push fails with
MANIFEST_BLOB_UNKNOWN rather than leave a manifest pointing at a deleted blob), the referrers
entry when there is a ``subject`` (answered with ``OCI-Subject``), the tag, then retention
(untag the oldest tags beyond ``keep``).

GET negotiates with ``Accept`` the way distribution does for OCI content: a client that lists
types but neither the stored OCI type nor a wildcard gets MANIFEST_UNKNOWN; anything else gets
the manifest exactly as stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument, NotFound
from dockyard.oci import mediatypes as mt
from dockyard.oci.models import Descriptor, Index, Manifest, parse_manifest_or_index
from dockyard.registry import errors as rerr
from dockyard.registry.handlers.context import Call, api_headers
from dockyard.registry.storage.layout import validate_digest_param, validate_tag

__all__ = ["delete_manifest", "get_manifest", "manifest_references", "put_manifest"]

_OCI_TYPES = frozenset({mt.OCI_MANIFEST, mt.OCI_INDEX})
_KNOWN = mt.MANIFEST_TYPES | mt.INDEX_TYPES
_GENERIC = frozenset({"", "application/json", "application/octet-stream"})
DRAIN_LIMIT = 64 << 20


def is_digest_reference(reference: str) -> bool:
    return ":" in reference


def media_type_of(data: bytes) -> str:
    """The media type a stored manifest is served as: its ``mediaType``, else inferred."""
    try:
        doc = json.loads(data)
    except ValueError:
        return mt.OCI_MANIFEST
    if isinstance(doc, dict):
        declared = doc.get("mediaType")
        if isinstance(declared, str) and declared:
            return declared
        if "manifests" in doc:
            return mt.OCI_INDEX
    return mt.OCI_MANIFEST


def manifest_references(doc: Manifest | Index) -> list[Descriptor]:
    """Descriptors a manifest needs present: config + layers, or an index's children."""
    if isinstance(doc, Index):
        return list(doc.manifests)
    return [doc.config, *doc.layers]


async def _resolve(call: Call, reference: str) -> str:
    layout = call.layout
    if is_digest_reference(reference):
        digest = validate_digest_param(reference)
        if not await layout.has_manifest(call.name, digest):
            raise rerr.MANIFEST_UNKNOWN(detail={"digest": digest})
        return digest
    tag = validate_tag(reference)
    try:
        return await layout.resolve_tag(call.name, tag)
    except NotFound as exc:
        raise rerr.MANIFEST_UNKNOWN(detail={"tag": tag}) from exc


def _accepts(accept_headers: list[str], media_type: str) -> bool:
    if media_type not in _OCI_TYPES or not any(h.strip() for h in accept_headers):
        return True
    for header in accept_headers:
        for item in header.split(","):
            value = mt.normalize(item)
            if value in ("*/*", "application/*", media_type):
                return True
    return False


async def get_manifest(call: Call) -> web.StreamResponse:
    request = call.request
    digest = await _resolve(call, call.params["reference"])
    try:
        data = await call.layout.read_manifest(digest)
    except NotFound as exc:
        raise rerr.MANIFEST_UNKNOWN(detail={"digest": digest}) from exc
    media_type = call.registry.media_types.get(digest)
    if media_type is None:
        media_type = call.registry.media_types[digest] = media_type_of(data)
        if len(call.registry.media_types) > 100_000:
            call.registry.media_types.clear()
    if not _accepts(request.headers.getall("Accept", []), media_type):
        raise rerr.MANIFEST_UNKNOWN(
            detail={"digest": digest, "mediaType": media_type},
            message="OCI manifest found, but accept header does not support OCI manifests")
    headers = api_headers(Docker_Content_Digest=digest, ETag=f'"{digest}"')
    headers["Content-Type"] = media_type
    if request.headers.get("If-None-Match", "").strip() == f'"{digest}"':
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(data))
        return web.Response(headers=headers)
    return web.Response(body=data, headers=headers)


async def _read_body(call: Call) -> bytes:
    """The manifest body, at most ``manifest_max_bytes``; 413 MANIFEST_INVALID beyond.

    An oversized body is read and dropped (up to :data:`DRAIN_LIMIT`) before answering, so the
    client, still sending, gets the 413 instead of a reset connection.
    """
    limit = call.config.manifest_max_bytes
    too_big = rerr.MANIFEST_INVALID(status=413, message="manifest too large", detail={"limit": limit})
    content = call.request.content
    length = call.request.content_length
    buf = bytearray()
    while length is None or length <= limit:
        chunk = await content.readany()
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            break
    drained = len(buf)
    while drained < DRAIN_LIMIT:
        chunk = await content.readany()
        if not chunk:
            break
        drained += len(chunk)
    raise too_big


async def _check_references(call: Call, doc: Manifest | Index) -> list[str]:
    """MANIFEST_BLOB_UNKNOWN unless every reference is in the repository; the digests checked."""
    layout = call.layout
    checked: list[str] = []
    for desc in manifest_references(doc):
        if isinstance(doc, Manifest) and desc.urls and mt.is_non_distributable(desc.media_type):
            continue                     # foreign layers live elsewhere by design
        d = desc.digest
        if isinstance(doc, Index):
            ok = await layout.has_manifest(call.name, d) or await layout.layer_linked(call.name, d)
        else:
            ok = await layout.layer_linked(call.name, d)
        if not ok or not await layout.has_blob(d):
            raise rerr.MANIFEST_BLOB_UNKNOWN(detail={"digest": d, "mediaType": desc.media_type})
        checked.append(d)
    return checked


def _referrer_descriptor(doc: Manifest | Index, media_type: str, digest: str, size: int) -> dict[str, Any]:
    desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    artifact_type = doc.artifact_type
    if not artifact_type and isinstance(doc, Manifest):
        artifact_type = doc.config.media_type
    if artifact_type:
        desc["artifactType"] = artifact_type
    if doc.annotations:
        desc["annotations"] = dict(doc.annotations)
    return desc


async def put_manifest(call: Call) -> web.StreamResponse:
    layout = call.layout
    reference = call.params["reference"]
    tag = None if is_digest_reference(reference) else validate_tag(reference)
    data = await _read_body(call)
    if tag is None:
        expected = validate_digest_param(reference)
        algorithm = expected.split(":", 1)[0]
    else:
        expected, algorithm = None, "sha256"
    digest = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    if expected is not None and digest != expected:
        raise rerr.DIGEST_INVALID(detail={"expected": expected, "actual": digest})
    content_type = call.request.headers.get("Content-Type")
    declared = mt.normalize(content_type)
    if declared not in _KNOWN and declared not in _GENERIC:
        raise rerr.MANIFEST_INVALID(detail=f"unsupported manifest media type {declared}")
    try:
        doc = parse_manifest_or_index(data, content_type)
    except InvalidArgument as exc:
        raise rerr.MANIFEST_INVALID(detail=str(exc)) from exc
    except RecursionError as exc:        # json.loads on absurdly nested input
        raise rerr.MANIFEST_INVALID(detail="manifest JSON nested too deeply") from exc
    media_type = doc.media_type or (declared if declared in _KNOWN else media_type_of(data))
    if media_type not in _KNOWN:
        raise rerr.MANIFEST_INVALID(detail=f"unsupported manifest media type {media_type}")
    references = await _check_references(call, doc)
    if tag is not None and call.config.is_immutable(call.name, tag):
        try:
            current = await layout.resolve_tag(call.name, tag)
        except NotFound:
            current = None
        if current is not None and current != digest:
            raise rerr.DENIED(detail={"tag": tag, "reason": "tag is immutable"}, message="tag is immutable")

    await layout.put_blob(digest, data)
    created = await layout.link_manifest(call.name, digest)
    for d in [digest, *references]:      # the GC handshake (see gc.py)
        if await layout.has_tombstone(d) or not await layout.has_blob(d):
            if created:
                await layout.unlink_manifest(call.name, digest)
            raise rerr.MANIFEST_BLOB_UNKNOWN(detail={"digest": d, "reason": "being garbage-collected"})
    headers = api_headers(Location=f"/v2/{call.name}/manifests/{digest}", Docker_Content_Digest=digest,
                          Content_Length="0")
    if doc.subject is not None:
        await layout.add_referrer(call.name, doc.subject.digest,
                                  _referrer_descriptor(doc, media_type, digest, len(data)))
        headers["OCI-Subject"] = doc.subject.digest
    if tag is not None:
        await layout.set_tag(call.name, tag, digest)
        await _enforce_retention(call)
    call.notify("push", {"repository": call.name, "digest": digest, "mediaType": media_type,
                         "size": len(data), "tag": tag or ""})
    return web.Response(status=201, headers=headers)


async def _enforce_retention(call: Call) -> None:
    """Untag the oldest tags beyond each matching rule's ``keep`` (immutable tags stay)."""
    layout = call.layout
    for rule in call.config.retention_rules(call.name):
        dated = []
        for tag in await layout.list_tags(call.name):
            if not rule.matches_tag(tag):
                continue
            try:
                dated.append(((await layout.tag_info(call.name, tag)).modified, tag))
            except NotFound:
                continue
        dated.sort(reverse=True)
        for _, tag in dated[rule.keep or len(dated):]:
            if call.config.is_immutable(call.name, tag):
                continue
            try:
                await layout.delete_tag(call.name, tag)
            except NotFound:
                continue
            call.notify("delete", {"repository": call.name, "tag": tag, "reason": "retention"})


async def delete_manifest(call: Call) -> web.StreamResponse:
    layout = call.layout
    if not call.config.delete_enabled:
        raise rerr.UNSUPPORTED(detail="deletion is disabled on this registry")
    reference = call.params["reference"]
    if not is_digest_reference(reference):
        tag = validate_tag(reference)
        await _resolve(call, tag)
        if call.config.is_immutable(call.name, tag):
            raise rerr.DENIED(detail={"tag": tag, "reason": "tag is immutable"}, message="tag is immutable")
        await layout.delete_tag(call.name, tag)
        call.notify("delete", {"repository": call.name, "tag": tag})
        return web.Response(status=202, headers=api_headers(Content_Length="0"))
    digest = await _resolve(call, reference)
    tags = await layout.tags_pointing_at(call.name, digest)
    locked = [t for t in tags if call.config.is_immutable(call.name, t)]
    if locked:
        raise rerr.DENIED(detail={"tags": locked, "reason": "manifest has immutable tags"},
                          message="manifest has immutable tags")
    try:
        doc = parse_manifest_or_index(await layout.read_manifest(digest))
        if doc.subject is not None:
            await layout.remove_referrer(call.name, doc.subject.digest, digest)
    except (InvalidArgument, NotFound):
        pass
    for tag in tags:
        await layout.delete_tag(call.name, tag)
    await layout.unlink_manifest(call.name, digest)
    call.notify("delete", {"repository": call.name, "digest": digest})
    return web.Response(status=202, headers=api_headers(Content_Length="0"))
