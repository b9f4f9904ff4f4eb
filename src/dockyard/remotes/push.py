"""Push a local image to a registry, as a stream of Docker-style progress events.

For every blob (layers, top first as Docker shows them, then the config): HEAD it in the target
repository ("Layer already exists"); else try a cross-repository mount from another repository of
the same registry that this image came from or went to (its RepoDigests: ``POST
.../uploads/?mount=<digest>&from=<repo>``, "Mounted from X"); else upload it monolithically (POST for
a location, then one PUT with ``?digest=``), layers a few at a time.  Last, the manifest: the bytes
stored locally, never re-serialised, so its digest and the image ID survive a push and a pull into
another data root.  The pushed ``name@digest`` is recorded as a RepoDigest, as Docker does.

Images pulled from an index (a multi-platform image, a manifest list) keep the index's bytes, and
the tag is pushed as that index when every platform in it is available, as Docker's containerd
store does: each child manifest is either this image's, complete in the local store, already in
the target repository, or in the repository the index came from on the same registry (then its
manifest is copied and its blobs mounted).  Otherwise only this platform's manifest is pushed, with
Docker's note saying so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin

from dockyard.errors import DockyardError, NotFound
from dockyard.images.store import ImageStore
from dockyard.metadata.db import ImageRow
from dockyard.oci import mediatypes as mt
from dockyard.oci.models import Descriptor, Index, Manifest
from dockyard.oci.reference import Reference, parse_normalized
from dockyard.remotes.auth import pull_scope, push_scope
from dockyard.remotes.pull import PARALLEL_LAYERS, Emit, Progress, Puller, short
from dockyard.remotes.transport import RegistryClient

CHUNK = 1 << 20
PARTIAL_NOTE = "Not all multiplatform-content is present and only the available single-platform image was pushed"


@dataclass
class PushResult:
    tag: str
    digest: str
    size: int


@dataclass
class Child:
    """One manifest of an index to push: its bytes and the repository its missing blobs mount from
    (None: every blob is local).  ``present``: the target repository has it already."""

    desc: Descriptor
    data: bytes = b""
    source: str | None = None
    present: bool = False
    blobs: list[Descriptor] = field(default_factory=list)


@dataclass
class IndexPlan:
    data: bytes
    digest: str
    media_type: str
    children: list[Child]


class Pusher:
    def __init__(self, store: ImageStore, client: RegistryClient, emit: Emit) -> None:
        self.store = store
        self.client = client
        self.emit = emit

    def mount_sources(self, row: ImageRow, ref: Reference) -> list[str]:
        """Repositories of the same registry that hold this image's blobs (from its RepoDigests)."""
        out = []
        for name, _digest, _ in self.store.db.repo_digests(row.id):
            other = parse_normalized(name)
            if other.domain == ref.domain and other.path != ref.path and other.path not in out:
                out.append(other.path)
        return out

    async def _exists(self, repo: str, kind: str, digest: str, scope: str | None = None) -> bool:
        """HEAD a blob or manifest; the scope defaults to the push target's (``repo``)."""
        try:
            resp = await self.client.request("HEAD", f"/v2/{repo}/{kind}/{digest}", scope or push_scope(repo))
        except NotFound:
            return False
        resp.release()
        return True

    def _body(self, digest: str, size: int, sid: str | None):
        path = self.store.content.path(digest)

        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            with open(path, "rb") as f:  # noqa: ASYNC230 - local disk reads, 1 MiB at a time
                while chunk := f.read(CHUNK):
                    sent += len(chunk)
                    if sid:
                        self.emit(Progress("Pushing", sid, sent, size))
                    yield chunk

        return chunks

    async def push_blob(self, repo: str, desc: Descriptor, sources: list[str], sem: asyncio.Semaphore,
                        show: bool) -> None:
        sid = short(desc.digest) if show else None
        async with sem:
            if await self._exists(repo, "blobs", desc.digest):
                if sid:
                    self.emit(Progress("Layer already exists", sid))
                return
            location = None
            for src in sources:
                scope = f"{push_scope(repo)} {pull_scope(src)}"
                q = urlencode({"mount": desc.digest, "from": src})
                resp = await self.client.request("POST", f"/v2/{repo}/blobs/uploads/?{q}", scope, ok=(201, 202))
                resp.release()
                if resp.status == 201:
                    if sid:
                        self.emit(Progress(f"Mounted from {src}", sid))
                    return
                location = resp.headers.get("Location")
                break
            if not self.store.content.exists(desc.digest):
                raise NotFound(f"blob {desc.digest} is neither local nor mountable from {', '.join(sources)}")
            if location is None:
                resp = await self.client.request("POST", f"/v2/{repo}/blobs/uploads/", push_scope(repo), ok=(202,))
                resp.release()
                location = resp.headers.get("Location") or ""
            url = urljoin(resp.url.human_repr(), location)
            url += ("&" if "?" in url else "?") + urlencode({"digest": desc.digest})
            body = self._body(desc.digest, desc.size, sid)
            resp = await self.client.request(
                "PUT", url, push_scope(repo), ok=(201,), data=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)})
            resp.release()
            if sid:
                self.emit(Progress("Pushed", sid))

    async def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> None:
        resp = await self.client.request("PUT", f"/v2/{repo}/manifests/{reference}", push_scope(repo), ok=(201,),
                                         data=lambda: data, headers={"Content-Type": media_type})
        resp.release()

    # -- indexes ---------------------------------------------------------------------------------
    def indexes_of(self, row: ImageRow, ref: Reference) -> list[tuple[bytes, str, Reference]]:
        """Indexes this image was pulled from that are still stored: (bytes, digest, where from),
        those from the target registry first."""
        out = []
        for name, digest, _ in self.store.db.repo_digests(row.id):
            if digest == row.manifest_digest or not self.store.content.exists(digest):
                continue
            data = self.store.content.read_bytes(digest)
            try:
                doc = json.loads(data)
                index = Index.from_dict(doc) if "manifests" in doc else None
            except (ValueError, DockyardError):
                continue
            if index is not None and any(d.digest == row.manifest_digest for d in index.manifests):
                out.append((data, digest, parse_normalized(name)))
        out.sort(key=lambda item: item[2].domain != ref.domain)
        return out

    def _local_child(self, desc: Descriptor) -> Child | None:
        """A child manifest whose manifest, config and layers are all in the local store."""
        if not self.store.content.exists(desc.digest):
            return None
        data = self.store.content.read_bytes(desc.digest)
        m = Manifest.from_dict(json.loads(data))
        blobs = [m.config, *m.layers]
        if all(self.store.content.exists(b.digest) for b in blobs):
            return Child(desc, data, None, blobs=blobs)
        return None

    async def _remote_child(self, desc: Descriptor, source: Reference) -> Child | None:
        """A child manifest fetched (verified) from the source repository on the same registry, if
        every blob it needs is local or there to mount."""
        try:
            data, _, _ = await Puller(self.store, self.client, self.emit).fetch_manifest(source.path, desc.digest)
        except NotFound:
            return None
        m = Manifest.from_dict(json.loads(data))
        blobs = [m.config, *m.layers]
        for b in blobs:
            if not self.store.content.exists(b.digest) and not await self._exists(
                    source.path, "blobs", b.digest, pull_scope(source.path)):
                return None
        return Child(desc, data, source.path, blobs=blobs)

    async def plan_index(self, row: ImageRow, ref: Reference) -> IndexPlan | None:
        """The index to push for this image, with where each child comes from; None (after Docker's
        note when the image has an index) when only this platform's manifest can be pushed."""
        candidates = self.indexes_of(row, ref)
        for data, digest, source in candidates:
            index = Index.from_dict(json.loads(data))
            children: list[Child] = []
            for desc in index.manifests:
                if desc.digest == row.manifest_digest:
                    children.append(Child(desc))            # pushed with the image itself
                    continue
                if not mt.is_manifest(desc.media_type):
                    break                                   # nested indexes are not pushed
                child = self._local_child(desc)
                if child is None and await self._exists(ref.path, "manifests", desc.digest):
                    child = Child(desc, present=True)
                if child is None and source.domain == ref.domain:
                    child = await self._remote_child(desc, source)
                if child is None:
                    break
                children.append(child)
            else:
                media_type = json.loads(data).get("mediaType") or mt.OCI_INDEX
                return IndexPlan(data, digest, media_type, children)
        if candidates:
            self.emit(Progress(f"{PARTIAL_NOTE}: {candidates[0][1]} -> {row.manifest_digest}"))
        return None

    async def push_children(self, repo: str, plan: IndexPlan, row: ImageRow, sem: asyncio.Semaphore) -> None:
        """Every child manifest of the index other than this image's (pushed already) and its blobs."""
        for child in plan.children:
            if child.present or child.desc.digest == row.manifest_digest:
                continue
            sources = [child.source] if child.source else []
            await asyncio.gather(*(self.push_blob(repo, b, sources, sem, True) for b in child.blobs))
            await self.put_manifest(repo, child.desc.digest, child.data, child.desc.media_type)

    # -- the image -------------------------------------------------------------------------------
    async def push(self, row: ImageRow, ref: Reference) -> PushResult:
        repo = ref.path
        manifest = self.store.manifest(row)
        data = self.store.content.read_bytes(row.manifest_digest)
        media_type = row.manifest_media_type or manifest.media_type or mt.OCI_MANIFEST
        sources = self.mount_sources(row, ref)
        for layer in reversed(manifest.layers):
            self.emit(Progress("Preparing", short(layer.digest)))
        sem = asyncio.Semaphore(PARALLEL_LAYERS)
        await asyncio.gather(*(self.push_blob(repo, l, sources, sem, True) for l in reversed(manifest.layers)))
        await self.push_blob(repo, manifest.config, sources, sem, False)
        tag = ref.tag or "latest"
        plan = await self.plan_index(row, ref)
        if plan is None:
            await self.put_manifest(repo, tag, data, media_type)
            digest, size = row.manifest_digest, len(data)
        else:
            await self.put_manifest(repo, row.manifest_digest, data, media_type)
            await self.push_children(repo, plan, row, sem)
            await self.put_manifest(repo, tag, plan.data, plan.media_type)
            digest, size = plan.digest, len(plan.data)
        with self.store.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO repo_digests VALUES (?, ?, ?)", (ref.name, digest, row.id))
        return PushResult(tag, digest, size)
