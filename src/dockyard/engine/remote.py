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


@dataclass
class PushOptions:
    name: str
    all_tags: bool = False
    tls_verify: bool = True


def _host_of(server: str | None) -> str:
    key = server_key(server or "docker.io")
    return "docker.io" if key.startswith("https://index.docker.io") else key


class RemoteEngine:
    def __init__(self, store: ImageStore, root: Path) -> None:
        self.store = store
        self.root = root
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
        host = _host_of(server)
        creds = Credentials(username, password)

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
        self.credentials.store(host, creds)
        return "Login Succeeded"

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
            async with self.client(ref.domain, opts.tls_verify) as c:
                targets = [ref.with_default_tag()]
                if opts.all_tags:
                    resp = await c.request("GET", f"/v2/{ref.path}/tags/list", f"repository:{ref.path}:pull")
                    tags = (json.loads(await resp.read()).get("tags") or [])
                    resp.release()
                    targets = [ref.with_tag(t) for t in sorted(tags)]
                puller = Puller(self.store, c, emit)
                newer = False
                for target in targets:
                    emit(Progress(f"Pulling from {ref.path}", target.tag or target.digest or ""))
                    result = await puller.pull(target, opts.platform)
                    newer = newer or not result.up_to_date
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
        if opts.all_tags:
            names = [parse_normalized(n) for n, _, _ in self.store.db.tags()
                     if parse_normalized(n).name == ref.name]
            if not names:
                raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        else:
            names = [ref.with_default_tag()]
        rows = [(n, self.store.resolve(str(n))) for n in names]

        async def work(emit: Callable[[Progress], None]) -> None:
            async with self.client(ref.domain, opts.tls_verify) as c:
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


