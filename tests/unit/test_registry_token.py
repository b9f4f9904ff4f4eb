"""Token authentication without sockets: key IDs (the spec's vectors), issuing and validating JWTs,
the Bearer authorizer's answers, and the client's generator-style challenge flow."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dockyard.errors import InvalidArgument, PermissionDenied
from dockyard.registry.auth import Access, RequestInfo, Unauthenticated
from dockyard.registry.auth.challenge import (
    Credentials,
    HttpRequest,
    HttpResponse,
    auth_flow,
    parse_basic_authorization,
    parse_challenges,
)
from dockyard.registry.auth.policy import Policy
from dockyard.registry.auth.token import (
    InvalidToken,
    SigningKey,
    TokenAuthorizer,
    TokenIssuer,
    TokenValidator,
    default_realm,
    jwk_thumbprint,
    libtrust_key_id,
    load_signing_key,
)


def _int(b64: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)), "big")


# --- key IDs --------------------------------------------------------------------------------------

def test_libtrust_key_id_matches_the_spec_example() -> None:
    # the ECDSA key of distribution's jwt.md and the kid it shows for it
    pub = ec.EllipticCurvePublicNumbers(_int("m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q"),
                                        _int("dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"),
                                        ec.SECP256R1()).public_key()
    assert libtrust_key_id(pub) == "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"


def test_jwk_thumbprint_matches_rfc7638() -> None:
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZ"
         "CiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJ"
         "ZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBn"
         "iIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
    pub = rsa.RSAPublicNumbers(65537, _int(n)).public_key()
    assert jwk_thumbprint(pub) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_signing_key_algorithms() -> None:
    assert SigningKey.from_private_key(ec.generate_private_key(ec.SECP384R1())).algorithm == "ES384"
    assert SigningKey.generate("ES256").algorithm == "ES256"
    with pytest.raises(InvalidArgument):
        SigningKey.generate("HS256")
    with pytest.raises(InvalidArgument):
        SigningKey.from_private_key(ec.generate_private_key(ec.SECP256K1()))


def test_load_signing_key_creates_once(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "token.key"
    first = load_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.algorithm == "ES256" and len(first.kid.split(":")) == 12
    assert load_signing_key(path).kid == first.kid
    assert [p.name for p in path.parent.iterdir()] == ["token.key"]      # no temporary left


def test_load_signing_key_rsa_and_errors(tmp_path: Path) -> None:
    assert load_signing_key(tmp_path / "rsa.key", "RS256").algorithm == "RS256"
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_signing_key(tmp_path / "missing.key", create=False)
    (tmp_path / "junk.key").write_text("not a key")
    with pytest.raises(InvalidArgument, match="PEM"):
        load_signing_key(tmp_path / "junk.key")


# --- issuing and validating -----------------------------------------------------------------------

KEY = SigningKey.generate("ES256")
OTHER = SigningKey.generate("ES256")
NOW = 1_700_000_000.0


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def issuer(key: SigningKey = KEY, clock: Clock | None = None, service: str = "dockyard",
           iss: str = "dockyard-auth") -> TokenIssuer:
    return TokenIssuer(key, iss, service, expiry=300, clock=clock or Clock())


def validator(clock: Clock | None = None) -> TokenValidator:
    return TokenValidator([KEY], "dockyard-auth", "dockyard", clock=clock or Clock())


PULL_A = Access("repository", "team/a", "pull")
PUSH_A = Access("repository", "team/a", "push")


def test_issue_claims_and_header() -> None:
    issued = issuer().issue("alice", [PULL_A, PUSH_A, Access("registry", "catalog", "*")])
    assert issued.expires_in == 300 and issued.issued_at == "2023-11-14T22:13:20Z"
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "ES256", "kid": KEY.kid, "typ": "JWT"}
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["iss"] == "dockyard-auth" and claims["sub"] == "alice" and claims["aud"] == "dockyard"
    assert claims["iat"] == claims["nbf"] == int(NOW) and claims["exp"] == int(NOW) + 300
    assert len(claims["jti"]) >= 16
    assert claims["access"] == [{"type": "repository", "name": "team/a", "actions": ["pull", "push"]},
                                {"type": "registry", "name": "catalog", "actions": ["*"]}]


def test_expiry_is_at_least_a_minute() -> None:
    assert TokenIssuer(KEY, "i", "s", expiry=5).expiry == 60


def test_validate_round_trip() -> None:
    claims = validator().verify(issuer().issue("alice", [PULL_A]).token)
    assert claims.subject == "alice" and claims.covers(PULL_A) and not claims.covers(PUSH_A)
    assert not claims.covers(Access("repository", "team/b", "pull"))


def test_star_action_covers_everything_on_its_resource() -> None:
    claims = validator().verify(issuer().issue("a", [Access("repository", "x", "*")]).token)
    assert claims.covers(Access("repository", "x", "delete")) and not claims.covers(Access("repository", "y", "pull"))


def test_validator_trusts_plain_public_keys() -> None:
    rsa_key = SigningKey.generate("RS256")
    v = TokenValidator([rsa_key.public_key, KEY.public_key], "i", "s", clock=Clock())
    for key in (rsa_key, KEY):
        assert v.verify(TokenIssuer(key, "i", "s", clock=Clock()).issue("x", []).token).subject == "x"
    with pytest.raises(InvalidArgument):
        TokenValidator([ec.generate_private_key(ec.SECP256K1()).public_key()], "i", "s")


def test_thumbprint_kid_is_accepted_too() -> None:
    token = jwt.encode({"iss": "dockyard-auth", "aud": "dockyard", "exp": int(NOW) + 60, "nbf": int(NOW), "sub": "x"},
                       KEY.private_key, algorithm="ES256", headers={"kid": jwk_thumbprint(KEY.public_key)})
    assert validator().verify(token).subject == "x"


@pytest.mark.parametrize("offset,ok", [(0, True), (299, True), (300 + 59, True), (300 + 61, False),
                                       (-59, True), (-61, False)])
def test_expiry_and_not_before_with_leeway(offset: int, ok: bool) -> None:
    token = issuer().issue("alice", [PULL_A]).token
    v = validator(Clock(NOW + offset))
    if ok:
        v.verify(token)
    else:
        with pytest.raises(InvalidToken):
            v.verify(token)


def _forged(claims_patch: dict, header: dict | None = None, key: SigningKey = KEY, alg: str = "ES256") -> str:
    claims = {"iss": "dockyard-auth", "aud": "dockyard", "sub": "alice", "exp": int(NOW) + 300,
              "nbf": int(NOW), "iat": int(NOW), "access": [{"type": "repository", "name": "team/a",
                                                            "actions": ["pull"]}]}
    claims.update(claims_patch)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key.private_key, algorithm=alg, headers=header or {"kid": key.kid})


def _tamper(token: str) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["access"][0]["actions"] = ["pull", "push", "delete"]
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{sig}"


BAD_TOKENS = {
    "wrong signature (other key, our kid)": lambda: _forged({}, {"kid": KEY.kid}, key=OTHER),
    "unknown kid": lambda: _forged({}, key=OTHER),
    "no kid": lambda: jwt.encode({"iss": "dockyard-auth", "aud": "dockyard", "exp": int(NOW) + 60,
                                  "nbf": int(NOW)}, KEY.private_key, algorithm="ES256"),
    "tampered claims": lambda: _tamper(issuer().issue("alice", [PULL_A]).token),
    "wrong audience": lambda: issuer(service="other-registry").issue("alice", [PULL_A]).token,
    "wrong issuer": lambda: issuer(iss="evil").issue("alice", [PULL_A]).token,
    "missing exp": lambda: _forged({"exp": None}),
    "missing nbf": lambda: _forged({"nbf": None}),
    "missing aud": lambda: _forged({"aud": None}),
    "string exp": lambda: _forged({"exp": str(int(NOW) + 300)}),
    "bool nbf": lambda: _forged({"nbf": True}),
    "refresh token used as access": lambda: issuer().refresh_token("alice"),
    "alg none": lambda: jwt.encode({"iss": "dockyard-auth", "aud": "dockyard", "exp": int(NOW) + 60,
                                    "nbf": int(NOW)}, None, algorithm="none", headers={"kid": KEY.kid}),
    "malformed access": lambda: _forged({"access": ["repository:team/a:pull"]}),
    "malformed access entry": lambda: _forged({"access": [{"type": "repository", "name": 1, "actions": []}]}),
    "garbage": lambda: "not.a.token",
    "two parts": lambda: "abc.def",
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_bad_tokens_are_refused(make) -> None:
    with pytest.raises(InvalidToken):
        validator().verify(make())


def test_fractional_times_are_numeric_dates() -> None:
    assert validator().verify(_forged({"exp": NOW + 300.5, "nbf": NOW - 0.5})).expires == int(NOW) + 300


def test_refresh_tokens() -> None:
    token = issuer().refresh_token("alice")
    claims = validator().verify(token, use="refresh")
    assert claims.subject == "alice" and claims.access == ()
    with pytest.raises(InvalidToken):
        validator().verify(issuer().issue("alice", []).token, use="refresh")


def test_invalid_token_message_never_quotes_the_token() -> None:
    token = _forged({}, key=OTHER)
    with pytest.raises(InvalidToken) as info:
        validator().verify(token)
    assert token not in str(info.value) and token.split(".")[2] not in str(info.value)


# --- the authorizer -------------------------------------------------------------------------------

POLICY = Policy.from_yaml("""
rules:
  - users: [alice]
    repositories: ["team/**"]
    actions: [pull, push]
  - users: [admin]
    repositories: ["**"]
    actions: ["*"]
anonymous: ["public/**"]
""")


def request(authorization: str = "", host: str = "reg.local:5000", secure: bool = True,
            extra: dict[str, str] | None = None) -> RequestInfo:
    headers = {"Host": host, **(extra or {})}
    if authorization:
        headers["authorization"] = authorization          # lower-case on purpose: lookups ignore case
    return RequestInfo("GET", "/v2/", headers, "127.0.0.1", secure)


def authorize(authz: TokenAuthorizer, req: RequestInfo, accesses: Sequence[Access]):
    return asyncio.run(authz.authorize(req, accesses))


def authorizer(realm: str | None = None, policy: Policy | None = POLICY) -> TokenAuthorizer:
    return TokenAuthorizer(TokenValidator([KEY], "dockyard-auth", "dockyard"), realm, policy)


def fresh(subject: str, accesses: Sequence[Access]) -> str:
    return "Bearer " + TokenIssuer(KEY, "dockyard-auth", "dockyard").issue(subject, accesses).token


def test_no_token_gets_the_challenge_with_scope() -> None:
    with pytest.raises(Unauthenticated) as info:
        authorize(authorizer(), request(), [PULL_A, PUSH_A])
    assert info.value.challenge == ('Bearer realm="https://reg.local:5000/token",service="dockyard",'
                                    'scope="repository:team/a:pull,push"')


def test_configured_realm_and_base_endpoint() -> None:
    with pytest.raises(Unauthenticated) as info:
        authorize(authorizer("https://auth.example/token"), request(), [])
    assert info.value.challenge == 'Bearer realm="https://auth.example/token",service="dockyard"'


def test_default_realm_follows_the_request() -> None:
    assert default_realm(request(host="h:1", secure=False)) == "http://h:1/token"
    assert default_realm(request(host="h", secure=False, extra={"X-Forwarded-Proto": "https"})) == "https://h/token"
    assert default_realm(RequestInfo("GET", "/v2/", {}), "/auth") == "http://localhost/auth"


def test_valid_token_grants() -> None:
    grant = authorize(authorizer(), request(fresh("alice", [PULL_A, PUSH_A])), [PULL_A, PUSH_A])
    assert grant.subject == "alice" and grant.accesses == (PULL_A, PUSH_A)
    assert authorize(authorizer(), request(fresh("alice", [])), []).subject == "alice"     # /v2/


def test_invalid_token_gets_invalid_token_error() -> None:
    with pytest.raises(Unauthenticated) as info:
        authorize(authorizer(), request("Bearer " + _forged({}, key=OTHER)), [PULL_A])
    params = parse_challenges(info.value.challenge)[0].params
    assert params["error"] == "invalid_token" and params["scope"] == "repository:team/a:pull"


def test_basic_credentials_are_not_a_token() -> None:
    with pytest.raises(Unauthenticated) as info:
        authorize(authorizer(), request("Basic YWxpY2U6eA=="), [PULL_A])
    assert "error" not in parse_challenges(info.value.challenge)[0].params


def test_token_for_another_repository_is_insufficient_scope() -> None:
    # alice may push team/b, but this token was for team/a: ask again (401), not denied
    with pytest.raises(Unauthenticated) as info:
        authorize(authorizer(), request(fresh("alice", [PULL_A])), [Access("repository", "team/b", "push")])
    params = parse_challenges(info.value.challenge)[0].params
    assert params["error"] == "insufficient_scope" and params["scope"] == "repository:team/b:push"


def test_scope_the_policy_refuses_is_denied() -> None:
    with pytest.raises(PermissionDenied):
        authorize(authorizer(), request(fresh("alice", [PULL_A])), [Access("repository", "team/a", "delete")])
    with pytest.raises(PermissionDenied):
        authorize(authorizer(), request(fresh("alice", [])), [Access("registry", "catalog", "*")])


def test_without_policy_missing_scope_is_always_401() -> None:
    with pytest.raises(Unauthenticated):
        authorize(authorizer(policy=None), request(fresh("alice", [PULL_A])), [PUSH_A])


def test_anonymous_token_lacking_scope_is_401_not_403() -> None:
    with pytest.raises(Unauthenticated) as info:
        authorize(authorizer(), request(fresh("", [])), [PUSH_A])
    assert parse_challenges(info.value.challenge)[0].params["error"] == "insufficient_scope"


def test_anonymous_pull_without_token_when_the_policy_allows() -> None:
    pub = Access("repository", "public/web", "pull")
    assert authorize(authorizer(), request(), [pub]).subject == ""
    with pytest.raises(Unauthenticated):
        authorize(authorizer(), request(), [Access("repository", "public/web", "push")])
    with pytest.raises(Unauthenticated):
        authorize(authorizer(policy=None), request(), [pub])


# --- the client's challenge flow, driven by a fake registry + token server ------------------------

class FakeRegistry:
    """Answers the flow's requests the way a registry and its token endpoint would, using the real
    issuer and authorizer: the flow is tested end to end without a socket."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.issuer = TokenIssuer(KEY, "dockyard-auth", "dockyard")
        self.authz = authorizer("https://reg.local/token")
        self.seen: list[HttpRequest] = []

    def __call__(self, req: HttpRequest) -> HttpResponse:
        self.seen.append(req)
        url = urlsplit(req.url)
        if url.path == "/token":
            subject = ""
            if "Authorization" in req.headers:
                creds = parse_basic_authorization(req.headers["Authorization"])
                if creds is None or self.users.get(creds[0]) != creds[1]:
                    return HttpResponse(401, b'{"errors": []}', ('Basic realm="dockyard"',))
                subject = creds[0]
            from dockyard.registry.auth.challenge import parse_scopes

            requested = [a for s in parse_scopes([v for k, v in parse_qsl(url.query) if k == "scope"])
                         for a in s.accesses()]
            token = self.issuer.issue(subject, POLICY.narrow(subject, requested)).token
            return HttpResponse(200, json.dumps({"token": token}).encode())
        repo = url.path.split("/")[2] + "/" + url.path.split("/")[3]
        need = [Access("repository", repo, "pull" if req.method == "GET" else "push")]
        info = RequestInfo(req.method, url.path, {"Host": "reg.local", **req.headers}, secure=True)
        try:
            authorize(self.authz, info, need)
        except Unauthenticated as exc:
            return HttpResponse(401, b"{}", (exc.challenge,))
        except PermissionDenied:
            return HttpResponse(403, b"{}")
        return HttpResponse(200, b"manifest")


def drive(flow, server: FakeRegistry) -> tuple[HttpResponse, str | None]:
    req = next(flow)
    while True:
        resp = server(req)
        try:
            req = flow.send(resp)
        except StopIteration as stop:
            return resp, stop.value


def test_flow_gets_a_token_and_retries() -> None:
    server = FakeRegistry({"alice": "pw"})
    resp, token = drive(auth_flow(HttpRequest("GET", "https://reg.local/v2/team/a/manifests/1"),
                                  Credentials("alice", "pw")), server)
    assert resp.status == 200 and resp.body == b"manifest" and token
    assert [urlsplit(r.url).path for r in server.seen] == ["/v2/team/a/manifests/1", "/token",
                                                            "/v2/team/a/manifests/1"]
    token_query = dict(parse_qsl(urlsplit(server.seen[1].url).query))
    assert token_query == {"service": "dockyard", "scope": "repository:team/a:pull", "account": "alice"}
    assert server.seen[2].headers["Authorization"] == f"Bearer {token}"


def test_flow_anonymous_public_pull() -> None:
    server = FakeRegistry({})
    resp, _ = drive(auth_flow(HttpRequest("GET", "https://reg.local/v2/public/web/manifests/1")), server)
    assert resp.status == 200


def test_flow_wrong_password_ends_with_the_token_endpoints_401() -> None:
    server = FakeRegistry({"alice": "pw"})
    resp, token = drive(auth_flow(HttpRequest("GET", "https://reg.local/v2/team/a/manifests/1"),
                                  Credentials("alice", "wrong")), server)
    assert resp.status == 401 and token is None and len(server.seen) == 2


def test_flow_denied_push_is_403_after_one_round() -> None:
    server = FakeRegistry({"alice": "pw"})
    resp, _ = drive(auth_flow(HttpRequest("PUT", "https://reg.local/v2/other/x/manifests/1"),
                              Credentials("alice", "pw")), server)
    # the token endpoint narrowed the push away; asking again would not help alice: 403, not 401
    assert resp.status == 403 and len(server.seen) == 3


def test_flow_passes_through_non_401_and_basic() -> None:
    flow = auth_flow(HttpRequest("GET", "https://r/v2/"), Credentials("u", "p"))
    assert next(flow).url == "https://r/v2/"
    with pytest.raises(StopIteration):
        flow.send(HttpResponse(200))
    flow = auth_flow(HttpRequest("GET", "https://r/v2/"), Credentials("u", "p"))
    next(flow)
    retried = flow.send(HttpResponse(401, www_authenticate=('Basic realm="x"',)))
    assert parse_basic_authorization(retried.headers["Authorization"]) == ("u", "p")
    with pytest.raises(StopIteration):
        flow.send(HttpResponse(200))
    flow = auth_flow(HttpRequest("GET", "https://r/v2/"))         # Basic without credentials: give up
    next(flow)
    with pytest.raises(StopIteration):
        flow.send(HttpResponse(401, www_authenticate=('Basic realm="x"',)))


def test_flow_uses_the_identity_token() -> None:
    flow = auth_flow(HttpRequest("GET", "https://r/v2/x/y/tags/list"), Credentials("u", identity_token="rt"))
    next(flow)
    challenge = 'Bearer realm="https://r/token",service="s",scope="repository:x/y:pull"'
    token_req = flow.send(HttpResponse(401, www_authenticate=(challenge,)))
    assert token_req.method == "POST" and b"grant_type=refresh_token" in token_req.body


def test_module_stays_pure() -> None:
    import ast

    from dockyard.registry.auth import challenge

    tree = ast.parse(Path(challenge.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"os", "socket", "subprocess", "aiohttp", "asyncio", "pathlib", "shutil"}
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "open" not in calls
