"""The registry client's HTTP layer (aiohttp): scheme choice, TLS trust, authorisation, retries.

- **Plain HTTP only when allowed**: for registries listed in ``<dataroot>/registries.json``
  (``{"insecure-registries": ["host:port", ...]}``), with ``--tls-verify=false``, and for
  ``localhost``/``127.0.0.0/8``/``::1`` as Docker allows.  Those are tried over HTTPS first
  (without verification), then HTTP; every other registry is HTTPS with verification.
- **Extra CAs** come from ``certs.d/HOST:PORT/*.crt`` under ``/etc/docker`` and ``/etc/containers``
  (``DOCKYARD_CERTS_D``, a ``:``-separated list of directories, replaces both; tests use it).
- **Authorisation**: each request names the token scope it needs; a 401 is answered once through
  :class:`~dockyard.remotes.auth.AuthCache` and the request is sent again.
- **Retries**: :data:`RETRY_DELAYS` is the back-off between attempts after a dropped connection;
  callers that stream (blob downloads) loop over it themselves so they can resume with Range.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import aiohttp

from dockyard.errors import DockyardError, NotFound, PermissionDenied, Unauthenticated, Unavailable
from dockyard.registry.auth.challenge import Credentials, HttpRequest, HttpResponse
from dockyard.remotes.auth import AuthCache

DEFAULT_CERTS_DIRS = ("/etc/docker/certs.d", "/etc/containers/certs.d")
RETRY_DELAYS = tuple(float(x) for x in os.environ.get("DOCKYARD_RETRY_DELAYS", "0.5,1,2,4").split(","))
NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)
USER_AGENT = "dockyard/0.1 (docker-compatible)"


def registry_api_host(host: str) -> str:
    """docker.io names live at registry-1.docker.io."""
    return "registry-1.docker.io" if host in ("docker.io", "index.docker.io") else host


def is_loopback(host: str) -> bool:
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_registries(root: Path | None) -> set[str]:
    if root is None:
        return set()
    try:
        doc = json.loads((root / "registries.json").read_text())
    except (FileNotFoundError, ValueError):
        return set()
    return set(doc.get("insecure-registries") or [])


def certs_dirs() -> list[Path]:
    env = os.environ.get("DOCKYARD_CERTS_D")
    return [Path(p) for p in (env.split(":") if env else DEFAULT_CERTS_DIRS) if p]


def ssl_context(host: str, verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    for base in certs_dirs():
        d = base / host
        if d.is_dir():
            for crt in sorted(d.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(crt))
    return ctx


class RegistryClient:
    """One registry host.  Use as an async context manager (it owns an aiohttp session)."""

    def __init__(self, host: str, credentials: Credentials | None = None, *, tls_verify: bool = True,
                 root: Path | None = None) -> None:
        self.host = host
        self.api_host = registry_api_host(host)
        self.auth = AuthCache(credentials)
        self.insecure = (not tls_verify) or is_loopback(host) or host in insecure_registries(root)
        self.tls_verify = tls_verify and host not in insecure_registries(root)
        self.base: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl_context(self.api_host, self.tls_verify)

    async def __aenter__(self) -> Self:
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=60)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT},
                                              auto_decompress=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use RegistryClient as an async context manager"
        return self._session

    # -- base URL ------------------------------------------------------------------------------
    async def ping(self) -> aiohttp.ClientResponse:
        """GET /v2/ once to choose https or (if allowed) http; returns the response (read)."""
        schemes = ["https", "http"] if self.insecure else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            url = f"{scheme}://{self.api_host}/v2/"
            try:
                resp = await self.session.get(url, ssl=self._ssl if scheme == "https" else True)
                await resp.read()
                self.base = f"{scheme}://{self.api_host}"
                return resp
            except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
                last = exc
            except NETWORK_ERRORS as exc:
                last = exc
        if isinstance(last, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
            raise Unavailable(f'Get "https://{self.api_host}/v2/": tls: {last}')
        raise Unavailable(f'Get "https://{self.api_host}/v2/": {last}')

    async def _ensure_base(self) -> str:
        if self.base is None:
            await self.ping()
        assert self.base is not None
        return self.base

    # -- requests ------------------------------------------------------------------------------
    async def _send_small(self, req: HttpRequest) -> HttpResponse:
        async with self.session.request(req.method, req.url, headers=dict(req.headers), data=req.body or None,
                                        ssl=self._ssl if req.url.startswith("https") else True) as resp:
            body = await resp.read()
            return HttpResponse(resp.status, body, tuple(resp.headers.getall("WWW-Authenticate", [])))

    async def request(self, method: str, path: str, scope: str, *, headers: dict[str, str] | None = None,
                      data: Callable[[], Any] | None = None, ok: tuple[int, ...] = (200,),
                      retries: bool = True) -> aiohttp.ClientResponse:
        """Send an authorised request; the caller reads and releases the response.

        ``path`` is relative to the registry (``/v2/...``) or an absolute URL (upload locations).
        ``data`` makes a fresh body per attempt.  Statuses outside ``ok`` raise the error kind the
        registry's error code maps to (NotFound, Unauthenticated, PermissionDenied, ...)."""
        base = await self._ensure_base()
        url = path if path.startswith(("http://", "https://")) else base + path
        delays = list(RETRY_DELAYS) if retries else []
        authed_once = False
        while True:
            hdrs = dict(headers or {})
            auth = self.auth.header(scope)
            if auth:
                hdrs["Authorization"] = auth
            try:
                resp = await self.session.request(method, url, headers=hdrs, data=data() if data else None,
                                                  ssl=self._ssl if url.startswith("https") else True)
            except NETWORK_ERRORS as exc:
                if not delays:
                    raise Unavailable(f"{method} {url}: {exc or type(exc).__name__}") from exc
                await asyncio.sleep(delays.pop(0))
                continue
            if resp.status == 401 and not authed_once:
                body = await resp.read()
                resp.release()
                challenge = HttpResponse(401, body, tuple(resp.headers.getall("WWW-Authenticate", [])))
                await self.auth.answer(HttpRequest(method, url), challenge, scope, self._send_small)
                authed_once = True
                continue
            if resp.status in ok:
                return resp
            body = await resp.read()
            resp.release()
            raise registry_error(resp.status, body, method, url)


def registry_error(status: int, body: bytes, method: str, url: str) -> DockyardError:
    """The error kind for a registry's error response, worded as Docker words it."""
    code, message = "", ""
    try:
        doc = json.loads(body or b"{}")
        err = (doc.get("errors") or [{}])[0]
        code, message = str(err.get("code", "")), str(err.get("message", ""))
    except (ValueError, AttributeError, IndexError, TypeError):
        pass
    text = message or body.decode(errors="replace").strip()[:200] or f"HTTP {status}"
    if status == 401:
        return Unauthenticated(f"unauthorized: {text}")
    if status == 403:
        return PermissionDenied(f"denied: {text}")
    if status == 404:
        return NotFound(f"{(code or 'not found').lower().replace('_', ' ')}: {text}" if code else f"not found: {text}")
    return Unavailable(f"{method} {url}: unexpected status {status}: {text}")
