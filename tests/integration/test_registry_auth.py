"""Registry authentication over real HTTP: a minimal aiohttp app of our own that authorizes every
request through the authorizer the config builds (as the registry app does), so these tests do not
depend on the registry core.  Loopback only; each test has its own directory and server.

Covers: Basic with a bcrypt htpasswd file (reloaded on change), the token endpoint and the Bearer
flow (driven by the pure ``auth_flow`` generator over aiohttp's client), wrong passwords, tokens for
the wrong scope, anonymous pulls the policy allows, OAuth2 password/refresh grants, TLS with a
self-signed certificate, the ``registry user`` commands, and that no secret reaches a log or an
error message."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import re
import ssl
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import click
import jwt
import pytest
from aiohttp import web
from click.testing import CliRunner

from dockyard.errors import PermissionDenied
from dockyard.registry.auth import Access, Authorizer, Grant, RequestInfo, Unauthenticated, build_authorizer
from dockyard.registry.auth.challenge import (
    Credentials,
    HttpRequest,
    HttpResponse,
    auth_flow,
    basic_authorization,
    parse_challenges,
)
from dockyard.registry.auth.htpasswd import HtpasswdFile, check_password
from dockyard.registry.auth.token import TokenIssuer, load_signing_key, token_routes
from dockyard.registry.tls import self_signed, server_ssl_context

PASSWORDS = {"alice": "alice-Pa55-é", "bob": "b0b:with:colons", "admin": "adm1n-s3cret-pw"}

POLICY = """
groups:
  admins: [admin]
rules:
  - groups: [admins]
    repositories: ["**"]
    actions: ["*"]
  - users: [alice]
    repositories: ["team/**"]
    actions: [pull, push]
  - users: [bob]
    repositories: ["team/**"]
    actions: [pull, push, delete]
anonymous: ["public/**"]
"""

GRANT = web.RequestKey("grant", Grant)
_REPO = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")


def needed_accesses(method: str, path: str) -> list[Access]:
    """What the registry core computes: from the route and the method alone."""
    if path in ("/v2/", "/v2"):
        return []
    if path.startswith("/v2/_catalog"):
        return [Access("registry", "catalog", "*")]
    m = _REPO.match(path)
    if not m:
        return []
    action = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "push")
    return [Access("repository", m.group("name"), action)]


def make_app(authorizer: Authorizer, config: dict[str, Any]) -> web.Application:
    @web.middleware
    async def authorize(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/v2"):
            return await handler(request)
        accesses = needed_accesses(request.method, request.path)
        info = RequestInfo(request.method, request.path, request.headers, request.remote or "",
                           request.secure)
        try:
            grant = await authorizer.authorize(info, accesses)
        except Unauthenticated as exc:
            detail = [{"Type": a.type, "Name": a.name, "Action": a.action} for a in accesses]
            return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": str(exc), "detail": detail}]},
                                     status=401, headers={"WWW-Authenticate": exc.challenge})
        except PermissionDenied as exc:
            return web.json_response({"errors": [{"code": "DENIED", "message": str(exc)}]}, status=403)
        request[GRANT] = grant
        return await handler(request)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"subject": request[GRANT].subject})

    app = web.Application(middlewares=[authorize])
    app.add_routes(token_routes(config))
    app.router.add_route("*", "/v2/{tail:.*}", ok)
    return app


@contextlib.asynccontextmanager
async def serve(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def write_users(path: Path, users: dict[str, str]) -> HtpasswdFile:
    f = HtpasswdFile(path)
    for name, password in users.items():
        f.set_password(name, password, cost=4)
    return f


def config_for(tmp: Path, kind: str) -> dict[str, Any]:
    write_users(tmp / "htpasswd", PASSWORDS)
    (tmp / "policy.yaml").write_text(POLICY)
    return {"root": str(tmp), "auth": {"type": kind, "policy": str(tmp / "policy.yaml"),
                                       "token": {"service": "dockyard-test", "issuer": "dockyard-test"}}}


async def send(session: aiohttp.ClientSession, req: HttpRequest, **kw: Any) -> HttpResponse:
    async with session.request(req.method, req.url, headers=dict(req.headers), data=req.body or None,
                               **kw) as resp:
        return HttpResponse(resp.status, await resp.read(), tuple(resp.headers.getall("WWW-Authenticate", [])))


async def fetch(session: aiohttp.ClientSession, method: str, url: str, creds: Credentials | None = None,
                trace: list[tuple[HttpRequest, HttpResponse]] | None = None) -> tuple[HttpResponse, str | None]:
    """Drive the pure challenge flow over a real connection: the only I/O is here."""
    flow = auth_flow(HttpRequest(method, url), creds)
    req = next(flow)
    while True:
        resp = await send(session, req)
        if trace is not None:
            trace.append((req, resp))
        try:
            req = flow.send(resp)
        except StopIteration as stop:
            return resp, stop.value


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def error_code(resp: HttpResponse) -> str:
    import json

    return json.loads(resp.body)["errors"][0]["code"]


# --- Basic auth with htpasswd ---------------------------------------------------------------------

def test_basic_auth_htpasswd_and_policy(tmp_path: Path) -> None:
    config = config_for(tmp_path, "htpasswd")

    async def main() -> None:
        async with serve(make_app(build_authorizer(config), config)) as base, aiohttp.ClientSession() as s:
            def basic(user: str, pw: str | None = None) -> dict[str, str]:
                return {"Authorization": basic_authorization(user, PASSWORDS.get(user, "") if pw is None else pw)}

            async with s.get(f"{base}/v2/") as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="dockyard"'
                assert (await r.json())["errors"][0]["code"] == "UNAUTHORIZED"
            async with s.get(f"{base}/v2/", headers=basic("alice")) as r:
                assert r.status == 200 and (await r.json()) == {"subject": "alice"}
            async with s.get(f"{base}/v2/", headers=basic("alice", "wrong")) as r:
                assert r.status == 401 and "WWW-Authenticate" in r.headers
            async with s.get(f"{base}/v2/", headers=basic("mallory", "x")) as r:
                assert r.status == 401
            async with s.get(f"{base}/v2/", headers={"Authorization": "Basic %%%"}) as r:
                assert r.status == 401
            # anonymous pull allowed per repository by the policy; nothing else
            async with s.get(f"{base}/v2/public/web/manifests/latest") as r:
                assert r.status == 200 and (await r.json()) == {"subject": ""}
            async with s.put(f"{base}/v2/public/web/manifests/latest") as r:
                assert r.status == 401
            async with s.get(f"{base}/v2/team/app/manifests/latest") as r:
                assert r.status == 401
            # authenticated: the policy decides, 403 DENIED when it refuses
            async with s.put(f"{base}/v2/team/app/manifests/1", headers=basic("alice")) as r:
                assert r.status == 200
            async with s.delete(f"{base}/v2/team/app/manifests/1", headers=basic("alice")) as r:
                assert r.status == 403 and (await r.json())["errors"][0]["code"] == "DENIED"
            async with s.delete(f"{base}/v2/team/app/manifests/1", headers=basic("bob")) as r:
                assert r.status == 200
            async with s.get(f"{base}/v2/_catalog", headers=basic("alice")) as r:
                assert r.status == 403
            async with s.get(f"{base}/v2/_catalog", headers=basic("admin")) as r:
                assert r.status == 200
            # a user added while the server runs can log in at once; a removed one cannot
            write_users(tmp_path / "htpasswd", {"carol": "carol-pw"})
            async with s.get(f"{base}/v2/", headers=basic("carol", "carol-pw")) as r:
                assert r.status == 200
            HtpasswdFile(tmp_path / "htpasswd").remove("alice")
            async with s.get(f"{base}/v2/", headers=basic("alice")) as r:
                assert r.status == 401
            # the policy is reloaded too; a broken edit keeps the previous one
            (tmp_path / "policy.yaml").write_text(POLICY.replace("[pull, push, delete]", "[pull]"))
            async with s.put(f"{base}/v2/team/app/manifests/1", headers=basic("bob")) as r:
                assert r.status == 403
            (tmp_path / "policy.yaml").write_text("rules: [oops")
            async with s.get(f"{base}/v2/team/app/manifests/1", headers=basic("bob")) as r:
                assert r.status == 200

    run(main())


def test_htpasswd_accepts_2y_and_2b_and_ignores_other_hashes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import bcrypt

    h2b = bcrypt.hashpw(b"pw-b", bcrypt.gensalt(4)).decode()
    h2y = "$2y$" + bcrypt.hashpw(b"pw-y", bcrypt.gensalt(4)).decode()[4:]
    md5 = "$apr1$abcdefgh$0123456789abcdefghijkl"
    (tmp_path / "htpasswd").write_text(f"# comment\nb:{h2b}\ny:{h2y}\n\nold:{md5}\nbroken line\n")
    users = HtpasswdFile(tmp_path / "htpasswd")
    assert users.users() == ["b", "y"]
    assert users.verify("b", "pw-b") and users.verify("y", "pw-y") and not users.verify("y", "pw-b")
    assert not users.verify("old", "anything")
    assert "apr1" not in caplog.text and "0123456789" not in caplog.text      # hashes never logged
    assert HtpasswdFile(tmp_path / "missing").users() == []


# --- token authentication -------------------------------------------------------------------------

def test_token_flow_end_to_end(tmp_path: Path) -> None:
    config = config_for(tmp_path, "token")

    async def main() -> None:
        async with serve(make_app(build_authorizer(config), config)) as base, aiohttp.ClientSession() as s:
            alice = Credentials("alice", PASSWORDS["alice"])
            trace: list[tuple[HttpRequest, HttpResponse]] = []
            resp, token = await fetch(s, "GET", f"{base}/v2/team/app/manifests/latest", alice, trace)
            assert resp.status == 200 and token
            challenge = parse_challenges(trace[0][1].www_authenticate)[0]
            assert challenge.scheme == "bearer" and challenge.params == {
                "realm": f"{base}/token", "service": "dockyard-test", "scope": "repository:team/app:pull"}
            assert trace[2][0].headers["Authorization"] == f"Bearer {token}"
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["sub"] == "alice" and claims["aud"] == "dockyard-test"
            assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
            key = load_signing_key(tmp_path / "token.key", create=False)
            assert jwt.get_unverified_header(token)["kid"] == key.kid

            # docker login: /v2/ needs a token even with no scope
            resp, _ = await fetch(s, "GET", f"{base}/v2/", alice)
            assert resp.status == 200
            # wrong password: the token endpoint says 401 and the flow stops there
            resp, token2 = await fetch(s, "GET", f"{base}/v2/team/app/manifests/latest",
                                       Credentials("alice", "wrong"))
            assert resp.status == 401 and token2 is None
            assert parse_challenges(resp.www_authenticate)[0].scheme == "basic"
            # anonymous pull where the policy allows it; anonymous push never
            resp, _ = await fetch(s, "GET", f"{base}/v2/public/web/manifests/1")
            assert resp.status == 200
            resp, _ = await fetch(s, "PUT", f"{base}/v2/public/web/manifests/1")
            assert resp.status == 401 and error_code(resp) == "UNAUTHORIZED"
            assert parse_challenges(resp.www_authenticate)[0].params["error"] == "insufficient_scope"
            # the endpoint narrows (requested ∩ allowed) and the registry refuses what is missing
            resp, token3 = await fetch(s, "DELETE", f"{base}/v2/team/app/manifests/1", alice)
            assert resp.status == 403 and error_code(resp) == "DENIED"
            assert jwt.decode(token3, options={"verify_signature": False})["access"] == []
            resp, _ = await fetch(s, "DELETE", f"{base}/v2/team/app/manifests/1",
                                  Credentials("bob", PASSWORDS["bob"]))
            assert resp.status == 200
            resp, _ = await fetch(s, "GET", f"{base}/v2/_catalog", Credentials("admin", PASSWORDS["admin"]))
            assert resp.status == 200

            async def with_token(method: str, path: str, tok: str) -> HttpResponse:
                return await send(s, HttpRequest(method, base + path, {"Authorization": f"Bearer {tok}"}))

            # a token for one repository used on another: 401 insufficient_scope
            r = await with_token("GET", "/v2/team/other/manifests/1", token)
            assert r.status == 401
            assert parse_challenges(r.www_authenticate)[0].params == {
                "realm": f"{base}/token", "service": "dockyard-test",
                "scope": "repository:team/other:pull", "error": "insufficient_scope"}
            # pushing with a pull token where the policy allows push: ask again (401); a refused
            # action with the same token: 403
            assert (await with_token("PUT", "/v2/team/app/manifests/1", token)).status == 401
            assert (await with_token("DELETE", "/v2/team/app/manifests/1", token)).status == 403
            # expired, foreign-audience and foreign-key tokens: 401 invalid_token
            past = TokenIssuer(key, "dockyard-test", "dockyard-test", clock=lambda: 1_000_000_000.0)
            other_aud = TokenIssuer(key, "dockyard-test", "someone-else")
            forged = TokenIssuer(load_signing_key(tmp_path / "other.key"), "dockyard-test", "dockyard-test")
            pull = [Access("repository", "team/app", "pull")]
            for bad in (past.issue("alice", pull).token, other_aud.issue("alice", pull).token,
                        forged.issue("alice", pull).token, token[:-4] + "AAAA"):
                r = await with_token("GET", "/v2/team/app/manifests/1", bad)
                assert r.status == 401
                assert parse_challenges(r.www_authenticate)[0].params["error"] == "invalid_token"

    run(main())


def test_token_endpoint_requests(tmp_path: Path) -> None:
    config = config_for(tmp_path, "token")

    async def main() -> None:
        async with serve(make_app(build_authorizer(config), config)) as base, aiohttp.ClientSession() as s:
            url = f"{base}/token"
            auth = {"Authorization": basic_authorization("alice", PASSWORDS["alice"])}
            params = [("service", "dockyard-test"), ("scope", "repository:team/a:pull,push,delete"),
                      ("scope", "repository:team/b:pull repository:other:pull"), ("offline_token", "true")]
            async with s.get(url, params=params, headers=auth) as r:
                body = await r.json()
                assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
                assert body["token"] == body["access_token"] and body["expires_in"] == 300
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["issued_at"])
                access = jwt.decode(body["token"], options={"verify_signature": False})["access"]
                assert access == [{"type": "repository", "name": "team/a", "actions": ["pull", "push"]},
                                  {"type": "repository", "name": "team/b", "actions": ["pull"]}]
                assert body["refresh_token"]
            async with s.get(url, params={"scope": "repository:public/x:pull,push"}) as r:
                body = await r.json()
                claims = jwt.decode(body["token"], options={"verify_signature": False})
                assert r.status == 200 and "refresh_token" not in body and claims["sub"] == ""
                assert claims["access"] == [{"type": "repository", "name": "public/x", "actions": ["pull"]}]
            for bad in ({"service": "elsewhere"}, {"scope": "repository:Bad Name:pull"}):
                async with s.get(url, params=bad, headers=auth) as r:
                    assert r.status == 400
            async with s.get(url, headers={"Authorization": basic_authorization("alice", "nope")}) as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="dockyard"'

            # OAuth2 (oauth.md): what docker login does first
            form = {"grant_type": "password", "username": "bob", "password": PASSWORDS["bob"],
                    "service": "dockyard-test", "client_id": "docker", "access_type": "offline"}
            async with s.post(url, data=form) as r:
                body = await r.json()
                assert r.status == 200 and body["scope"] == "" and body["refresh_token"]
            refresh = body["refresh_token"]
            form2 = {"grant_type": "refresh_token", "refresh_token": refresh, "service": "dockyard-test",
                     "client_id": "docker", "scope": "repository:team/x:pull,delete repository:nope:push"}
            async with s.post(url, data=form2) as r:
                body = await r.json()
                assert r.status == 200 and body["scope"] == "repository:team/x:pull,delete"
                assert body["refresh_token"] == refresh
            # the identity token works through the client flow as docker uses it
            resp, _ = await fetch(s, "DELETE", f"{base}/v2/team/x/manifests/1", Credentials("bob", identity_token=refresh))
            assert resp.status == 200
            # a refresh token is not an access token, and an access token is not a refresh token
            r = await send(s, HttpRequest("GET", f"{base}/v2/", {"Authorization": f"Bearer {refresh}"}))
            assert r.status == 401
            async with s.post(url, data={**form2, "refresh_token": body["access_token"]}) as r:
                assert r.status == 401
            async with s.post(url, data={**form, "password": "wrong"}) as r:
                body = await r.json()
                assert r.status == 401 and body["error"] == "invalid_grant"
                assert body["errors"][0]["code"] == "UNAUTHORIZED"
            async with s.post(url, data={"grant_type": "client_credentials"}) as r:
                assert r.status == 400 and (await r.json())["error"] == "unsupported_grant_type"
            # removing the user revokes the refresh token
            HtpasswdFile(tmp_path / "htpasswd").remove("bob")
            async with s.post(url, data=form2) as r:
                assert r.status == 401

    run(main())


def test_factory_none_and_errors(tmp_path: Path) -> None:
    from dockyard.errors import InvalidArgument

    async def check(config: dict[str, Any]) -> None:
        grant = await build_authorizer(config).authorize(RequestInfo("GET", "/v2/", {}), [])
        assert grant.subject == ""

    run(check({}))
    run(check({"auth": "none"}))
    assert token_routes({"auth": "htpasswd", "root": str(tmp_path)}) == []
    with pytest.raises(InvalidArgument, match="htpasswd"):
        token_routes({"auth": {"type": "token"}})               # nobody could ever log in
    for bad in ({"auth": "ldap"}, {"auth": {"type": "htpasswd"}},
                {"auth": {"type": "htpasswd", "htpasswd": str(tmp_path / "h"), "policy": str(tmp_path / "nope")}},
                {"auth": {"type": "token", "root": str(tmp_path), "token": {"expiry": "soon"}}}):
        with pytest.raises(InvalidArgument):
            build_authorizer(bad)
    # an inline policy and the anonymous shorthand
    authz = build_authorizer({"root": str(tmp_path), "auth": {"type": "htpasswd", "anonymous": "pub/*",
                                                              "policy": {"rules": []}}})
    grant = run(authz.authorize(RequestInfo("GET", "/v2/pub/a/tags/list", {}),
                                [Access("repository", "pub/a", "pull")]))
    assert grant.subject == ""


def test_core_config_shape_without_key_file(tmp_path: Path) -> None:
    """The registry core passes ``RegistryConfig.auth.to_dict()``: the auth section, flat, with
    ``token.key`` None and no root.  The authorizer and the token routes must then share one key."""
    write_users(tmp_path / "htpasswd", PASSWORDS)
    config = {"type": "token", "htpasswd": str(tmp_path / "htpasswd"), "policy": None,
              "realm": "dockyard-registry",
              "token": {"realm": "", "service": "dockyard-registry", "issuer": "dockyard", "key": None,
                        "expiry": 300.0}}

    async def main() -> None:
        async with serve(make_app(build_authorizer(config), config)) as base, aiohttp.ClientSession() as s:
            resp, token = await fetch(s, "PUT", f"{base}/v2/any/repo/manifests/1",
                                      Credentials("bob", PASSWORDS["bob"]))
            assert resp.status == 200          # no policy: any authenticated user may do anything
            assert jwt.decode(token, options={"verify_signature": False})["aud"] == "dockyard-registry"
            resp, _ = await fetch(s, "GET", f"{base}/v2/any/repo/manifests/1")
            assert resp.status == 401          # and anonymous clients nothing

    run(main())
    assert list(tmp_path.iterdir()) == [tmp_path / "htpasswd"]      # no key file written anywhere


# --- TLS ------------------------------------------------------------------------------------------

def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    assert self_signed(cert, key, ["localhost", "127.0.0.1"]) is True
    assert key.stat().st_mode & 0o777 == 0o600
    assert self_signed(cert, key, ["localhost", "127.0.0.1"]) is False   # kept: valid, same hosts
    assert self_signed(cert, key, ["localhost", "127.0.0.1", "reg.test"]) is True
    config = config_for(tmp_path, "token")

    async def main() -> None:
        app = make_app(build_authorizer(config), config)
        async with serve(app, server_ssl_context(cert, key)) as base:
            assert base.startswith("https://")
            trusting = ssl.create_default_context(cafile=str(cert))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as s:
                trace: list[tuple[HttpRequest, HttpResponse]] = []
                resp, _ = await fetch(s, "GET", f"{base}/v2/team/app/tags/list",
                                      Credentials("alice", PASSWORDS["alice"]), trace)
                assert resp.status == 200
                realm = parse_challenges(trace[0][1].www_authenticate)[0].params["realm"]
                assert realm == f"{base}/token"                 # https, from the request itself
            async with aiohttp.ClientSession() as s:            # the system CAs do not know it
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await s.get(f"{base}/v2/")
            localhost = base.replace("127.0.0.1", "localhost")
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as s, \
                    s.get(f"{localhost}/v2/") as r:            # the name is in the SAN too
                assert r.status == 401

    run(main())


def test_server_ssl_context_errors(tmp_path: Path) -> None:
    from dockyard.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="no such file"):
        server_ssl_context(tmp_path / "c.pem", tmp_path / "k.pem")
    self_signed(tmp_path / "a.pem", tmp_path / "a.key")
    self_signed(tmp_path / "b.pem", tmp_path / "b.key")
    with pytest.raises(InvalidArgument):
        server_ssl_context(tmp_path / "a.pem", tmp_path / "b.key")


# --- secrets never leak ---------------------------------------------------------------------------

def test_credentials_never_appear_in_logs_or_errors(tmp_path: Path) -> None:
    config = config_for(tmp_path, "token")
    basic_cfg = config_for(tmp_path / "basic", "htpasswd")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    secrets: list[str] = [*PASSWORDS.values(), "Wr0ng-Guess-Pw"]
    error_texts: list[str] = []

    async def record(resp: HttpResponse) -> None:
        if resp.status >= 400:
            error_texts.append(resp.body.decode(errors="replace"))
            error_texts.extend(resp.www_authenticate)

    async def main() -> None:
        async with serve(make_app(build_authorizer(config), config)) as base, aiohttp.ClientSession() as s:
            for user, pw in [*PASSWORDS.items(), ("alice", "Wr0ng-Guess-Pw"), ("ghost", "Wr0ng-Guess-Pw")]:
                secrets.append(base64.b64encode(f"{user}:{pw}".encode()).decode())
                for method, path in [("GET", "/v2/team/a/manifests/1"), ("DELETE", "/v2/team/a/manifests/1")]:
                    trace: list[tuple[HttpRequest, HttpResponse]] = []
                    _, token = await fetch(s, method, base + path, Credentials(user, pw), trace)
                    for _, resp in trace:
                        await record(resp)
                    if token:
                        secrets.append(token)
            async with s.post(f"{base}/token", data={"grant_type": "password", "username": "alice",
                                                     "password": PASSWORDS["alice"], "access_type": "offline"}) as r:
                secrets.append((await r.json())["refresh_token"])
            for bad in ({"grant_type": "password", "username": "alice", "password": "Wr0ng-Guess-Pw"},
                        {"grant_type": "refresh_token", "refresh_token": "Wr0ng-Guess-Pw"}):
                async with s.post(f"{base}/token", data=bad) as r:
                    await record(HttpResponse(r.status, await r.read()))
            r = await send(s, HttpRequest("GET", f"{base}/v2/", {"Authorization": f"Bearer {secrets[-1]}"}))
            await record(r)
        async with serve(make_app(build_authorizer(basic_cfg), basic_cfg)) as base, aiohttp.ClientSession() as s:
            for user, pw in [("alice", "Wr0ng-Guess-Pw"), ("alice", PASSWORDS["alice"])]:
                r = await send(s, HttpRequest("DELETE", f"{base}/v2/team/a/manifests/1",
                                              {"Authorization": basic_authorization(user, pw)}))
                await record(r)

    try:
        run(main())
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged = stream.getvalue()
    assert "failed login" in logged and "token for 'alice'" in logged    # the logs did run
    assert len(error_texts) > 10
    for secret in secrets:
        assert secret not in logged
        for text in error_texts:
            assert secret not in text
    assert "Authorization" not in logged


# --- dockyard registry user add|rm|ls --------------------------------------------------------------

def user_group() -> click.Group:
    """The ``user`` group: under the core's ``registry`` group if it exists yet, else under a
    throwaway one installed for this test."""
    try:
        import dockyard.cli.registry  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "dockyard.cli.registry":
            raise
        fake = types.ModuleType("dockyard.cli.registry")
        fake.registry = click.Group("registry")  # type: ignore[attr-defined]
        sys.modules["dockyard.cli.registry"] = fake
    import dockyard.cli.registry_users as users

    return users.user


def test_user_commands(tmp_path: Path) -> None:
    group = user_group()
    runner = CliRunner()
    path = tmp_path / "auth" / "htpasswd"

    def cli(*args: str, input: str | None = None) -> Any:
        return runner.invoke(group, ["--htpasswd", str(path), *args], input=input)

    r = cli("add", "alice", "--password-stdin", input="s3cret-Stdin\n")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "User alice added"
    assert path.stat().st_mode & 0o777 == 0o600
    hashed = path.read_text().split(":", 1)[1].strip()
    assert hashed.startswith("$2y$") and check_password("s3cret-Stdin", hashed)
    r = cli("add", "bob", "-p", "s3cret-Flag")
    assert r.exit_code == 0 and "insecure" in r.output and "s3cret-Flag" not in r.output
    r = cli("add", "alice", "--password-stdin", input="n3w-Pw")
    assert r.exit_code == 0 and "updated" in r.output
    assert HtpasswdFile(path).verify("alice", "n3w-Pw")
    r = cli("ls")
    assert r.output.split() == ["USER", "alice", "bob"]
    assert cli("ls", "-q").output.split() == ["alice", "bob"]
    assert cli("rm", "bob").output.strip() == "bob"
    assert cli("ls", "-q").output.split() == ["alice"]
    r = cli("rm", "nobody")
    assert r.exit_code != 0 and "no such user" in str(r.exception)
    for bad in (["add", "bad:name", "-p", "x"], ["add", "carol", "--password-stdin"],
                ["add", "carol", "-p", "x" * 73]):
        r = cli(*bad, input="")
        assert r.exit_code != 0
    assert "s3cret" not in path.read_text()

    # without --htpasswd: <root>/htpasswd, or the config's auth.htpasswd
    r = runner.invoke(group, ["--root", str(tmp_path / "reg"), "add", "dan", "-p", "pw"])
    assert r.exit_code == 0 and (tmp_path / "reg" / "htpasswd").exists()
    cfg = tmp_path / "registry.yaml"
    cfg.write_text(f"auth:\n  type: htpasswd\n  htpasswd: {tmp_path / 'cfg-htpasswd'}\n")
    r = runner.invoke(group, ["--config", str(cfg), "add", "eve", "-p", "pw"])
    assert r.exit_code == 0 and HtpasswdFile(tmp_path / "cfg-htpasswd").users() == ["eve"]
    cfg.write_text(f"storage:\n  root: {tmp_path / 'store'}\n")
    r = runner.invoke(group, ["--config", str(cfg), "add", "fay", "-p", "pw"])
    assert r.exit_code == 0 and HtpasswdFile(tmp_path / "store" / "htpasswd").users() == ["fay"]


def test_user_commands_through_the_real_cli(tmp_path: Path) -> None:
    """``dockyard registry user ...`` as a user types it, in a new process."""
    import subprocess

    path = tmp_path / "htpasswd"
    base = [sys.executable, "-m", "dockyard", "registry", "user", "--htpasswd", str(path)]
    p = subprocess.run([*base, "add", "zoe", "--password-stdin"], input="zoe-Secret-1\n",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "zoe-Secret-1" not in p.stdout + p.stderr
    p = subprocess.run([*base, "ls"], capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["USER", "zoe"]
    p = subprocess.run([*base, "rm", "nobody"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "no such user: nobody" in p.stderr
