"""/volumes: list, create, inspect, remove, prune — over ``engine.volumes``.

Shapes are ``engine.volumes.volume_view``'s (``docker volume inspect``'s), so the CLI and the API
show a volume the same way -- except that ``Labels`` and ``Options`` are ``{}`` rather than null
when empty: the reference makes both required and non-nullable, and ``{}`` is what dockerd answers
for a volume the docker CLI created (the CLI always sends both maps).  Docker's API-version rules kept here: before 1.42 a prune removes named
volumes too (``all`` was implied); since 1.42 only anonymous ones unless ``all=true``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api.app import _vtuple, call, engine_of, json_body, query_bool, query_filters, route
from dockyard.engine.volumes import VolumeCreateOptions, VolumePruneOptions, volume_view
from dockyard.volumes.service import VolumeRecord
from dockyard.errors import InvalidArgument


def _view(rec: VolumeRecord) -> dict[str, Any]:
    view = volume_view(rec)
    return {**view, "Labels": view["Labels"] or {}, "Options": view["Options"] or {}}


async def list_volumes(request: web.Request) -> web.Response:
    volumes = engine_of(request).volumes
    records = await call(volumes.list, query_filters(request))
    return web.json_response({"Volumes": [_view(r) for r in records], "Warnings": None})


async def create_volume(request: web.Request) -> web.Response:
    body = await json_body(request)
    opts = VolumeCreateOptions(
        name=_str(body, "Name"),
        driver=_str(body, "Driver") or "local",
        driver_opts=_str_map(body, "DriverOpts"),
        labels=_str_map(body, "Labels"),
    )
    rec = await call(engine_of(request).volumes.create, opts)
    return web.json_response(_view(rec), status=201)


async def inspect_volume(request: web.Request) -> web.Response:
    rec = await call(engine_of(request).volumes.inspect, request.match_info["name"])
    return web.json_response(_view(rec))


async def remove_volume(request: web.Request) -> web.Response:
    await call(engine_of(request).volumes.remove, request.match_info["name"], force=query_bool(request, "force"))
    return web.Response(status=204)


async def prune_volumes(request: web.Request) -> web.Response:
    filters = query_filters(request)
    opts = VolumePruneOptions(all=_vtuple(request["api_version"]) < (1, 42) and "all" not in filters,
                              filters=filters)
    report = await call(engine_of(request).volumes.prune, opts)
    return web.json_response({"VolumesDeleted": report.deleted or None, "SpaceReclaimed": report.reclaimed})


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                              f"VolumeCreateOptions.{key} of type string")
    return value


def _str_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"json: cannot unmarshal {key} into Go struct field VolumeCreateOptions.{key} "
                              "of type map[string]string")
    return dict(value)


def setup_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/volumes", list_volumes)
    route(router, "POST", "/volumes/create", create_volume)
    route(router, "POST", "/volumes/prune", prune_volumes)
    route(router, "GET", "/volumes/{name}", inspect_volume)
    route(router, "DELETE", "/volumes/{name}", remove_volume)
