"""WWW-Authenticate parsing and building, Authorization headers, token scopes (pure, no sockets)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from dockyard.errors import InvalidArgument
from dockyard.registry.auth import Access
from dockyard.registry.auth.challenge import (
    Challenge,
    Credentials,
    ResourceScope,
    basic_authorization,
    basic_challenge,
    bearer_challenge,
    format_challenge,
    format_scopes,
    parse_basic_authorization,
    parse_bearer,
    parse_challenges,
    parse_scope,
    parse_scopes,
    parse_token_response,
    token_request,
)

# --- parsing WWW-Authenticate ---------------------------------------------------------------------


def test_distribution_bearer_challenge() -> None:
    value = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
             'scope="repository:samalba/my-app:pull,push"')
    assert parse_challenges(value) == [Challenge("bearer", {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:samalba/my-app:pull,push"})]


PARSE_CASES = {
    "basic": ('Basic realm="dockyard"', [Challenge("basic", {"realm": "dockyard"})]),
    "case-insensitive names": ('BASIC Realm="R"', [Challenge("basic", {"realm": "R"})]),
    "spaces around = and ,": ('Bearer realm = "a" , service= b ,error ="invalid_token"',
                              [Challenge("bearer", {"realm": "a", "service": "b", "error": "invalid_token"})]),
    "unquoted tokens": ("Bearer realm=x,service=y", [Challenge("bearer", {"realm": "x", "service": "y"})]),
    "comma inside quotes": ('Digest realm="a, b", nonce="n"',
                            [Challenge("digest", {"realm": "a, b", "nonce": "n"})]),
    "escaped quote and backslash": (r'Basic realm="say \"hi\" \\o/"',
                                    [Challenge("basic", {"realm": 'say "hi" \\o/'})]),
    "two challenges": ('Bearer realm="r",service="s", Basic realm="b"',
                       [Challenge("bearer", {"realm": "r", "service": "s"}),
                        Challenge("basic", {"realm": "b"})]),
    "scheme without params first": ('Negotiate, Basic realm="b"',
                                    [Challenge("negotiate"), Challenge("basic", {"realm": "b"})]),
    "token68": ("Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXagMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYB==",
                [Challenge("negotiate", {}, "YIIBhgYGKwYBBQUCoIIBejCCAXagMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYB==")]),
    "token68 then challenge": ('Basic abc=, Bearer realm="r"',
                               [Challenge("basic", {}, "abc="), Challenge("bearer", {"realm": "r"})]),
    "empty quoted value": ('Bearer realm="",service="s"', [Challenge("bearer", {"realm": "", "service": "s"})]),
    "first duplicate wins": ('Bearer realm="a",realm="b"', [Challenge("bearer", {"realm": "a"})]),
    "unterminated quote": ('Bearer realm="https://x/token', [Challenge("bearer", {"realm": "https://x/token"})]),
    "empty": ("", []),
    "only commas": (" , ,", []),
    "leading garbage skipped": ('"junk" Basic realm="b"', [Challenge("junk"), Challenge("basic", {"realm": "b"})]),
    "scope with spaces": ('Bearer realm="r",scope="repository:a:pull repository:b:push"',
                          [Challenge("bearer", {"realm": "r", "scope": "repository:a:pull repository:b:push"})]),
}


@pytest.mark.parametrize("value,expected", PARSE_CASES.values(), ids=PARSE_CASES.keys())
def test_parse(value: str, expected: list[Challenge]) -> None:
    assert parse_challenges(value) == expected


def test_parse_several_header_lines() -> None:
    got = parse_challenges(['Basic realm="b"', 'Bearer realm="r",service="s"'])
    assert [c.scheme for c in got] == ["basic", "bearer"]


# --- building -------------------------------------------------------------------------------------


def test_build_bearer_challenge_like_distribution() -> None:
    accesses = [Access("repository", "samalba/my-app", "pull"), Access("repository", "samalba/my-app", "push")]
    assert bearer_challenge("https://auth.docker.io/token", "registry.docker.io", accesses) == (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push"')


def test_build_bearer_challenge_variants() -> None:
    assert bearer_challenge("https://h/token", "svc") == 'Bearer realm="https://h/token",service="svc"'
    assert bearer_challenge("r", "s", [Access("registry", "catalog", "*")], "insufficient_scope") == (
        'Bearer realm="r",service="s",scope="registry:catalog:*",error="insufficient_scope"')
    assert basic_challenge("dockyard") == 'Basic realm="dockyard"'
    assert format_challenge("Negotiate", {}) == "Negotiate"


@pytest.mark.parametrize("params", [
    {"realm": "plain"}, {"realm": 'with "quotes"', "x": "back\\slash"}, {"realm": "a, b", "c": "=;"},
    {"realm": ""},
])
def test_round_trip(params: dict[str, str]) -> None:
    assert parse_challenges(format_challenge("Bearer", params)) == [Challenge("bearer", params)]


# --- Authorization headers ------------------------------------------------------------------------


def test_basic_round_trip() -> None:
    value = basic_authorization("alice", "pa:ss wörd")
    assert value.startswith("Basic ")
    assert parse_basic_authorization(value) == ("alice", "pa:ss wörd")
    assert parse_basic_authorization("basic " + value.split()[1]) == ("alice", "pa:ss wörd")


@pytest.mark.parametrize("value", [
    "", "Basic", "Basic ", "Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b"nocolon").decode(),
    "Basic " + base64.b64encode(b":emptyuser").decode(), "Digest username=a",
])
def test_basic_malformed(value: str) -> None:
    assert parse_basic_authorization(value) is None


def test_basic_latin1_fallback() -> None:
    value = "Basic " + base64.b64encode("joe:caf\xe9".encode("latin-1")).decode()
    assert parse_basic_authorization(value) == ("joe", "caf\xe9")


@pytest.mark.parametrize("value,expected", [
    ("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer  tok ", "tok"), ("Bearer", None), ("Bearer a b", None),
    ("Basic abc", None), ("", None),
])
def test_parse_bearer(value: str, expected: str | None) -> None:
    assert parse_bearer(value) == expected


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("alice", "hunter2", "refresh-secret"))
    assert "alice" in text and "hunter2" not in text and "refresh-secret" not in text


# --- scopes ---------------------------------------------------------------------------------------

SCOPES = {
    "repository:samalba/my-app:pull,push": ResourceScope("repository", "samalba/my-app", ("pull", "push")),
    "repository:localhost:5000/app:pull": ResourceScope("repository", "localhost:5000/app", ("pull",)),
    "repository(plugin):a/b:pull": ResourceScope("repository", "a/b", ("pull",)),
    "registry:catalog:*": ResourceScope("registry", "catalog", ("*",)),
    "repository:app:": ResourceScope("repository", "app", ()),
    "repository:app:pull,pull,,push": ResourceScope("repository", "app", ("pull", "push")),
}


@pytest.mark.parametrize("text,expected", SCOPES.items(), ids=SCOPES.keys())
def test_parse_scope(text: str, expected: ResourceScope) -> None:
    assert parse_scope(text) == expected


@pytest.mark.parametrize("text", ["", "repository", "repository:app", ":app:pull", "Repo:app:pull",
                                  "repository::pull", "repository:app:PULL", "repository:a b:pull"])
def test_parse_scope_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_scope(text)


def test_parse_scopes_and_accesses() -> None:
    scopes = parse_scopes(["repository:a:pull repository:b:push,pull", "registry:catalog:*"])
    assert [str(s) for s in scopes] == ["repository:a:pull", "repository:b:push,pull", "registry:catalog:*"]
    assert scopes[1].accesses() == [Access("repository", "b", "push"), Access("repository", "b", "pull")]
    assert parse_scopes("") == []


def test_format_scopes_groups_by_resource() -> None:
    accesses = [Access("repository", "a", "pull"), Access("repository", "b", "pull"),
                Access("repository", "a", "push"), Access("repository", "a", "pull")]
    assert format_scopes(accesses) == "repository:a:pull,push repository:b:pull"
    assert format_scopes([]) == ""


# --- token requests -------------------------------------------------------------------------------

BEARER = Challenge("bearer", {"realm": "https://reg.example/token", "service": "dockyard",
                              "scope": "repository:a:pull,push repository:b:pull"})


def test_token_request_get_with_credentials() -> None:
    req = token_request(BEARER, Credentials("alice", "s3cret"))
    url = urlsplit(req.url)
    assert req.method == "GET" and url.path == "/token"
    assert parse_qsl(url.query) == [("service", "dockyard"), ("scope", "repository:a:pull,push"),
                                    ("scope", "repository:b:pull"), ("account", "alice")]
    assert parse_basic_authorization(req.headers["Authorization"]) == ("alice", "s3cret")
    assert "s3cret" not in req.url


def test_token_request_anonymous() -> None:
    req = token_request(Challenge("bearer", {"realm": "http://h/t?x=1"}), None)
    assert req.url == "http://h/t?x=1" and "Authorization" not in req.headers


def test_token_request_refresh_grant() -> None:
    req = token_request(BEARER, Credentials("alice", identity_token="rt"), client_id="tests")
    assert req.method == "POST" and req.url == "https://reg.example/token"
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
    assert form == {"grant_type": "refresh_token", "refresh_token": "rt", "service": "dockyard",
                    "client_id": "tests", "scope": "repository:a:pull,push repository:b:pull"}


@pytest.mark.parametrize("realm", ["", "/token", "ftp://h/token", "javascript:x"])
def test_token_request_needs_http_realm(realm: str) -> None:
    with pytest.raises(InvalidArgument):
        token_request(Challenge("bearer", {"realm": realm}), None)


@pytest.mark.parametrize("body,token", [
    (b'{"token": "t1"}', "t1"), (b'{"access_token": "t2"}', "t2"), (b'{"token": "t", "access_token": "u"}', "t"),
])
def test_parse_token_response(body: bytes, token: str) -> None:
    assert parse_token_response(body) == token


@pytest.mark.parametrize("body", [b"", b"nope", b"[]", b"{}", b'{"token": ""}', b'{"token": 5}'])
def test_parse_token_response_invalid(body: bytes) -> None:
    with pytest.raises(InvalidArgument):
        parse_token_response(body)
