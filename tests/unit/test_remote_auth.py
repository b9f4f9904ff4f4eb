"""The registry client's challenge answering (AuthCache over the pure auth_flow) and host rules."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from dockyard.errors import Unauthenticated
from dockyard.registry.auth.challenge import Credentials, HttpRequest, HttpResponse
from dockyard.remotes.auth import AuthCache, pull_scope, push_scope
from dockyard.remotes.transport import is_loopback, registry_error

URL = "https://reg.example/v2/team/app/manifests/v1"
BEARER = ('Bearer realm="https://auth.example/token",service="reg.example",'
          'scope="repository:team/app:pull"')


def run(coro):
    return asyncio.run(coro)


def test_basic_challenge_is_answered_without_a_round_trip_and_reused_for_every_scope() -> None:
    cache = AuthCache(Credentials("alice", "pw"))

    async def send(_: HttpRequest) -> HttpResponse:
        raise AssertionError("no request expected")

    header = run(cache.answer(HttpRequest("GET", URL), HttpResponse(401, b"", ('Basic realm="r"',)),
                              pull_scope("team/app"), send))
    assert header.startswith("Basic ")
    assert cache.header(push_scope("other")) == header


def test_bearer_token_fetched_with_scope_and_cached_per_scope() -> None:
    cache = AuthCache(Credentials("alice", "pw"))
    sent: list[HttpRequest] = []

    async def send(req: HttpRequest) -> HttpResponse:
        sent.append(req)
        return HttpResponse(200, json.dumps({"token": "tok-1"}).encode())

    header = run(cache.answer(HttpRequest("GET", URL), HttpResponse(401, b"", (BEARER,)),
                              pull_scope("team/app"), send))
    assert header == "Bearer tok-1"
    assert len(sent) == 1
    q = parse_qs(urlsplit(sent[0].url).query)
    assert q["scope"] == ["repository:team/app:pull"] and q["service"] == ["reg.example"]
    assert sent[0].headers["Authorization"].startswith("Basic ")
    assert cache.header(pull_scope("team/app")) == "Bearer tok-1"
    assert cache.header(pull_scope("elsewhere")) is None


def test_anonymous_bearer_token() -> None:
    cache = AuthCache(None)

    async def send(req: HttpRequest) -> HttpResponse:
        assert "Authorization" not in req.headers
        return HttpResponse(200, json.dumps({"access_token": "anon"}).encode())

    assert run(cache.answer(HttpRequest("GET", URL), HttpResponse(401, b"", (BEARER,)), "s", send)) == "Bearer anon"


def test_rejected_token_request_is_unauthorized_in_dockers_words_and_refresh_drops_the_old_one() -> None:
    cache = AuthCache(Credentials("alice", "bad"))
    cache.by_scope["s"] = "Bearer stale"

    async def send(_: HttpRequest) -> HttpResponse:
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "incorrect username or password"}]})
        return HttpResponse(401, body.encode())

    with pytest.raises(Unauthenticated, match="^unauthorized: incorrect username or password$"):
        run(cache.answer(HttpRequest("GET", URL), HttpResponse(401, b"", (BEARER,)), "s", send))
    assert cache.header("s") is None


def test_basic_challenge_without_credentials_is_unauthorized() -> None:
    async def send(_: HttpRequest) -> HttpResponse:
        raise AssertionError

    with pytest.raises(Unauthenticated, match="unauthorized"):
        run(AuthCache(None).answer(HttpRequest("GET", URL), HttpResponse(401, b"", ('Basic realm="x"',)), "s", send))


@pytest.mark.parametrize("host,expected", [
    ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.0.0.2", True), ("[::1]:5000", True),
    ("::1", True), ("registry.example:5000", False), ("10.0.0.1:5000", False), ("docker.io", False),
])
def test_loopback_hosts_may_use_plain_http(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_registry_errors_map_to_kinds() -> None:
    body = json.dumps({"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]})
    err = registry_error(403, body.encode(), "GET", "https://r/v2/")
    assert type(err).__name__ == "PermissionDenied" and "denied: requested access" in str(err)
    assert type(registry_error(404, b"", "GET", "u")).__name__ == "NotFound"
