"""The registry application: routes, the one dispatcher that authorises, errors, metrics, health.

``make_app(config)`` builds an ``aiohttp.web.Application`` serving the OCI Distribution
Specification v1.1 under ``/v2/``, plus ``/metrics`` (Prometheus), ``/healthz`` and, with token
auth, the token endpoint of ``dockyard.registry.auth.token``.

Request path (distribution's ``registry/handlers/app.go`` is the model)::

    observe (middleware)      time, count, access-log every request; turn errors into the spec's
      └─ dispatch             match the /v2 route -> validate the repository name (NAME_INVALID)
           │                  -> compute the accesses from route + method -> authorizer.authorize
           └─ handler         handlers/{blobs,uploads,manifests,tags,referrers}.py: never check auth

Accesses, decided here and nowhere else: GET/HEAD -> ``repository:<name>:pull``, POST/PUT/PATCH
-> ``push``, DELETE -> ``delete``; every method on an upload session -> ``push`` (a status GET or
a cancel is part of pushing); ``/v2/_catalog`` -> ``registry:catalog:*``; ``/v2/`` -> no access,
but the authorizer still sees the request (so it can answer 401 with the challenge clients use
to discover the auth scheme).

Repository names contain slashes, so routes are matched by this module's own anchored patterns
on the decoded path rather than by aiohttp's router: the name is captured loosely (``.+``) and
then validated, so a hostile name gets NAME_INVALID rather than a confusing 404.

Nothing a client sends produces a 500: handlers raise ``RegistryError`` (or a dockyard error
kind, translated here); an unexpected exception is a bug, logged with its traceback and
answered 500 UNKNOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from dockyard.errors import DockyardError, NotFound, PermissionDenied, Unauthenticated
from dockyard.registry import errors as rerr
from dockyard.registry.auth import Access, Authorizer, Grant, RequestInfo
from dockyard.registry.config import RegistryConfig, config_from_dict
from dockyard.registry.handlers import blobs, manifests, referrers, tags, uploads
from dockyard.registry.handlers.context import (
    REPOSITORY,
    ROUTE,
    SENT,
    STREAMING,
    SUBJECT,
    Call,
    Registry,
    api_headers,
)
from dockyard.registry.metrics import AccessLog, Metrics
from dockyard.registry.notifications import Notifier
from dockyard.registry.storage import RegistryStorage
from dockyard.registry.storage.layout import Layout, validate_name

__all__ = ["REGISTRY", "AllowAll", "make_app", "open_storage"]

log = logging.getLogger("dockyard.registry")
REGISTRY = web.AppKey("registry", Registry)
AUTHORIZER = web.AppKey("authorizer", Authorizer)
ACCESS_LOG = web.AppKey("access_log", AccessLog)

Handler = Callable[[Call], Awaitable[web.StreamResponse]]


class AllowAll:
    """The authorizer for auth ``none`` (loopback only): everyone may do everything."""

    async def authorize(self, request: RequestInfo, access: Sequence[Access]) -> Grant:
        return Grant(subject="", accesses=tuple(access))


async def _base(call: Call) -> web.StreamResponse:
    return web.json_response({}, headers=api_headers())


# (route kind, a substring the path must contain, pattern on the decoded path); first match
# wins.  The substring test skips patterns that cannot match without running them.
ROUTES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("manifest", "/manifests/", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)")),
    ("uploads", "/blobs/uploads", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/?")),
    ("upload", "/blobs/uploads/", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)")),
    ("blob", "/blobs/", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)")),
    ("base", "/v2", re.compile(r"/v2/?")),
    ("catalog", "/_catalog", re.compile(r"/v2/_catalog")),
    ("tags", "/tags/list", re.compile(r"/v2/(?P<name>.+)/tags/list")),
    ("referrers", "/referrers/", re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)")),
)

HANDLERS: dict[str, dict[str, Handler]] = {
    "base": {"GET": _base, "HEAD": _base},
    "catalog": {"GET": tags.catalog, "HEAD": tags.catalog},
    "uploads": {"POST": uploads.post_upload},
    "upload": {"GET": uploads.upload_status, "HEAD": uploads.upload_status, "PATCH": uploads.patch_upload,
               "PUT": uploads.put_upload, "DELETE": uploads.cancel_upload},
    "blob": {"GET": blobs.get_blob, "HEAD": blobs.get_blob, "DELETE": blobs.delete_blob},
    "manifest": {"GET": manifests.get_manifest, "HEAD": manifests.get_manifest,
                 "PUT": manifests.put_manifest, "DELETE": manifests.delete_manifest},
    "tags": {"GET": tags.list_tags, "HEAD": tags.list_tags},
    "referrers": {"GET": referrers.list_referrers, "HEAD": referrers.list_referrers},
}

_ACTIONS = {"GET": "pull", "HEAD": "pull", "POST": "push", "PUT": "push", "PATCH": "push", "DELETE": "delete"}


def match_route(path: str) -> tuple[str, dict[str, str]] | None:
    for kind, marker, pattern in ROUTES:
        if marker in path:
            m = pattern.fullmatch(path)
            if m is not None:
                return kind, m.groupdict()
    return None


def required_access(kind: str, method: str, name: str) -> list[Access]:
    """The accesses a request needs, from its route kind and method alone."""
    if kind == "base":
        return []
    if kind == "catalog":
        return [Access("registry", "catalog", "*")]
    action = "push" if kind in ("uploads", "upload") else _ACTIONS.get(method, "pull")
    return [Access("repository", name, action)]


def _error_response(err: rerr.RegistryError, request: web.Request) -> web.Response:
    headers = api_headers() if request.path.startswith("/v2") else {}
    headers.update({k: v for k, v in err.headers.items() if k.lower() != "content-length"})
    body = None if request.method == "HEAD" else rerr.error_body(err)
    resp = web.Response(status=err.status, body=body, headers=headers, content_type="application/json")
    if request.body_exists and not request.content.is_eof():
        resp.force_close()            # an unread body (a refused upload): do not linger reading it
    return resp


def _translate(exc: DockyardError, kind: str) -> rerr.RegistryError:
    not_found = {"blob": rerr.BLOB_UNKNOWN, "manifest": rerr.MANIFEST_UNKNOWN,
                 "upload": rerr.BLOB_UPLOAD_UNKNOWN}.get(kind, rerr.NAME_UNKNOWN)
    invalid = {"manifest": rerr.MANIFEST_INVALID, "upload": rerr.BLOB_UPLOAD_INVALID,
               "uploads": rerr.BLOB_UPLOAD_INVALID}.get(kind, rerr.UNSUPPORTED)
    return rerr.from_dockyard_error(exc, not_found=not_found, invalid=invalid)


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Match, validate, authorise, then call the handler (the only place auth happens)."""
    registry = request.app[REGISTRY]
    authorizer = request.app[AUTHORIZER]
    found = match_route(request.path)
    if found is None:
        raise rerr.NAME_UNKNOWN(detail={"path": request.path[:200]}, message="no such route")
    kind, params = found
    request[ROUTE] = kind
    name = params.pop("name", "") or ""
    if name:
        validate_name(name)
        request[REPOSITORY] = name
    handler = HANDLERS[kind].get(request.method)
    if handler is None:
        raise rerr.UNSUPPORTED(detail={"method": request.method},
                               headers={"Allow": ", ".join(HANDLERS[kind])})
    info = RequestInfo(method=request.method, path=request.path, headers=request.headers,
                       remote=request.remote or "", secure=request.secure)
    needed = required_access(kind, request.method, name)
    try:
        grant = await authorizer.authorize(info, needed)
    except Unauthenticated as exc:
        challenge = getattr(exc, "challenge", "")
        raise rerr.UNAUTHORIZED(detail=[{"Type": a.type, "Name": a.name, "Action": a.action} for a in needed],
                                message=str(exc) or None,
                                headers={"WWW-Authenticate": challenge} if challenge else None) from exc
    except PermissionDenied as exc:
        raise rerr.DENIED(detail=[{"Type": a.type, "Name": a.name, "Action": a.action} for a in needed],
                          message=str(exc) or None) from exc
    request[SUBJECT] = grant.subject

    async def may(access: Access) -> bool:
        try:
            await authorizer.authorize(info, [access])
            return True
        except (Unauthenticated, PermissionDenied):
            return False

    call = Call(request=request, registry=registry, route=kind, name=name, params=params, grant=grant, may=may)
    try:
        return await handler(call)
    except DockyardError as exc:
        raise _translate(exc, kind) from exc


@web.middleware
async def observe(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    """Metrics, access log and error translation around every request."""
    registry = request.app[REGISTRY]
    metrics = registry.metrics
    started = time.perf_counter()
    metrics.in_flight += 1
    status = 500
    resp: web.StreamResponse | None = None
    try:
        try:
            resp = await handler(request)
        except (asyncio.CancelledError, ConnectionError):
            status = 499                  # client went away
            raise
        except Exception as exc:
            if request.get(STREAMING):
                raise                     # headers are gone: all we can do is drop the connection
            resp = _exception_response(exc, request)
        status = resp.status
        return resp
    finally:
        metrics.in_flight -= 1
        elapsed = time.perf_counter() - started
        sent = request.get(SENT) or ((resp.content_length or 0) if resp is not None else 0)
        route = request.get(ROUTE) or _static_route(request.path)
        metrics.observe(route, request.method, status, elapsed, sent)
        request.app[ACCESS_LOG].log(
            remote=request.remote, method=request.method, path=request.path, route=route, status=status,
            bytes=sent, duration_ms=round(elapsed * 1000, 3), user=request.get(SUBJECT, ""),
            repository=request.get(REPOSITORY, ""), agent=request.headers.get("User-Agent", ""))


def _exception_response(exc: Exception, request: web.Request) -> web.StreamResponse:
    if isinstance(exc, rerr.RegistryError):
        return _error_response(exc, request)
    if isinstance(exc, DockyardError):
        return _error_response(_translate(exc, request.get(ROUTE, "")), request)
    if isinstance(exc, web.HTTPException):
        if not request.path.startswith("/v2"):
            return exc
        return _error_response(rerr.UNSUPPORTED(detail=exc.reason, status=exc.status), request)
    log.error("internal error serving %s %s", request.method, request.path, exc_info=exc)
    return _error_response(rerr.UNKNOWN(), request)


def _static_route(path: str) -> str:
    if path in ("/metrics", "/healthz"):
        return path.lstrip("/")
    return "token" if path.startswith("/token") else "other"


async def _metrics(request: web.Request) -> web.StreamResponse:
    text = request.app[REGISTRY].metrics.render()
    return web.Response(body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def _healthz(request: web.Request) -> web.StreamResponse:
    """200 when the storage backend answers (a missing path is an answer), 503 otherwise."""
    storage = request.app[REGISTRY].layout.storage
    try:
        await asyncio.wait_for(storage.stat("repositories"), 5)
    except NotFound:
        pass
    except Exception as exc:          # the point of a health check: any failure is "unhealthy"
        return web.json_response({"status": "unavailable", "storage": storage.name,
                                  "error": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok", "storage": storage.name})


def open_storage(config: RegistryConfig) -> RegistryStorage:
    """The configured driver, wrapped for encryption when a key is configured.

    The one place driver names become objects (house rule 5); drivers import lazily so a
    filesystem registry never loads the Azure SDK.
    """
    storage: RegistryStorage
    if config.storage.driver == "filesystem":
        from dockyard.registry.storage.filesystem import FilesystemStorage

        storage = FilesystemStorage(config.storage.root, fsync=config.storage.fsync)
    elif config.storage.driver == "azureblob":
        from dockyard.registry.storage.azureblob import AzureBlobStorage  # type: ignore[import-not-found]

        storage = AzureBlobStorage(**config.storage.options)
    else:
        raise rerr.UNSUPPORTED(detail=f"unknown storage driver {config.storage.driver}")
    if config.encryption.key_file:
        from dockyard.registry.storage.encryption import EncryptedStorage  # type: ignore[import-not-found]

        storage = EncryptedStorage(storage, key_file=config.encryption.key_file,
                                   previous_key_files=config.encryption.previous_key_files)
    return storage


def _build_authorizer(config: RegistryConfig) -> Any:
    if config.auth.type == "none":
        return AllowAll()
    from dockyard.registry.auth import build_authorizer  # type: ignore[attr-defined]

    return build_authorizer(config.auth_dict())


def make_app(config: RegistryConfig | dict[str, Any] | None = None, *,
             storage: RegistryStorage | None = None, authorizer: Authorizer | None = None,
             run_gc: bool = True) -> web.Application:
    """The registry as an aiohttp application (not yet listening).

    ``storage`` and ``authorizer`` may be given to override what the config would build (tests,
    conformance suites).  ``run_gc`` starts the periodic online GC when ``gc.interval`` is set
    (the CLI passes False on all workers but one).
    """
    cfg = config if isinstance(config, RegistryConfig) else config_from_dict(config)
    cfg.validate()
    store = storage if storage is not None else open_storage(cfg)
    auth = authorizer if authorizer is not None else _build_authorizer(cfg)
    metrics = Metrics()
    notifier = Notifier(cfg.notifications, metrics, cfg.addr) if cfg.notifications.endpoints else None
    registry = Registry(config=cfg, layout=Layout(store), metrics=metrics, notifier=notifier,
                        open_access=isinstance(auth, AllowAll))
    app = web.Application(middlewares=[observe])
    app[REGISTRY] = registry
    app[AUTHORIZER] = auth
    app[ACCESS_LOG] = AccessLog(cfg.log.access_log)
    app.router.add_route("*", "/v2", dispatch)
    app.router.add_route("*", "/v2/{tail:.*}", dispatch)
    if cfg.metrics:
        app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    if cfg.auth.type == "token":
        from dockyard.registry.auth.token import token_routes  # type: ignore[import-not-found]

        app.router.add_routes(token_routes(cfg.auth_dict()))
    gc_task: list[asyncio.Task[None]] = []

    async def startup(app: web.Application) -> None:
        if notifier is not None:
            await notifier.start()
        if run_gc and cfg.gc.interval > 0:
            gc_task.append(asyncio.create_task(_periodic_gc(registry)))

    async def cleanup(app: web.Application) -> None:
        for t in gc_task:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if notifier is not None:
            await notifier.stop()
        await store.close()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    return app


async def _periodic_gc(registry: Registry) -> None:
    from dockyard.registry.gc import collect

    while True:
        await asyncio.sleep(registry.config.gc.interval)
        try:
            report = await collect(registry.layout, registry.config.gc)
            registry.metrics.gc_runs += 1
            registry.metrics.gc_freed_bytes += report.freed_bytes
            log.info("gc: %s", report.summary())
        except Exception:
            log.exception("online garbage collection failed")
