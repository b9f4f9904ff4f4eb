"""Pull an image from a registry into the image store, as a stream of Docker-style progress events.

Order of work (Docker's and containerd's):

1. resolve the reference: GET the manifest by tag or digest, accepting Docker schema 2 and OCI
   manifests and indexes; verify its bytes against the digest in the reference or the
   ``Docker-Content-Digest`` header; from an index choose the wanted platform (linux/amd64 unless
   ``--platform``) and fetch that manifest by digest, verified the same way.  The index's bytes are
   kept with the image, so that a push to another repository can send the whole index again;
2. fetch the config (verified), then every layer not already in the content store, a few at a time,
   each into a resumable ingest named by its digest: a dropped connection (or a killed process)
   resumes with ``Range: bytes=<ingest offset>-``; the digest and size are checked at commit;
3. meanwhile unpack the layers in order as they arrive, on a worker thread: layer N as soon as
   layer N-1 is unpacked, reading its blob while it still downloads (through an
   :class:`~dockyard.remotes.stream.IngestFollower` on its ingest) or from the store if it is there;
   later layers keep downloading meanwhile.  The snapshot is checked against the config's diff ID;
4. commit through :meth:`ImageStore.add_image` under a lease: the image, its tag and its RepoDigest
   (``name@<digest of what the tag pointed to>``) are recorded in one transaction.

All or nothing: until that transaction nothing appears in ``images``.  A pull that fails on the
network (or is interrupted) keeps what it verified -- ingests resume, committed layer blobs and
unpacked snapshots are reused by the next pull (they are unreferenced, so the next garbage
collection removes them if no pull comes); a pull that finds corrupt data (DataLoss) removes what
it created.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from dockyard.content.store import Writer
from dockyard.errors import DataLoss, InvalidArgument, NotFound, Unavailable
from dockyard.images.store import ImageStore, LayerBlob, NewImage, chain_ids
from dockyard.metadata.db import Lease
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import sha256_digest
from dockyard.oci.models import Descriptor, ImageConfig, Index, Manifest, Platform
from dockyard.oci.reference import Reference
from dockyard.remotes.auth import pull_scope
from dockyard.remotes.stream import IngestFollower, first_error, in_thread, ingest_data_path
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


@dataclass
class LayerFetch:
    """One layer of a pull: its download task, and the follower the unpacker reads it through once
    the download has opened its ingest (``opened``; None when the blob was already there)."""

    desc: Descriptor
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    follower: IngestFollower | None = None
    task: asyncio.Task[bool] | None = None


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

    async def download_layer(self, repo: str, fetch: LayerFetch, sem: asyncio.Semaphore, lease: Lease) -> bool:
        """Fetch one layer into the content store (resumable ingest, verified commit).

        Returns False when the blob was there already.  A dropped connection, or a registry that
        does not answer, is retried after each of :data:`RETRY_DELAYS`, resuming from the ingest's
        offset; then Unavailable.  DataLoss (digest or size mismatch) aborts the ingest.  The
        follower is told how it ends, so an unpack reading through it never waits for nothing."""
        desc, sid, ref = fetch.desc, short(fetch.desc.digest), f"pull-{fetch.desc.digest}"
        try:
            if self.store.content.exists(desc.digest):
                lease.add("content", desc.digest)
                self.emit(Progress("Already exists", sid))
                return False
            async with sem:
                delays = list(RETRY_DELAYS)
                while True:
                    w = self.store.content.writer(ref)
                    if fetch.follower is None:
                        fetch.follower = IngestFollower(ingest_data_path(self.store.content, ref))
                        fetch.opened.set()
                    try:
                        await self._stream_into(repo, desc, w, fetch.follower)
                        lease.add("content", desc.digest)
                        w.commit(desc.digest, desc.size)
                        break
                    except (*NETWORK_ERRORS, Unavailable) as exc:
                        w.close()                             # keep the ingest: resume next time
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
                        w.close()                             # cancelled or killed: resumable
                        raise
        except BaseException as exc:
            if fetch.follower is not None:
                fetch.follower.finish(f"download of {desc.digest} failed: {exc or type(exc).__name__}")
            raise
        finally:
            fetch.opened.set()
        fetch.follower.finish()
        self.emit(Progress("Download complete", sid))
        return True

    async def _stream_into(self, repo: str, desc: Descriptor, w: Writer, follower: IngestFollower) -> None:
        """Append the rest of the blob to ``w`` (a Range request from its offset).  A registry that
        ignores Range sends everything: the bytes the ingest has are skipped, so the ingest (and a
        follower reading it) only ever grows."""
        sid = short(desc.digest)
        headers = {"Range": f"bytes={w.offset}-"} if w.offset else {}
        if w.offset:
            self.emit(Progress(f"Resuming from byte {w.offset}", sid))
        resp = await self.client.request("GET", f"/v2/{repo}/blobs/{desc.digest}", pull_scope(repo),
                                         headers=headers, ok=(200, 206), retries=False)
        try:
            skip = w.offset if resp.status == 200 else 0
            last = 0
            async for chunk in resp.content.iter_chunked(CHUNK):
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                    if not chunk:
                        continue
                w.write(chunk)
                follower.grew(w.offset)
                if w.offset > desc.size:
                    raise DataLoss(f"blob {desc.digest}: more than the {desc.size} bytes announced")
                if w.offset - last >= (1 << 19) or w.offset == desc.size:
                    last = w.offset
                    self.emit(Progress("Downloading", sid, w.offset, desc.size))
            if w.offset < desc.size:
                raise aiohttp.ClientPayloadError(f"connection closed early: {w.offset} of {desc.size} bytes")
        finally:
            resp.release()

    async def unpack_layer(self, fetch: LayerFetch, layer: LayerBlob, chain: str, parent: str | None,
                           lease: Lease, created: list[str]) -> None:
        """Unpack one layer (its parent is unpacked) while its download may still be going on:
        through its follower, on a worker thread.  Whichever fails first, download or unpack, is
        raised; the other is never left running."""
        await fetch.opened.wait()
        assert fetch.task is not None
        job = asyncio.ensure_future(
            in_thread(self.store.unpack_layer, layer, chain, parent, lease, created, fetch.follower))
        try:
            await asyncio.wait([fetch.task, job], return_when=asyncio.FIRST_EXCEPTION)
            if job.done():
                job.result()                                  # the unpack failed first: raise that
            fresh = await fetch.task
            if fresh and not job.done():
                self.emit(Progress("Extracting", short(layer.digest)))
            await job
        except BaseException:
            await asyncio.wait([job])                         # its follower was told; it ends soon
            raise
        if fresh:
            self.emit(Progress("Pull complete", short(layer.digest)))

    async def unpack_in_order(self, fetches: list[LayerFetch], layers: list[LayerBlob], lease: Lease,
                              created: list[str]) -> None:
        """Unpack layer N as its blob arrives, once layer N-1 is unpacked."""
        parent: str | None = None
        for fetch, layer, chain in zip(fetches, layers, chain_ids(l.diff_id for l in layers), strict=True):
            await self.unpack_layer(fetch, layer, chain, parent, lease, created)
            parent = chain

    async def fetch_and_unpack(self, repo: str, descs: list[Descriptor], layers: list[LayerBlob], lease: Lease,
                               created: list[str]) -> None:
        """Download the layers a few at a time and unpack them in order as they arrive; the first
        failure cancels the rest (ingests stay resumable) and is raised as itself."""
        sem = asyncio.Semaphore(PARALLEL_LAYERS)
        fetches = [LayerFetch(d) for d in descs]
        try:
            async with asyncio.TaskGroup() as tg:
                for f in fetches:
                    f.task = tg.create_task(self.download_layer(repo, f, sem, lease))
                tg.create_task(self.unpack_in_order(fetches, layers, lease, created))
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        finally:
            for f in fetches:
                if f.follower is not None:
                    f.follower.close()

    def _layers(self, config: bytes, manifest: Manifest) -> list[LayerBlob]:
        """The manifest's layers with the diff IDs the config lists for them (needed to unpack)."""
        try:
            diff_ids = ImageConfig.from_dict(json.loads(config)).rootfs.diff_ids
        except ValueError as exc:
            raise DataLoss(f"image config {manifest.config.digest}: invalid JSON") from exc
        if len(diff_ids) != len(manifest.layers):
            raise DataLoss(f"image config lists {len(diff_ids)} layers but the manifest has "
                           f"{len(manifest.layers)}")
        return [LayerBlob(l.digest, d, l.media_type, l.size) for l, d in zip(manifest.layers, diff_ids, strict=True)]

    def _keep_index(self, image_id: str, index: bytes | None) -> None:
        """Link the index the image was chosen from to the image (so GC keeps it for a later push);
        the caller holds its blob under a lease until then."""
        if index is not None:
            with self.store.db.write() as conn:
                conn.execute("INSERT OR IGNORE INTO image_blobs VALUES (?, ?)", (image_id, sha256_digest(index)))

    async def pull(self, ref: Reference, platform: str | None = None) -> PullResult:
        repo = ref.path
        tag_or_digest = ref.digest or ref.tag or "latest"
        data, media_type, top_digest = await self.fetch_manifest(repo, tag_or_digest)
        index: bytes | None = None
        if media_type in mt.INDEX_TYPES:
            index = data
            chosen = choose_manifest(Index.from_dict(json.loads(data)), parse_platform(platform))
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
                if index is not None:
                    self.store.put_bytes(index, lease)
                new = NewImage(config=config, layers=self.store.layers(existing), tags=tags, manifest=data,
                               manifest_media_type=media_type, repo_digests=[(ref.name, top_digest)])
                image_id, _ = self.store.add_image(new, lease)
                self._keep_index(image_id, index)
            return PullResult(image_id, top_digest, str(ref), up_to_date=True)
        layers = self._layers(config, manifest)
        for l in manifest.layers:
            self.emit(Progress("Pulling fs layer", short(l.digest)))
        created: list[str] = []
        with self.store.db.lease() as lease:
            try:
                if index is not None:
                    self.store.put_bytes(index, lease)
                await self.fetch_and_unpack(repo, manifest.layers, layers, lease, created)
                new = NewImage(config=config, layers=layers, tags=tags, manifest=data,
                               manifest_media_type=media_type, repo_digests=[(ref.name, top_digest)])
                image_id, _ = self.store.add_image(new, lease, created)
                self._keep_index(image_id, index)
            except DataLoss:
                self.store.rollback(created, lease)
                raise
        return PullResult(image_id, top_digest, str(ref), up_to_date=False,
                          layers=[l.digest for l in manifest.layers])
