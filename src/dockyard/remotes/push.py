"""Push a local image to a registry, as a stream of Docker-style progress events.

For every blob (layers, top first as Docker shows them, then the config): HEAD it in the target
repository ("Layer already exists"); else try a cross-repository mount from another repository of
the same registry that this image came from or went to (its RepoDigests: ``POST
.../uploads/?mount=<digest>&from=<repo>``, "Mounted from X"); else upload it monolithically (POST for
a location, then one PUT with ``?digest=``), layers a few at a time.  Last, the manifest: the bytes
stored locally, never re-serialised, so its digest and the image ID survive a push and a pull into
another data root.  The pushed ``name@digest`` is recorded as a RepoDigest, as Docker does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin

from dockyard.errors import NotFound
from dockyard.images.store import ImageStore
from dockyard.metadata.db import ImageRow
from dockyard.oci.models import Descriptor
from dockyard.oci.reference import Reference, parse_normalized
from dockyard.remotes.auth import pull_scope, push_scope
from dockyard.remotes.pull import PARALLEL_LAYERS, Emit, Progress, short
from dockyard.remotes.transport import RegistryClient

CHUNK = 1 << 20


@dataclass
class PushResult:
    tag: str
    digest: str
    size: int


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

    async def _exists(self, repo: str, digest: str) -> bool:
        try:
            resp = await self.client.request("HEAD", f"/v2/{repo}/blobs/{digest}", push_scope(repo))
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
            if await self._exists(repo, desc.digest):
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

    async def push(self, row: ImageRow, ref: Reference) -> PushResult:
        repo = ref.path
        manifest = self.store.manifest(row)
        data = self.store.content.read_bytes(row.manifest_digest)
        sources = self.mount_sources(row, ref)
        for layer in reversed(manifest.layers):
            self.emit(Progress("Preparing", short(layer.digest)))
        sem = asyncio.Semaphore(PARALLEL_LAYERS)
        await asyncio.gather(*(self.push_blob(repo, l, sources, sem, True) for l in reversed(manifest.layers)))
        await self.push_blob(repo, manifest.config, sources, sem, False)
        tag = ref.tag or "latest"
        resp = await self.client.request(
            "PUT", f"/v2/{repo}/manifests/{tag}", push_scope(repo), ok=(201,),
            data=lambda: data, headers={"Content-Type": row.manifest_media_type or manifest.media_type or ""})
        resp.release()
        with self.store.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO repo_digests VALUES (?, ?, ?)",
                         (ref.name, row.manifest_digest, row.id))
        return PushResult(tag, row.manifest_digest, len(data))


