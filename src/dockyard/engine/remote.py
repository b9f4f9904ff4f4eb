"""Registry operations with Docker's semantics: login, logout, pull, push, manifest inspect.

pull and push are streams: each returns an iterator of :class:`~dockyard.remotes.pull.Progress`
events (Docker's JSON-message shape) ending with the summary lines Docker's daemon sends
(``Digest: ...``, ``Status: ...``, ``TAG: digest: ... size: N``).  The asyncio work runs on a
worker thread with its own loop; events cross to the caller's thread through a queue, so a CLI
renders them as they come and an API server can encode them as they come.  Errors raised by the
work are re-raised from the iterator.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument, NotFound, Unauthenticated
from dockyard.images.store import ImageStore
from dockyard.oci.models import ImageConfig, Index, Platform, parse_manifest_or_index
from dockyard.oci.reference import parse_normalized
from dockyard.registry.auth.challenge import Credentials, HttpRequest, HttpResponse
from dockyard.remotes.credentials import CredentialStore, server_key
from dockyard.remotes.pull import Progress, Puller
from dockyard.remotes.push import Pusher
from dockyard.remotes.transport import RegistryClient

_DONE = object()


@dataclass
class PullOptions:
    name: str
    all_tags: bool = False
    platform: str | None = None
    tls_verify: bool = True
    credentials: Credentials | None = None   # None: the login stored for the registry (the CLI)


@dataclass
class PushOptions:
    name: str
    all_tags: bool = False
    tls_verify: bool = True
    credentials: Credentials | None = None   # None: the login stored for the registry (the CLI)


@dataclass
class DistributionInfo:
    """What a registry says a reference points to (``GET /distribution/{name}/json``): the
    manifest's or index's descriptor and the platforms it offers."""

    media_type: str
    digest: str
    size: int
    platforms: list[Platform]


def _host_of(server: str | None) -> str:
    key = server_key(server or "docker.io")
    return "docker.io" if key.startswith("https://index.docker.io") else key


async def list_tags(client: RegistryClient, repo: str) -> list[str]:
    """Every tag of ``repo``, sorted, following the registry's ``Link: <...>; rel="next"`` pages."""
    tags: list[str] = []
    seen: set[str] = set()
    path: str | None = f"/v2/{repo}/tags/list"
    while path and path not in seen:
        seen.add(path)
        resp = await client.request("GET", path, f"repository:{repo}:pull")
        try:
            doc = json.loads(await resp.read())
            link = resp.headers.get("Link", "")
        finally:
            resp.release()
        tags.extend(doc.get("tags") or [])
        path = None
        if 'rel="next"' in link and "<" in link:
            path = link[link.index("<") + 1:link.index(">")]
            if not path.startswith(("http://", "https://", "/")):
                path = "/" + path
    return sorted(set(tags))


class RemoteEngine:
    def __init__(self, store: ImageStore, root: Path, events=None) -> None:
        self.store = store
        self.root = root
        self.events = events  # the engine's EventLog (pull and push events); None in bare tests
        self.credentials = CredentialStore()

    def client(self, host: str, tls_verify: bool = True, creds: Credentials | None = None) -> RegistryClient:
        if creds is None:
            creds = self.credentials.get(host)
        return RegistryClient(host, creds, tls_verify=tls_verify, root=self.root)

    # -- streams -------------------------------------------------------------------------------
    def _stream(self, work: Callable[[Callable[[Progress], None]], Coroutine[Any, Any, None]]) -> Iterator[Progress]:
        q: queue.Queue[Any] = queue.Queue()

        def run() -> None:
            try:
                asyncio.run(work(q.put))
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                q.put(exc)
            finally:
                q.put(_DONE)

        threading.Thread(target=run, name="dockyard-remote", daemon=True).start()
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    # -- login / logout ------------------------------------------------------------------------
    def login(self, server: str | None, username: str, password: str, tls_verify: bool = True) -> str:
        """Check the credentials against ``/v2/`` (Basic or the token flow) and store them.

        Raises Unauthenticated in Docker's words; nothing is stored then."""
        creds = Credentials(username, password)
        self.check_login(server, creds, tls_verify)
        self.credentials.store(_host_of(server), creds)
        return "Login Succeeded"

    def check_login(self, server: str | None, creds: Credentials, tls_verify: bool = True) -> None:
        """Check credentials against ``/v2/`` without storing them (the Engine API's ``/auth``).

        Raises Unauthenticated worded as the docker CLI prints it ("Error response from daemon: ...")."""
        host = _host_of(server)

        async def check() -> None:
            async with self.client(host, tls_verify, creds) as c:
                resp = await c.ping()
                if resp.status != 401:
                    return
                url = f"{c.base}/v2/"
                challenge = HttpResponse(401, await resp.read(), tuple(resp.headers.getall("WWW-Authenticate", [])))
                try:
                    header = await c.auth.answer(HttpRequest("GET", url), challenge, "", c._send_small)
                    again = await c._send_small(HttpRequest("GET", url, {"Authorization": header}))
                    if again.status == 401:
                        raise Unauthenticated("unauthorized: incorrect username or password")
                except Unauthenticated as exc:
                    raise Unauthenticated(f'Error response from daemon: Get "{url}": {exc}', exit_code=1) from exc

        asyncio.run(check())

    def logout(self, server: str | None) -> str:
        host = _host_of(server)
        key = server_key(host)
        if not self.credentials.erase(host):
            return f"Not logged in to {key}"
        return f"Removing login credentials for {key}"

    # -- pull ------------------------------------------------------------------------------------
    def pull(self, opts: PullOptions) -> Iterator[Progress]:
        ref = parse_normalized(opts.name)
        if opts.all_tags and not ref.is_name_only:
            raise InvalidArgument("tag can't be used with --all-tags/-a")

        async def work(emit: Callable[[Progress], None]) -> None:
            async with self.client(ref.domain, opts.tls_verify, opts.credentials) as c:
                targets = [ref.with_default_tag()]
                if opts.all_tags:
                    targets = [ref.with_tag(t) for t in await list_tags(c, ref.path)]
                puller = Puller(self.store, c, emit)
                newer = False
                for target in targets:
                    emit(Progress(f"Pulling from {ref.path}", target.tag or target.digest or ""))
                    result = await puller.pull(target, opts.platform)
                    newer = newer or not result.up_to_date
                    if self.events is not None:
                        self.events.emit("image", "pull", target.familiar_string(), {"name": target.familiar_string()})
                    emit(Progress(f"Digest: {result.digest}"))
                shown = ref.familiar_string() if opts.all_tags else targets[0].familiar_string()
                if newer:
                    emit(Progress(f"Status: Downloaded newer image for {shown}"))
                else:
                    emit(Progress(f"Status: Image is up to date for {shown}"))

        return self._stream(work)

    # -- push ------------------------------------------------------------------------------------
    def push(self, opts: PushOptions) -> Iterator[Progress]:
        ref = parse_normalized(opts.name)
        if opts.all_tags and not ref.is_name_only:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        if opts.all_tags:
            names = [parse_normalized(n) for n, _, _ in self.store.db.tags()
                     if parse_normalized(n).name == ref.name]
            if not names:
                raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        else:
            names = [ref.with_default_tag()]
        rows = [(n, self.store.resolve(str(n))) for n in names]

        async def work(emit: Callable[[Progress], None]) -> None:
            async with self.client(ref.domain, opts.tls_verify, opts.credentials) as c:
                pusher = Pusher(self.store, c, emit)
                for name, row in rows:
                    result = await pusher.push(row, name)
                    emit(Progress(f"{result.tag}: digest: {result.digest} size: {result.size}"))

        return self._stream(work)

    # -- manifest inspect ------------------------------------------------------------------------
    def manifest_inspect(self, name: str, tls_verify: bool = True) -> bytes:
        """The raw manifest or index a reference points to (verified), as the registry serves it."""
        ref = parse_normalized(name).with_default_tag()

        async def fetch() -> bytes:
            async with self.client(ref.domain, tls_verify) as c:
                data, _, _ = await Puller(self.store, c, lambda e: None).fetch_manifest(
                    ref.path, ref.digest or ref.tag or "latest")
                return data

        return asyncio.run(fetch())

    def distribution(self, name: str, credentials: Credentials | None = None,
                     tls_verify: bool = True) -> DistributionInfo:
        """The descriptor of what ``name`` points to in its registry and the platforms it offers:
        an index's entries, or a single manifest's config (os/architecture/variant)."""
        ref = parse_normalized(name).with_default_tag()

        async def fetch() -> DistributionInfo:
            async with self.client(ref.domain, tls_verify, credentials) as c:
                puller = Puller(self.store, c, lambda e: None)
                data, media_type, digest = await puller.fetch_manifest(ref.path, ref.digest or ref.tag or "latest")
                doc = parse_manifest_or_index(data, media_type)
                if isinstance(doc, Index):
                    platforms = [d.platform for d in doc.manifests if d.platform is not None]
                else:
                    config = ImageConfig.from_dict(json.loads(await puller.fetch_small_blob(ref.path, doc.config)))
                    platforms = [Platform(architecture=config.architecture, os=config.os,
                                          os_version=config.os_version, os_features=config.os_features,
                                          variant=config.variant)]
                return DistributionInfo(media_type, digest, len(data), platforms)

        return asyncio.run(fetch())
