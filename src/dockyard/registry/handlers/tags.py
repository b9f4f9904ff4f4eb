"""Tags and the catalog: ``GET /v2/<name>/tags/list`` and ``GET /v2/_catalog`` (end-8a/8b).

Both are sorted lists paginated the same way: ``n`` caps the page (``n=0`` is an empty page
without a ``Link``), ``last`` starts after the given value, and when more entries remain the
response carries ``Link: <next URL>; rel="next"`` (RFC 8288), which clients should prefer to
counting.  Pages are capped at :data:`MAX_PAGE` even for a larger ``n``; the ``Link`` header
then tells the client to continue, which the spec allows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote

from aiohttp import web

from dockyard.errors import NotFound
from dockyard.registry import errors as rerr
from dockyard.registry.handlers.context import Call, api_headers

__all__ = ["catalog", "list_tags", "paginate"]

MAX_PAGE = 10_000


def paginate(call: Call, items: Sequence[str], path: str) -> tuple[list[str], dict[str, str]]:
    """The page of ``items`` (sorted) the query asks for, and the headers to send with it."""
    query = call.request.query
    last = query.get("last")
    raw_n = query.get("n")
    rest = [i for i in items if i > last] if last else list(items)
    headers = api_headers()
    if raw_n is None or raw_n == "":
        n = MAX_PAGE
    else:
        try:
            n = int(raw_n)
        except ValueError:
            n = -1
        if n < 0:
            raise rerr.PAGINATION_NUMBER_INVALID(detail={"n": raw_n[:40]})
    if n == 0:
        return [], headers
    page = rest[: min(n, MAX_PAGE)]
    if len(rest) > len(page):
        headers["Link"] = f'<{path}?n={min(n, MAX_PAGE)}&last={quote(page[-1], safe="")}>; rel="next"'
    return page, headers


def _json(body: dict[str, object], headers: dict[str, str]) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), headers=headers, content_type="application/json")


async def list_tags(call: Call) -> web.StreamResponse:
    try:
        tags = await call.layout.list_tags(call.name)
    except NotFound as exc:
        raise rerr.NAME_UNKNOWN(detail={"name": call.name}) from exc
    page, headers = paginate(call, tags, f"/v2/{call.name}/tags/list")
    return _json({"name": call.name, "tags": page}, headers)


async def catalog(call: Call) -> web.StreamResponse:
    repositories = await call.layout.repositories()
    page, headers = paginate(call, repositories, "/v2/_catalog")
    return _json({"repositories": page}, headers)
