"""Docker's token authentication: the built-in token endpoint and the Bearer-token authorizer.

The flow (distribution's ``token.md``): a request without a good token gets
``401 WWW-Authenticate: Bearer realm="https://HOST/token",service="SVC",scope="repository:NAME:pull"``;
the client asks the realm for a token (GET with Basic credentials or none, or OAuth2's POST with a
password or refresh token), and retries with ``Authorization: Bearer <jwt>``.

Tokens are JWTs (``jwt.md``) signed with one key file (PEM, PKCS#8; ECDSA P-256/384/521 -> ES256/
384/512, RSA -> RS256), created on first use if missing.  Claims: ``iss``, ``sub`` ("" for anonymous),
``aud`` = the service, ``exp``/``nbf``/``iat``, ``jti``, and ``access`` = requested ∩ what the policy
allows — narrowing is never an error at the endpoint; the registry refuses later.  The header's
``kid`` is the libtrust key ID (base32 of the first 240 bits of SHA-256 of the DER public key, in
twelve ``:``-separated groups of four), what distribution 2.x (Debian's docker-registry) looks up;
our validator also accepts the RFC 7638 JWK thumbprint that distribution 3 computes for root
certificates.  All registry processes that share a store must share the key file.

Refresh tokens (``offline_token=true`` or ``access_type=offline``) are JWTs from the same key with
``token_use: refresh`` and no access; the validator refuses them as access tokens, and the endpoint
honours them only while their user is still in the htpasswd file.

Secrets never reach a log line or an error message: not passwords, not tokens, not the key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dockyard.errors import DockyardError, InvalidArgument, PermissionDenied
from dockyard.registry.auth import Access, Grant, RequestInfo, Unauthenticated
from dockyard.registry.auth.challenge import (
    ResourceScope,
    basic_challenge,
    bearer_challenge,
    format_scopes,
    header,
    parse_basic_authorization,
    parse_bearer,
    parse_scopes,
)
from dockyard.registry.auth.policy import Policy, PolicySource, policy_source

log = logging.getLogger(__name__)

MIN_EXPIRY = 60          # token.md: "a token should never be returned with less than 60 seconds"
LEEWAY = 60              # clock skew allowed on exp/nbf, as distribution allows
_CURVE_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_JWK_CURVE = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


# --- keys -----------------------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(public_key: Any) -> str:
    """distribution 2.x's key ID: ``ABCD:EFGH:...`` (12 groups of 4, base32 of SHA-256[:30] of DER)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def public_jwk(public_key: Any) -> dict[str, str]:
    """The RFC 7517 JWK members that RFC 7638 hashes (EC or RSA public key)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        point = public_key.public_numbers()
        size = (public_key.curve.key_size + 7) // 8
        return {"crv": _JWK_CURVE[public_key.curve.name], "kty": "EC",
                "x": _b64url(point.x.to_bytes(size, "big")), "y": _b64url(point.y.to_bytes(size, "big"))}
    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        return {"e": _b64url(nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")), "kty": "RSA",
                "n": _b64url(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big"))}
    raise InvalidArgument("token signing key must be ECDSA or RSA")


def jwk_thumbprint(public_key: Any) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace; base64url."""
    canonical = json.dumps(public_jwk(public_key), sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    private_key: Any = field(repr=False)
    algorithm: str
    kid: str

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    @classmethod
    def from_private_key(cls, key: Any) -> SigningKey:
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVE_ALG:
            alg = _CURVE_ALG[key.curve.name]
        elif isinstance(key, rsa.RSAPrivateKey):
            alg = "RS256"
        else:
            raise InvalidArgument("token signing key must be ECDSA (P-256/384/521) or RSA")
        return cls(key, alg, libtrust_key_id(key.public_key()))

    @classmethod
    def generate(cls, algorithm: str = "ES256") -> SigningKey:
        if algorithm == "ES256":
            return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))
        if algorithm == "RS256":
            return cls.from_private_key(rsa.generate_private_key(public_exponent=65537, key_size=3072))
        raise InvalidArgument(f"token key algorithm {algorithm!r}: want ES256 or RS256")

    def pem(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())


def load_signing_key(path: str | os.PathLike[str], algorithm: str = "ES256", create: bool = True) -> SigningKey:
    """The key in ``path``; if missing and ``create``, a new ``algorithm`` key written there (0600).

    Creation is race-free across processes starting together: the key is written to a temporary
    file and linked into place, and a loser of the race reads the winner's key."""
    p = Path(path)
    if not p.exists() and create:
        key = SigningKey.generate(algorithm)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key.pem())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, p)
                log.info("registry: generated token signing key %s (%s)", p, key.kid)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        loaded = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise InvalidArgument(f"token signing key {p} does not exist") from exc
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"token signing key {p} is not an unencrypted PEM private key") from exc
    return SigningKey.from_private_key(loaded)


# --- issuing and validating -----------------------------------------------------------------------

class InvalidToken(DockyardError):
    """A token that is malformed, forged, expired, or meant for someone else (never says which
    to the client, and never quotes the token)."""


@dataclass(frozen=True)
class IssuedToken:
    token: str = field(repr=False)
    expires_in: int
    issued_at: str               # RFC 3339, UTC


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    access: tuple[ResourceScope, ...]
    expires: int
    jwt_id: str = ""

    def covers(self, access: Access) -> bool:
        return any(r.type == access.type and r.name == access.name
                   and (access.action in r.actions or "*" in r.actions) for r in self.access)


def _claims_access(accesses: Iterable[Access]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for a in accesses:
        acts = grouped.setdefault((a.type, a.name), [])
        if a.action not in acts:
            acts.append(a.action)
    return [{"type": t, "name": n, "actions": acts} for (t, n), acts in grouped.items()]


class TokenIssuer:
    """Signs access and refresh tokens for one service.  ``clock`` is injectable for tests."""

    def __init__(self, key: SigningKey, issuer: str, service: str, expiry: int = 300,
                 refresh_expiry: int = 30 * 86400, clock: Callable[[], float] = time.time) -> None:
        self.key, self.issuer, self.service = key, issuer, service
        self.expiry = max(int(expiry), MIN_EXPIRY)
        self.refresh_expiry = int(refresh_expiry)
        self.clock = clock

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key.private_key, algorithm=self.key.algorithm,
                          headers={"kid": self.key.kid, "typ": "JWT"})

    def _base(self, subject: str, lifetime: int) -> dict[str, Any]:
        now = int(self.clock())
        return {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + lifetime,
                "nbf": now, "iat": now, "jti": secrets.token_urlsafe(16)}

    def issue(self, subject: str, accesses: Iterable[Access]) -> IssuedToken:
        claims = self._base(subject, self.expiry)
        claims["access"] = _claims_access(accesses)
        issued = dt.datetime.fromtimestamp(claims["iat"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return IssuedToken(self._sign(claims), self.expiry, issued)

    def refresh_token(self, subject: str) -> str:
        claims = self._base(subject, self.refresh_expiry)
        claims["token_use"] = "refresh"
        return self._sign(claims)


class TokenValidator:
    """Checks signature (by ``kid``, with that key's algorithm only), ``iss``, ``aud``, ``nbf``,
    ``exp`` (with LEEWAY) and the token's use.  Raises InvalidToken."""

    def __init__(self, keys: Iterable[SigningKey | Any], issuer: str, service: str,
                 clock: Callable[[], float] = time.time, leeway: int = LEEWAY) -> None:
        self.keys: dict[str, tuple[Any, str]] = {}
        for k in keys:
            if isinstance(k, SigningKey):
                pub, alg = k.public_key, k.algorithm
            elif isinstance(k, rsa.RSAPublicKey):
                pub, alg = k, "RS256"
            elif isinstance(k, ec.EllipticCurvePublicKey) and k.curve.name in _CURVE_ALG:
                pub, alg = k, _CURVE_ALG[k.curve.name]
            else:
                raise InvalidArgument("trusted token keys must be ECDSA or RSA public keys")
            self.keys[libtrust_key_id(pub)] = (pub, alg)
            self.keys[jwk_thumbprint(pub)] = (pub, alg)
        self.issuer, self.service, self.clock, self.leeway = issuer, service, clock, leeway

    def verify(self, token: str, use: str = "access") -> TokenClaims:
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
            if kid not in self.keys:
                raise InvalidToken("token signed by an unknown key")
            pub, alg = self.keys[kid]
            claims = jwt.decode(token, pub, algorithms=[alg], audience=self.service, issuer=self.issuer,
                                options={"require": ["exp", "nbf", "iss", "aud"], "verify_exp": False,
                                         "verify_nbf": False, "verify_iat": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {type(exc).__name__}") from None
        now = self.clock()
        exp, nbf = claims["exp"], claims["nbf"]
        if not _numeric_date(exp) or not _numeric_date(nbf):
            raise InvalidToken("token times are not numbers")
        if now > exp + self.leeway:
            raise InvalidToken("token expired")
        if now < nbf - self.leeway:
            raise InvalidToken("token not valid yet")
        if claims.get("token_use", "access") != use:
            raise InvalidToken(f"not an {use} token")
        access: list[ResourceScope] = []
        for entry in claims.get("access") or []:
            if not isinstance(entry, dict):
                raise InvalidToken("malformed access claim")
            rtype, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
            if not isinstance(rtype, str) or not isinstance(name, str) or not isinstance(actions, list):
                raise InvalidToken("malformed access claim")
            access.append(ResourceScope(rtype.split("(", 1)[0], name, tuple(str(a) for a in actions)))
        subject = claims.get("sub", "")
        return TokenClaims(subject if isinstance(subject, str) else "", tuple(access), int(exp),
                           str(claims.get("jti", "")))


def _numeric_date(value: Any) -> bool:
    """RFC 7519's NumericDate: a JSON number (fractions allowed), not a bool or a string."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def default_realm(request: RequestInfo, path: str = "/token") -> str:
    """The token endpoint on the host the client reached, with the scheme it used."""
    proto = header(request.headers, "X-Forwarded-Proto").split(",")[0].strip()
    scheme = proto if proto in ("http", "https") else ("https" if request.secure else "http")
    host = header(request.headers, "Host") or "localhost"
    return f"{scheme}://{host}{path}"


class TokenAuthorizer:
    """Validates Bearer tokens on registry requests (see the module docstring).

    - No token: anonymous access the policy allows passes (never for a request that needs no
      access, i.e. ``/v2/``, so that logins are checked); otherwise 401 with the Bearer challenge.
    - A bad token: 401, ``error="invalid_token"``.
    - A good token lacking an access: 403 DENIED if the policy refuses its (authenticated) subject
      that access — asking again would not help —, else 401 ``error="insufficient_scope"``.
    ``realm`` None: derived per request from its Host (``default_realm``)."""

    def __init__(self, validator: TokenValidator, realm: str | None = None,
                 policy: Policy | PolicySource | None = None, path: str = "/token") -> None:
        self.validator = validator
        self.service = validator.service
        self.realm = realm
        self.path = path
        self.policy = policy_source(policy) if policy is not None else None

    def _challenge(self, request: RequestInfo, needed: Sequence[Access], message: str,
                   error: str = "") -> Unauthenticated:
        realm = self.realm or default_realm(request, self.path)
        return Unauthenticated(message, challenge=bearer_challenge(realm, self.service, needed, error))

    async def authorize(self, request: RequestInfo, access: Sequence[Access]) -> Grant:
        needed = list(access)
        authorization = header(request.headers, "Authorization")
        policy = self.policy() if self.policy else None
        if not authorization:
            if needed and policy is not None and not policy.denied("", needed):
                return Grant("", tuple(needed))
            raise self._challenge(request, needed, "authentication required")
        token = parse_bearer(authorization)
        if token is None:
            raise self._challenge(request, needed, "bearer token required")
        try:
            claims = self.validator.verify(token)
        except InvalidToken as exc:
            log.info("registry: rejected token from %s: %s", request.remote or "?", exc)
            raise self._challenge(request, needed, "invalid token", "invalid_token") from None
        missing = [a for a in needed if not claims.covers(a)]
        if missing:
            if claims.subject and policy is not None and policy.denied(claims.subject, missing):
                raise PermissionDenied("requested access to the resource is denied "
                                       f"({format_scopes(missing)})")
            raise self._challenge(request, needed, "insufficient scope", "insufficient_scope")
        return Grant(claims.subject, tuple(needed))


# --- the token endpoint ---------------------------------------------------------------------------

class UserStore(Protocol):
    async def authenticate(self, user: str, password: str) -> bool: ...
    def exists(self, user: str) -> bool: ...


def _error(status: int, error: str, description: str, challenge: str = "") -> web.Response:
    """One body both kinds of client understand: OAuth2's error and the registry's errors list."""
    code = {401: "UNAUTHORIZED", 403: "DENIED"}.get(status, "UNSUPPORTED")
    body = {"error": error, "error_description": description,
            "errors": [{"code": code, "message": description, "detail": None}]}
    headers = {"Cache-Control": "no-store"}
    if challenge:
        headers["WWW-Authenticate"] = challenge
    return web.json_response(body, status=status, headers=headers)


class TokenService:
    """The token endpoint: authenticate (Basic, password or refresh grant, or anonymous), narrow the
    requested scopes through the policy, sign.  ``routes()`` gives GET and POST on ``path``."""

    def __init__(self, issuer: TokenIssuer, users: UserStore, policy: Policy | PolicySource,
                 path: str = "/token", realm: str = "dockyard") -> None:
        self.issuer, self.users, self.path, self.basic_realm = issuer, users, path, realm
        self.policy = policy_source(policy)
        self.validator = TokenValidator([issuer.key], issuer.issuer, issuer.service, clock=issuer.clock)

    def routes(self) -> list[web.RouteDef]:
        return [web.get(self.path, self.handle_get, allow_head=False), web.post(self.path, self.handle_post)]

    def _scopes(self, values: Iterable[str], service: str) -> list[Access] | web.Response:
        if service and service != self.issuer.service:
            return _error(400, "invalid_request", f"unknown service {service!r}")
        try:
            return [a for s in parse_scopes(list(values)) for a in s.accesses()]
        except InvalidArgument as exc:
            return _error(400, "invalid_scope", str(exc))

    def _grant(self, subject: str, requested: list[Access], refresh: str | None, oauth: bool) -> web.Response:
        granted = self.policy().narrow(subject, requested)
        issued = self.issuer.issue(subject, granted)
        log.info("registry: token for %r: %s", subject or "anonymous", format_scopes(granted) or "(no access)")
        body: dict[str, Any] = {"token": issued.token, "access_token": issued.token,
                                "expires_in": issued.expires_in, "issued_at": issued.issued_at}
        if oauth:
            body["scope"] = format_scopes(granted)
        if refresh:
            body["refresh_token"] = refresh
        return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _bad_credentials(self) -> web.Response:
        return _error(401, "invalid_grant", "incorrect username or password", basic_challenge(self.basic_realm))

    async def handle_get(self, request: web.Request) -> web.Response:
        """``token.md``: GET ?service=&scope=...&offline_token=true, Basic credentials or none."""
        requested = self._scopes(request.query.getall("scope", []), request.query.get("service", ""))
        if isinstance(requested, web.Response):
            return requested
        subject = ""
        authorization = request.headers.get("Authorization", "")
        if authorization:
            creds = parse_basic_authorization(authorization)
            if creds is None or not await self.users.authenticate(*creds):
                return self._bad_credentials()
            subject = creds[0]
        offline = request.query.get("offline_token", "").lower() == "true" and subject
        return self._grant(subject, requested, self.issuer.refresh_token(subject) if offline else None, False)

    async def handle_post(self, request: web.Request) -> web.Response:
        """``oauth.md``: form grant_type=password (username, password) or refresh_token."""
        form = await request.post()
        field_ = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        requested = self._scopes([field_.get("scope", "")], field_.get("service", ""))
        if isinstance(requested, web.Response):
            return requested
        grant_type = field_.get("grant_type", "")
        if grant_type == "password":
            user, password = field_.get("username", ""), field_.get("password", "")
            if not user or not await self.users.authenticate(user, password):
                return self._bad_credentials()
            offline = field_.get("access_type", "") == "offline"
            return self._grant(user, requested, self.issuer.refresh_token(user) if offline else None, True)
        if grant_type == "refresh_token":
            refresh = field_.get("refresh_token", "")
            try:
                subject = self.validator.verify(refresh, use="refresh").subject
            except InvalidToken:
                return _error(401, "invalid_grant", "invalid refresh token")
            if not subject or not self.users.exists(subject):
                return _error(401, "invalid_grant", "invalid refresh token")
            return self._grant(subject, requested, refresh, True)
        return _error(400, "unsupported_grant_type", "grant_type must be password or refresh_token")


def token_routes(config: Mapping[str, Any]) -> list[web.RouteDef]:
    """The token endpoint's routes for the registry app to mount, from the registry config (see
    ``factory.build_authorizer`` for the keys); empty unless ``auth`` is ``token``."""
    from dockyard.registry.auth.factory import build_token_service

    service = build_token_service(config)
    return service.routes() if service is not None else []
