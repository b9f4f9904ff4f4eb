"""Pull an image from a registry into the image store, as a stream of Docker-style progress events.

Order of work (Docker's and containerd's):

1. resolve the reference: GET the manifest by tag or digest, accepting Docker schema 2 and OCI
   manifests and indexes; verify its bytes against the digest in the reference or the
   ``Docker-Content-Digest`` header; from an index choose the wanted platform (linux/amd64 unless
   ``--platform``) and fetch that manifest by digest, verified the same way;
2. fetch the config (verified), then every layer not already in the content store, a few at a time,
   each into a resumable ingest named by its digest: a dropped connection (or a killed process)
   resumes with ``Range: bytes=<ingest offset>-``; the digest and size are checked at commit;
3. commit through :meth:`ImageStore.add_image` under a lease: layers are unpacked and the image, its
   tag and its RepoDigest (``name@<digest of what the tag pointed to>``) recorded in one
   transaction.  Any failure rolls the lease back, so nothing partial appears in ``images``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from dockyard.content.store import Writer
from dockyard.errors import DataLoss, InvalidArgument, NotFound, Unavailable
from dockyard.images.store import ImageStore, LayerBlob, NewImage
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import sha256_digest
from dockyard.oci.models import Descriptor, Index, Manifest, Platform
from dockyard.oci.reference import Reference
from dockyard.remotes.auth import pull_scope
from dockyard.remotes.transport import NETWORK_ERRORS, RETRY_DELAYS, RegistryClient

ACCEPT = ", ".join([mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.OCI_INDEX])
MAX_MANIFEST = 4 << 20
PARALLEL_LAYERS = 3
CHUNK = 1 << 16


@dataclass
class Progress:
    """One line of Docker's pull/push stream: ``id`` (12-hex layer or a tag) and a status; byte counts
    for Downloading/Uploading.  Rendered by the CLI, encoded as JSON by the API."""

    status: str
    id: str = ""
    current: int = 0
    total: int = 0


Emit = Callable[[Progress], None]


@dataclass
class PullResult:
    image_id: str
    digest: str                      # what RepoDigests records: the digest the tag resolved to
    name: str                        # the reference as pulled, e.g. 127.0.0.1:5000/busybox:latest
    up_to_date: bool
    layers: list[str] = field(default_factory=list)


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def parse_platform(text: str | None) -> tuple[str, str, str | None]:
    """``os/arch[/variant]``; default linux/amd64."""
    if not text:
        return ("linux", "amd64", None)
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f'"{text}": unknown operating system or architecture: invalid argument')
    return (parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def choose_manifest(index: Index, platform: tuple[str, str, str | None]) -> Descriptor:
    """The index entry for ``platform``; NotFound in Docker's words when there is none."""
    os_, arch, variant = platform
    for d in index.manifests:
        p = d.platform or Platform()
        if (p.os == os_ and p.architecture == arch and (variant is None or p.variant == variant)
                and d.media_type in mt.MANIFEST_TYPES):
            return d
    want = "/".join(x for x in platform if x)
    raise NotFound(f"no matching manifest for {want} in the manifest list entries")


def verify(data: bytes, expected: str | None, what: str) -> str:
    actual = sha256_digest(data)
    if expected and expected != actual:
        raise DataLoss(f"{what}: digest mismatch: expected {expected}, got {actual}")
    return actual


class Puller:
    def __init__(self, store: ImageStore, client: RegistryClient, emit: Emit) -> None:
        self.store = store
        self.client = client
        self.emit = emit

    async def fetch_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index by tag or digest, verified."""
        resp = await self.client.request("GET", f"/v2/{repo}/manifests/{ref}", pull_scope(repo),
                                         headers={"Accept": ACCEPT})
        try:
            data = await resp.content.read(MAX_MANIFEST + 1)
            header_digest = resp.headers.get("Docker-Content-Digest")
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
        finally:
            resp.release()
        if len(data) > MAX_MANIFEST:
            raise InvalidArgument(f"manifest {ref} is larger than 4 MiB")
        expected = ref if ref.startswith("sha256:") else header_digest
        digest = verify(data, expected, f"manifest {repo}:{ref}")
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise DataLoss(f"manifest {ref}: invalid JSON") from exc
        media_type = doc.get("mediaType") or ctype
        if not media_type:
            media_type = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
        return data, media_type, digest

    async def fetch_small_blob(self, repo: str, desc: Descriptor) -> bytes:
        if self.store.content.exists(desc.digest):
            return self.store.content.read_bytes(desc.digest)
        resp = await self.client.request("GET", f"/v2/{repo}/blobs/{desc.digest}", pull_scope(repo))
        try:
            data = await resp.content.read(MAX_MANIFEST + 1)
        finally:
            resp.release()
        verify(data, desc.digest, f"blob {desc.digest}")
        return data

    async def download_layer(self, repo: str, desc: Descriptor, sem: asyncio.Semaphore, lease) -> None:
        """Fetch one layer into the content store (resumable ingest, verified commit)."""
        sid = short(desc.digest)
        if self.store.content.exists(desc.digest):
            self.emit(Progress("Already exists", sid))
            return
        async with sem:
            delays = list(RETRY_DELAYS)
            while True:
                w = self.store.content.writer(f"pull-{desc.digest}")
                try:
                    w = await self._stream_into(repo, desc, w)
                    lease.add("content", desc.digest)
                    w.commit(desc.digest, desc.size)
                    break
                except NETWORK_ERRORS as exc:
                    w.close()                                 # keep the ingest: resume next time
                    if not delays:
                        raise Unavailable(
                            f"failed to download layer {desc.digest}: connection lost after "
                            f"{len(RETRY_DELAYS) + 1} attempts: {exc or type(exc).__name__}") from exc
                    self.emit(Progress(f"Retrying in {delays[0]:g} seconds", sid))
                    await asyncio.sleep(delays.pop(0))
                except DataLoss:
                    w.abort()
                    raise
                except BaseException:
                    w.close()                                 # cancelled or killed: resumable
                    raise
        self.emit(Progress("Download complete", sid))

    async def _stream_into(self, repo: str, desc: Descriptor, w: Writer) -> Writer:
        """Append the rest of the blob to ``w`` (a Range request from its offset); returns the writer
        that holds the data (a fresh one when the registry ignores Range and sends everything)."""
        sid = short(desc.digest)
        headers = {"Range": f"bytes={w.offset}-"} if w.offset else {}
        if w.offset:
            self.emit(Progress(f"Resuming from byte {w.offset}", sid))
        resp = await self.client.request("GET", f"/v2/{repo}/blobs/{desc.digest}", pull_scope(repo),
                                         headers=headers, ok=(200, 206), retries=False)
        try:
            if w.offset and resp.status == 200:
                w.abort()
                w = self.store.content.writer(f"pull-{desc.digest}")
            last = 0
            async for chunk in resp.content.iter_chunked(CHUNK):
                w.write(chunk)
                if w.offset > desc.size:
                    raise DataLoss(f"blob {desc.digest}: more than the {desc.size} bytes announced")
                if w.offset - last >= (1 << 19) or w.offset == desc.size:
                    last = w.offset
                    self.emit(Progress("Downloading", sid, w.offset, desc.size))
            if w.offset < desc.size:
                raise aiohttp.ClientPayloadError(f"connection closed early: {w.offset} of {desc.size} bytes")
        finally:
            resp.release()
        return w

    async def pull(self, ref: Reference, platform: str | None = None) -> PullResult:
        repo = ref.path
        tag_or_digest = ref.digest or ref.tag or "latest"
        data, media_type, top_digest = await self.fetch_manifest(repo, tag_or_digest)
        if media_type in mt.INDEX_TYPES:
            index = Index.from_dict(json.loads(data))
            chosen = choose_manifest(index, parse_platform(platform))
            data, media_type, _ = await self.fetch_manifest(repo, chosen.digest)
        if media_type not in mt.MANIFEST_TYPES:
            raise InvalidArgument(f"unsupported manifest media type {media_type}")
        manifest = Manifest.from_dict(json.loads(data))
        rows = self.store.db.read().execute(
            "SELECT id FROM images WHERE manifest_digest=?", (sha256_digest(data),)).fetchall()
        existing = self.store.db.image(rows[0]["id"]) if rows else None
        for l in manifest.layers:
            if not mt.is_layer(l.media_type):
                raise InvalidArgument(f"unsupported layer media type {l.media_type}")
        config = await self.fetch_small_blob(repo, manifest.config)
        tags = [ref] if ref.digest is None else []
        if existing is not None and existing.id == manifest.config.digest:
            with self.store.db.lease() as lease:
                new = NewImage(config=config, layers=self.store.layers(existing), tags=tags, manifest=data,
                               manifest_media_type=media_type, repo_digests=[(ref.name, top_digest)])
                image_id, _ = self.store.add_image(new, lease)
            return PullResult(image_id, top_digest, str(ref), up_to_date=True)
        for l in manifest.layers:
            self.emit(Progress("Pulling fs layer", short(l.digest)))
        created: list[str] = []
        with self.store.db.lease() as lease:
            try:
                sem = asyncio.Semaphore(PARALLEL_LAYERS)
                await asyncio.gather(*(self.download_layer(repo, l, sem, lease) for l in manifest.layers))
                layers = [LayerBlob(l.digest, "", l.media_type, l.size) for l in manifest.layers]
                new = NewImage(config=config, layers=layers, tags=tags, manifest=data,
                               manifest_media_type=media_type, repo_digests=[(ref.name, top_digest)])
                image_id, _ = self.store.add_image(new, lease, created)
            except BaseException:
                self.store.rollback(created, lease)
                raise
        for l in manifest.layers:
            self.emit(Progress("Pull complete", short(l.digest)))
        return PullResult(image_id, top_digest, str(ref), up_to_date=False,
                          layers=[l.digest for l in manifest.layers])

