"""``make_app(engine)``: the Engine API application — versioned paths, negotiation, errors.

Routing: :func:`route` registers every handler twice, as ``/path`` and ``/v{1.NN}/path``, so
``/v1.43/containers/json`` and ``/containers/json`` reach the same handler; the version the client
asked for is in ``request["api_version"]``.  A version above
:data:`API_VERSION` or below :data:`MIN_API_VERSION` is refused as dockerd refuses it.

Errors: handlers raise dockyard error kinds (dockyard.errors); :func:`error_middleware` turns them
into Docker's status codes (the kind's ``http_status``: NotFound 404, Conflict 409, InvalidArgument
400, ...) and the body ``{"message": "..."}`` that clients print after "Error response from
daemon: ".  An unexpected exception is a bug: logged with its traceback, answered 500.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from dockyard.engine.options import Filters
from dockyard.errors import DockyardError, InvalidArgument

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
ENGINE = web.AppKey("engine", object)
log = logging.getLogger("dockyard.api")
T = TypeVar("T")

def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking engine call in a worker thread."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))


def json_error(status: int, message: str) -> web.Response:
    # exactly "application/json" (no charset): the docker CLI decodes an error body only then, and
    # otherwise prints the raw JSON after "Error response from daemon: "
    return web.Response(body=json.dumps({"message": message}).encode(), status=status,
                        content_type="application/json")


def route(router: web.UrlDispatcher, method: str, path: str, handler) -> None:
    """Register ``handler`` for ``path`` and for ``/v{version}/path``."""
    router.add_route(method, path, handler)
    router.add_route(method, r"/v{api_version:\d+\.\d+}" + path, handler)


@web.middleware
async def version_middleware(request: web.Request, handler):
    version = request.match_info.get("api_version")
    if version:
        if _vtuple(version) > _vtuple(API_VERSION):
            return json_error(400, f"client version {version} is too new. Maximum supported API version is "
                                   f"{API_VERSION}")
        if _vtuple(version) < _vtuple(MIN_API_VERSION):
            return json_error(400, f"client version {version} is too old. Minimum supported API version is "
                                   f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    request["api_version"] = version or API_VERSION
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        resp = await handler(request)
    except DockyardError as exc:
        return json_error(exc.http_status, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return json_error(exc.status, exc.reason if exc.text is None else exc.text.removeprefix(f"{exc.status}: "))
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:  # noqa: BLE001 - a bug: log it, answer 500
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal server error")
    return resp


async def _common_headers(request: web.Request, resp: web.StreamResponse) -> None:
    """Docker's headers on every response, streamed ones included (on_response_prepare)."""
    resp.headers.setdefault("Api-Version", API_VERSION)
    resp.headers.setdefault("Server", "Docker/24.0.0-dockyard (linux)")
    resp.headers.setdefault("Docker-Experimental", "false")
    resp.headers.setdefault("Ostype", "linux")


ROUTERS = ("system", "containers", "attach", "exec", "images", "volumes", "networks")


def make_app(engine) -> web.Application:
    """The application over ``engine`` (a dockyard.engine.Engine).

    Each router module has ``setup_routes(router)`` and may have ``setup_app(app)`` for state it
    keeps per application (exec instances, attach sessions, the event hub).  Streams that live
    long (attach, logs -f, events, stats) run on threads of their own (api/streams.py); the
    default executor serves the short blocking calls of :func:`call`."""
    import importlib

    app = web.Application(middlewares=[error_middleware, version_middleware], client_max_size=1024 ** 4)
    app[ENGINE] = engine
    app.on_response_prepare.append(_common_headers)
    for name in ROUTERS:
        module = importlib.import_module(f"dockyard.api.{name}")
        module.setup_routes(app.router)
        if hasattr(module, "setup_app"):
            module.setup_app(app)
    return app


def engine_of(request: web.Request):
    return request.app[ENGINE]


# -- request parameters (Docker's forms) ---------------------------------------------------------
def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    """dockerd's httputils.BoolValue: anything but "", 0, no, false, none (any case) is true;
    absent is ``default``."""
    v = request.query.get(name)
    if v is None:
        return default
    return v.strip().lower() not in ("", "0", "no", "false", "none")


def query_int(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name, "")
    if v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v!r}") from None


def query_filters(request: web.Request) -> Filters:
    """The ``filters`` parameter: JSON ``{"key": {"value": true}}`` (what clients send) or
    ``{"key": ["value"]}``."""
    raw = request.query.get("filters", "")
    if not raw:
        return Filters()
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid filter: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out[key] = [k for k, on in value.items() if on]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            raise InvalidArgument(f"invalid filter: {key}")
    return Filters(out)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; an empty body (or ``null``) is ``{}``."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid JSON: expected an object")
    return doc
