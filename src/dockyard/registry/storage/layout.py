"""OCI meaning over a plain path store: where blobs, links, tags, uploads and referrers live.

The store is a tree of paths (``RegistryStorage``); this module is the only place that builds
them (distribution's ``registry/storage/paths.go`` is the model).  Every path is made from a
repository name that passed :func:`validate_name`, a digest that passed :func:`validate_digest`,
a tag that passed :func:`validate_tag` or an upload id we generated, so no request can name a
path outside the store (and the drivers refuse ``..`` and absolute paths as a second wall)::

    <root>/
      blobs/<alg>/<hex[:2]>/<hex>/data            the bytes of every blob and manifest, once,
                                                  content-addressed; written only by rename of
                                                  an upload whose digest was checked
      repositories/<name>/                        <name> may contain "/": team/app
        _layers/<alg>/<hex>/link                  "alg:hex": the blob belongs to this repository
        _manifests/
          revisions/<alg>/<hex>/link              the manifest belongs to this repository
          tags/<tag>/current/link                 the digest the tag points at now (its mtime is
                                                  the push time retention sorts by)
          tags/<tag>/index/<alg>/<hex>/link       every digest the tag has pointed at
        _referrers/<alg>/<subject hex>/<alg>/<hex>/descriptor
                                                  JSON descriptor of a manifest in this repository
                                                  whose ``subject`` is that digest
        _uploads/<uuid>/startedat                 RFC 3339 time the upload began (stale cleanup)
        _uploads/<uuid>/data                      the bytes received so far (PATCH appends)
      _gc/tombstones/<alg>/<hex>                  GC means to delete this blob (see gc.py)

Why links: a repository holds only what was pushed (or mounted) into it, so reading a blob
through a repository is an authorisation boundary, while the bytes are stored once for all
repositories.  Links are small files written atomically; a blob file appears (by rename) only
after its digest is verified, and a link or revision is written only after the blob it names
exists, so a killed process never leaves a link to a missing or partial blob.

Repository path components cannot begin with "_" (the name grammar forbids it), so the
``_layers``/``_manifests``/``_uploads`` directories never collide with nested repositories.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from dockyard.errors import InvalidArgument, NotFound
from dockyard.oci.digest import validate_digest
from dockyard.registry import errors as rerr
from dockyard.registry.storage import FileInfo, FileWriter, RegistryStorage

__all__ = ["Layout", "UploadState", "validate_digest_param", "validate_name", "validate_tag"]

NAME_MAX: Final = 255
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE: Final = re.compile(_COMPONENT + r"(?:/" + _COMPONENT + r")*")
TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
UPLOAD_ID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MANIFEST_CACHE_BYTES: Final = 64 << 20


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name (spec regex, <= 255 chars); NAME_INVALID."""
    if not isinstance(name, str) or len(name) > NAME_MAX or NAME_RE.fullmatch(name) is None:
        shown = name if isinstance(name, str) and len(name) <= 300 else f"{str(name)[:64]}..."
        raise rerr.NAME_INVALID(detail={"name": shown})
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag; MANIFEST_INVALID otherwise (there is no TAG code)."""
    if not isinstance(tag, str) or TAG_RE.fullmatch(tag) is None:
        raise rerr.MANIFEST_INVALID(detail={"tag": str(tag)[:200]}, message="invalid tag")
    return tag


def validate_digest_param(digest: str) -> str:
    """Return ``digest`` if it is a supported digest; DIGEST_INVALID (400) otherwise."""
    try:
        return validate_digest(digest)
    except InvalidArgument as exc:
        raise rerr.DIGEST_INVALID(detail={"digest": str(digest)[:200], "reason": str(exc)},
                                  message=str(exc)) from exc


def _split(digest: str) -> tuple[str, str]:
    alg, _, hexpart = digest.partition(":")
    return alg, hexpart


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class UploadState:
    """An upload in progress: how many bytes it holds and when it began (epoch seconds)."""

    id: str
    size: int
    started: float


class Layout:
    """The registry's model over a ``RegistryStorage``; one instance per process.

    Methods raise NotFound (from the driver) where a caller must decide what the absence means
    on its route, and the registry's own errors for bad names and digests.
    """

    def __init__(self, storage: RegistryStorage) -> None:
        self.storage = storage
        self._manifests: OrderedDict[str, bytes] = OrderedDict()   # digest -> bytes (immutable)
        self._manifest_bytes = 0

    # --- paths (the only place they are built) -----------------------------------------------

    @staticmethod
    def blob_path(digest: str) -> str:
        alg, h = _split(digest)
        return f"blobs/{alg}/{h[:2]}/{h}/data"

    @staticmethod
    def repo_path(name: str) -> str:
        return f"repositories/{name}"

    def layer_link_path(self, name: str, digest: str) -> str:
        alg, h = _split(digest)
        return f"{self.repo_path(name)}/_layers/{alg}/{h}/link"

    def revision_link_path(self, name: str, digest: str) -> str:
        alg, h = _split(digest)
        return f"{self.repo_path(name)}/_manifests/revisions/{alg}/{h}/link"

    def tag_path(self, name: str, tag: str) -> str:
        return f"{self.repo_path(name)}/_manifests/tags/{tag}"

    def referrers_path(self, name: str, subject: str) -> str:
        alg, h = _split(subject)
        return f"{self.repo_path(name)}/_referrers/{alg}/{h}"

    def upload_path(self, name: str, upload_id: str) -> str:
        if UPLOAD_ID_RE.fullmatch(upload_id or "") is None:
            raise rerr.BLOB_UPLOAD_UNKNOWN(detail={"id": str(upload_id)[:80]})
        return f"{self.repo_path(name)}/_uploads/{upload_id}"

    @staticmethod
    def tombstone_path(digest: str) -> str:
        alg, h = _split(digest)
        return f"_gc/tombstones/{alg}/{h}"

    # --- small helpers -----------------------------------------------------------------------

    async def _exists(self, path: str) -> bool:
        try:
            await self.storage.stat(path)
            return True
        except NotFound:
            return False

    async def _list(self, path: str) -> list[str]:
        try:
            return await self.storage.list(path)
        except NotFound:
            return []

    async def _read_link(self, path: str) -> str:
        """The digest in a link file; NotFound if absent, and also if its content is damaged."""
        raw = await self.storage.read_bytes(path)
        try:
            return validate_digest(raw.decode().strip())
        except (UnicodeDecodeError, InvalidArgument) as exc:
            raise NotFound(f"{path}: damaged link") from exc

    # --- blobs ---------------------------------------------------------------------------------

    async def blob_info(self, digest: str) -> FileInfo:
        """Size and mtime of a stored blob; NotFound if the registry does not hold it."""
        return await self.storage.stat(self.blob_path(digest))

    async def has_blob(self, digest: str) -> bool:
        return await self._exists(self.blob_path(digest))

    def blob_reader(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.storage.reader(self.blob_path(digest), offset, length)

    def blob_local_path(self, digest: str) -> str | None:
        """A local file holding the blob's plain bytes, when the driver has one (sendfile)."""
        local = getattr(self.storage, "local_path", None)
        if local is None:
            return None
        try:
            return str(local(self.blob_path(digest)))
        except NotFound:
            return None

    async def read_blob(self, digest: str) -> bytes:
        return await self.storage.read_bytes(self.blob_path(digest))

    async def put_blob(self, digest: str, data: bytes) -> None:
        """Store small content (a manifest) the caller has already hashed to ``digest``.

        Rewritten when GC has tombstoned it, so that its fresh mtime makes GC keep it.
        """
        if not await self.has_blob(digest) or await self.has_tombstone(digest):
            await self.storage.put_bytes(self.blob_path(digest), data)

    async def delete_blob(self, digest: str) -> None:
        await self.storage.delete(self.blob_path(digest))

    async def iter_blobs(self) -> AsyncIterator[tuple[str, FileInfo]]:
        """Every stored blob with its info (for GC); damaged entries are skipped."""
        for alg in await self._list("blobs"):
            for prefix in await self._list(f"blobs/{alg}"):
                for h in await self._list(f"blobs/{alg}/{prefix}"):
                    digest = f"{alg}:{h}"
                    try:
                        validate_digest(digest)
                        yield digest, await self.blob_info(digest)
                    except (InvalidArgument, NotFound):
                        continue

    # --- layer links -----------------------------------------------------------------------------

    async def link_layer(self, name: str, digest: str) -> None:
        await self.storage.put_bytes(self.layer_link_path(name, digest), digest.encode())

    async def layer_linked(self, name: str, digest: str) -> bool:
        return await self._exists(self.layer_link_path(name, digest))

    async def unlink_layer(self, name: str, digest: str) -> None:
        await self.storage.delete(self.layer_link_path(name, digest).rsplit("/", 1)[0])

    async def layer_links(self, name: str) -> list[str]:
        return await self._digests_under(f"{self.repo_path(name)}/_layers")

    async def _digests_under(self, prefix: str) -> list[str]:
        out = []
        for alg in await self._list(prefix):
            for h in await self._list(f"{prefix}/{alg}"):
                out.append(f"{alg}:{h}")
        return out

    # --- manifests -------------------------------------------------------------------------------

    async def has_manifest(self, name: str, digest: str) -> bool:
        return await self._exists(self.revision_link_path(name, digest))

    async def link_manifest(self, name: str, digest: str) -> bool:
        """Add the manifest (its blob must exist) to ``name``; True if it was not there before."""
        path = self.revision_link_path(name, digest)
        if await self._exists(path):
            return False
        await self.storage.put_bytes(path, digest.encode())
        return True

    async def unlink_manifest(self, name: str, digest: str) -> None:
        await self.storage.delete(self.revision_link_path(name, digest).rsplit("/", 1)[0])

    async def manifest_revisions(self, name: str) -> list[str]:
        """Digests of the manifests in ``name`` (only those whose link was written)."""
        return [d for d in await self._digests_under(f"{self.repo_path(name)}/_manifests/revisions")
                if await self._exists(self.revision_link_path(name, d))]

    async def read_manifest(self, digest: str) -> bytes:
        """The bytes of a manifest blob, from a small in-process cache (they never change)."""
        data = self._manifests.get(digest)
        if data is not None:
            self._manifests.move_to_end(digest)
            return data
        data = await self.read_blob(digest)
        self._manifests[digest] = data
        self._manifest_bytes += len(data)
        while self._manifest_bytes > MANIFEST_CACHE_BYTES and self._manifests:
            _, old = self._manifests.popitem(last=False)
            self._manifest_bytes -= len(old)
        return data

    # --- tags ------------------------------------------------------------------------------------

    async def resolve_tag(self, name: str, tag: str) -> str:
        """The digest a tag points at; NotFound if the tag does not exist."""
        return await self._read_link(f"{self.tag_path(name, tag)}/current/link")

    async def tag_info(self, name: str, tag: str) -> FileInfo:
        """Info of the tag's current link: ``modified`` is when the tag was last pushed."""
        return await self.storage.stat(f"{self.tag_path(name, tag)}/current/link")

    async def set_tag(self, name: str, tag: str, digest: str) -> None:
        alg, h = _split(digest)
        base = self.tag_path(name, tag)
        await self.storage.put_bytes(f"{base}/current/link", digest.encode())
        await self.storage.put_bytes(f"{base}/index/{alg}/{h}/link", digest.encode())

    async def delete_tag(self, name: str, tag: str) -> None:
        await self.storage.delete(self.tag_path(name, tag))

    async def list_tags(self, name: str) -> list[str]:
        """Tags of ``name`` (only those with a current link), sorted; NotFound if no repository."""
        if not await self.repository_exists(name):
            raise NotFound(f"repository {name} not found")
        names = await self._list(f"{self.repo_path(name)}/_manifests/tags")
        # a directory without its current link is the trace of a writer killed mid-way
        return sorted([t for t in names if TAG_RE.fullmatch(t)
                       and await self._exists(f"{self.tag_path(name, t)}/current/link")])

    async def tags_pointing_at(self, name: str, digest: str) -> list[str]:
        out = []
        for tag in await self.list_tags(name):
            try:
                if await self.resolve_tag(name, tag) == digest:
                    out.append(tag)
            except NotFound:
                continue
        return out

    # --- referrers -------------------------------------------------------------------------------

    async def add_referrer(self, name: str, subject: str, descriptor: dict[str, Any]) -> None:
        alg, h = _split(descriptor["digest"])
        path = f"{self.referrers_path(name, subject)}/{alg}/{h}/descriptor"
        await self.storage.put_bytes(path, json.dumps(descriptor, sort_keys=True).encode())

    async def remove_referrer(self, name: str, subject: str, digest: str) -> None:
        alg, h = _split(digest)
        try:
            await self.storage.delete(f"{self.referrers_path(name, subject)}/{alg}/{h}")
        except NotFound:
            pass

    async def referrers(self, name: str, subject: str) -> list[dict[str, Any]]:
        """Descriptors of the manifests in ``name`` whose subject is ``subject`` (still present)."""
        out = []
        base = self.referrers_path(name, subject)
        for digest in await self._digests_under(base):
            alg, h = _split(digest)
            try:
                validate_digest(digest)
                desc = json.loads(await self.storage.read_bytes(f"{base}/{alg}/{h}/descriptor"))
            except (InvalidArgument, NotFound, ValueError):
                continue
            if isinstance(desc, dict) and await self.has_manifest(name, digest):
                out.append(desc)
        return sorted(out, key=lambda d: str(d.get("digest")))

    # --- uploads ---------------------------------------------------------------------------------

    async def start_upload(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        await self.storage.put_bytes(f"{self.upload_path(name, upload_id)}/startedat",
                                     _now_rfc3339().encode())
        return upload_id

    async def upload_state(self, name: str, upload_id: str) -> UploadState:
        """Size and start of an upload; BLOB_UPLOAD_UNKNOWN if there is no such upload."""
        base = self.upload_path(name, upload_id)
        try:
            raw = await self.storage.read_bytes(f"{base}/startedat")
        except NotFound as exc:
            raise rerr.BLOB_UPLOAD_UNKNOWN(detail={"id": upload_id}) from exc
        try:
            started = datetime.fromisoformat(raw.decode().strip().replace("Z", "+00:00")).timestamp()
        except (UnicodeDecodeError, ValueError):
            started = 0.0
        try:
            size = (await self.storage.stat(f"{base}/data")).size
        except NotFound:
            size = 0
        return UploadState(upload_id, size, started)

    async def upload_writer(self, name: str, upload_id: str) -> FileWriter:
        return await self.storage.writer(f"{self.upload_path(name, upload_id)}/data", append=True)

    def upload_reader(self, name: str, upload_id: str) -> AsyncIterator[bytes]:
        return self.storage.reader(f"{self.upload_path(name, upload_id)}/data")

    async def commit_upload(self, name: str, upload_id: str, digest: str, size: int) -> None:
        """Make a verified upload the blob ``digest`` and link it into ``name``.

        If the blob already exists the upload's copy is dropped (content-addressed: the bytes are
        the same).  An empty upload has no data file; the empty blob is written directly.
        """
        base = self.upload_path(name, upload_id)
        if await self.has_blob(digest) and not await self.has_tombstone(digest):
            pass
        elif size == 0:
            await self.storage.put_bytes(self.blob_path(digest), b"")
        else:
            await self.storage.move(f"{base}/data", self.blob_path(digest))
        await self.link_layer(name, digest)
        await self.delete_upload(name, upload_id)

    async def delete_upload(self, name: str, upload_id: str) -> None:
        try:
            await self.storage.delete(self.upload_path(name, upload_id))
        except NotFound:
            pass

    async def list_uploads(self, name: str) -> list[str]:
        return [u for u in await self._list(f"{self.repo_path(name)}/_uploads") if UPLOAD_ID_RE.fullmatch(u)]

    # --- repositories ----------------------------------------------------------------------------

    async def repository_exists(self, name: str) -> bool:
        base = self.repo_path(name)
        return any(c in ("_manifests", "_layers") for c in await self._list(base))

    async def repositories(self, *, with_uploads: bool = False) -> list[str]:
        """Every repository (a directory holding ``_manifests`` or ``_layers``), sorted.

        ``with_uploads`` also lists names holding only uploads (a first push that never
        finished), which GC must visit to clean them.
        """
        found: list[str] = []
        markers = ("_manifests", "_layers", "_uploads") if with_uploads else ("_manifests", "_layers")

        async def walk(prefix: str, name: str) -> None:
            children = await self._list(prefix)
            if name and any(c in markers for c in children):
                found.append(name)
            for child in children:
                if not child.startswith("_"):
                    await walk(f"{prefix}/{child}", f"{name}/{child}" if name else child)

        await walk("repositories", "")
        return sorted(n for n in found if NAME_RE.fullmatch(n))

    # --- GC tombstones ---------------------------------------------------------------------------

    async def add_tombstone(self, digest: str) -> None:
        await self.storage.put_bytes(self.tombstone_path(digest), str(time.time()).encode())

    async def remove_tombstone(self, digest: str) -> None:
        try:
            await self.storage.delete(self.tombstone_path(digest))
        except NotFound:
            pass

    async def has_tombstone(self, digest: str) -> bool:
        return await self._exists(self.tombstone_path(digest))

    async def tombstones(self) -> list[str]:
        return await self._digests_under("_gc/tombstones")
