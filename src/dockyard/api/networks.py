"""/networks: list, inspect, create, remove, connect, disconnect, prune — over ``engine.networks``.

Shapes are ``engine.networks.inspect``'s (``docker network inspect``'s).  As dockerd since API 1.28,
the list leaves ``Containers`` empty; inspect fills it.  Networks are bridges with one IPv4 subnet:
a request for IPv6, for a second IPAM config or for another driver is refused in Docker's words.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api.app import call, engine_of, json_body, query_filters, route
from dockyard.engine.networks import NetworkCreateOptions
from dockyard.errors import InvalidArgument, NotFound


async def list_networks(request: web.Request) -> web.Response:
    networks = engine_of(request).networks
    filters = query_filters(request)

    def views() -> list[dict[str, Any]]:
        return [{**networks.inspect(n), "Containers": {}} for n in networks.list(filters)]

    return web.json_response(await call(views))


async def inspect_network(request: web.Request) -> web.Response:
    networks = engine_of(request).networks
    name = request.match_info["id"]
    scope = request.query.get("scope", "")
    if scope and scope != "local":
        raise NotFound(f"network {name} not found")
    return web.json_response(await call(lambda: networks.inspect(networks.get(name))))


async def create_network(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name is required" if not name else "invalid network name")
    if body.get("EnableIPv6"):
        raise InvalidArgument("IPv6 networks are not supported by dockyard")
    if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
        raise InvalidArgument("config-only networks are not supported by dockyard")
    scope = body.get("Scope") or "local"
    if scope != "local":
        raise InvalidArgument(f"scope {scope!r} is not supported: dockyard networks are local")
    ipam = body.get("IPAM") or {}
    if (ipam.get("Driver") or "default") != "default":
        raise NotFound(f'plugin "{ipam["Driver"]}" not found')
    configs = [c for c in ipam.get("Config") or [] if c]
    v4 = [c for c in configs if ":" not in (c.get("Subnet") or "")]
    if len(configs) != len(v4):
        raise InvalidArgument("IPv6 subnets are not supported by dockyard")
    if len(v4) > 1:
        raise InvalidArgument("only one IPv4 subnet per network is supported")
    config = v4[0] if v4 else {}
    opts = NetworkCreateOptions(
        name=name,
        driver=body.get("Driver") or "bridge",
        subnet=config.get("Subnet") or "",
        gateway=config.get("Gateway") or "",
        ip_range=config.get("IPRange") or "",
        internal=bool(body.get("Internal")),
        labels=_str_map(body.get("Labels"), "Labels"),
        options=_str_map(body.get("Options"), "Options"),
    )
    # CheckDuplicate: the engine refuses a second network of a name either way (Docker 25's rule).
    net = await call(engine_of(request).networks.create, opts)
    return web.json_response({"Id": net.id, "Warning": ""}, status=201)


async def remove_network(request: web.Request) -> web.Response:
    await call(engine_of(request).networks.remove, request.match_info["id"])
    return web.Response(status=204)


async def connect_network(request: web.Request) -> web.Response:
    body = await json_body(request)
    container = body.get("Container")
    if not container:
        raise InvalidArgument("no container specified")
    endpoint = body.get("EndpointConfig") or {}
    aliases = [a for a in endpoint.get("Aliases") or [] if a]
    ip = ((endpoint.get("IPAMConfig") or {}).get("IPv4Address")) or ""
    if ((endpoint.get("IPAMConfig") or {}).get("IPv6Address")):
        raise InvalidArgument("IPv6 addresses are not supported by dockyard")
    await call(engine_of(request).networks.connect, request.match_info["id"], container, aliases=aliases, ip=ip)
    return web.Response(status=200)


async def disconnect_network(request: web.Request) -> web.Response:
    body = await json_body(request)
    container = body.get("Container")
    if not container:
        raise InvalidArgument("no container specified")
    await call(engine_of(request).networks.disconnect, request.match_info["id"], container,
               force=bool(body.get("Force")))
    return web.Response(status=200)


async def prune_networks(request: web.Request) -> web.Response:
    removed = await call(engine_of(request).networks.prune, query_filters(request))
    return web.json_response({"NetworksDeleted": removed or None})


def _str_map(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"json: cannot unmarshal {key} into Go struct field NetworkCreateRequest.{key} "
                              "of type map[string]string")
    return dict(value)


def setup_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/networks", list_networks)
    route(router, "POST", "/networks/create", create_network)
    route(router, "POST", "/networks/prune", prune_networks)
    route(router, "GET", "/networks/{id}", inspect_network)
    route(router, "DELETE", "/networks/{id}", remove_network)
    route(router, "POST", "/networks/{id}/connect", connect_network)
    route(router, "POST", "/networks/{id}/disconnect", disconnect_network)
