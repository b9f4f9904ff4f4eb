"""Build the registry's authorizer (and token endpoint) from the ``auth`` section of its config.

The keys (YAML; every one optional, paths relative to nothing — give them absolute)::

    root: /var/lib/dockyard-registry   # the registry's root: default home of htpasswd and token.key
    auth:
      type: token                # none (default) | htpasswd | token;  "auth: token" is short for this
      realm: dockyard            # the Basic realm name
      htpasswd: /srv/registry/htpasswd        # default <root>/htpasswd
      policy: /srv/registry/policy.yaml       # a policy file (policy.py), or the policy inline
      anonymous: ["public/**"]   # repositories anonymous clients may pull (added to the policy)
      token:
        realm: https://registry.example:5000/token   # default: <scheme>://<request Host>/token
        path: /token             # where token_routes mounts the endpoint
        service: dockyard        # the token audience (aud) and the challenge's service
        issuer: dockyard         # iss
        key: /srv/registry/token.key          # default <root>/token.key; generated if missing
                                 # (no key and no root: a per-process key, with a warning)
        algorithm: ES256         # ES256 | RS256, for a generated key
        expiry: 300              # access token lifetime, seconds (at least 60)
        refresh_expiry: 2592000  # refresh (identity) token lifetime, seconds

Without a policy, any authenticated user may do everything and anonymous clients only what
``anonymous`` lists.  ``build_authorizer`` is also reachable as ``dockyard.registry.auth.build_authorizer``.

Files are re-read when they change: the htpasswd file by HtpasswdFile, the policy by PolicyFile (a
broken edit is logged and the previous policy kept, rather than failing open or closed).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.registry.auth import Access, Authorizer, Grant, RequestInfo
from dockyard.registry.auth.htpasswd import HtpasswdAuthorizer, HtpasswdFile
from dockyard.registry.auth.policy import Policy, PolicySource
from dockyard.registry.auth.token import (
    SigningKey,
    TokenAuthorizer,
    TokenIssuer,
    TokenService,
    TokenValidator,
    load_signing_key,
)

log = logging.getLogger(__name__)

AUTH_TYPES = ("none", "htpasswd", "token")


class AllowAllAuthorizer:
    """``auth: none``: every request is allowed, as anonymous.  Meant for loopback-only registries;
    ``dockyard registry serve`` should refuse it on other addresses."""

    async def authorize(self, request: RequestInfo, access: Sequence[Access]) -> Grant:
        return Grant("", tuple(access))


class PolicyFile:
    """The policy in a YAML file, re-read when the file changes; callable (a PolicySource)."""

    def __init__(self, path: str | os.PathLike[str], anonymous: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.anonymous = tuple(anonymous)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._policy = self._load()        # raises on a bad file at startup

    def _stat(self) -> tuple[int, int, int]:
        st = self.path.stat()
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> Policy:
        try:
            stamp = self._stat()
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise InvalidArgument(f"policy file {self.path} does not exist") from exc
        try:
            policy = Policy.from_yaml(text).with_anonymous(self.anonymous)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{self.path}: {exc}") from None
        self._stamp = stamp
        return policy

    def __call__(self) -> Policy:
        try:
            stamp: tuple[int, int, int] | None = self._stat()
        except OSError:
            stamp = None
        with self._lock:
            if stamp is not None and stamp != self._stamp:
                try:
                    self._policy = self._load()
                    log.info("registry: reloaded access policy %s", self.path)
                except (InvalidArgument, OSError) as exc:
                    self._stamp = stamp           # do not retry (and log) on every request
                    log.error("registry: keeping the previous access policy: %s", exc)
            return self._policy


@dataclass(frozen=True)
class TokenConfig:
    realm: str | None = None
    path: str = "/token"
    service: str = "dockyard"
    issuer: str = "dockyard"
    key: Path | None = None
    algorithm: str = "ES256"
    expiry: int = 300
    refresh_expiry: int = 30 * 86400


@dataclass(frozen=True)
class AuthConfig:
    type: str = "none"
    realm: str = "dockyard"
    htpasswd: Path | None = None
    policy: Path | Mapping[str, Any] | None = None
    anonymous: tuple[str, ...] = ()
    token: TokenConfig = field(default_factory=TokenConfig)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AuthConfig:
        """From the whole registry config (with an ``auth`` key) or from the auth section itself."""
        section: Any = config.get("auth", config) if isinstance(config, Mapping) else None
        if section is None:
            section = {}
        if isinstance(section, str):
            section = {"type": section}
        if not isinstance(section, Mapping):
            raise InvalidArgument("auth: want none, htpasswd, token or a mapping")
        kind = str(section.get("type") or "none")
        if kind not in AUTH_TYPES:
            raise InvalidArgument(f"auth.type {kind!r}: want one of {', '.join(AUTH_TYPES)}")
        root_value = section.get("root") or config.get("root")
        root = Path(root_value) if root_value else None
        token_doc = section.get("token") or {}
        if not isinstance(token_doc, Mapping):
            raise InvalidArgument("auth.token: want a mapping")
        policy = section.get("policy")
        if policy is not None and not isinstance(policy, Mapping):
            policy = Path(policy)
        anonymous = section.get("anonymous") or ()
        if isinstance(anonymous, str):
            anonymous = [anonymous]
        htpasswd = section.get("htpasswd")
        key = token_doc.get("key")
        try:
            token = TokenConfig(
                realm=token_doc.get("realm") or None,
                path=str(token_doc.get("path") or "/token"),
                service=str(token_doc.get("service") or "dockyard"),
                issuer=str(token_doc.get("issuer") or "dockyard"),
                key=Path(key) if key else (root / "token.key" if root else None),
                algorithm=str(token_doc.get("algorithm") or "ES256"),
                expiry=int(float(token_doc.get("expiry") or 300)),
                refresh_expiry=int(float(token_doc.get("refresh_expiry") or 30 * 86400)))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"auth.token: {exc}") from None
        return cls(kind, str(section.get("realm") or "dockyard"),
                   Path(htpasswd) if htpasswd else (root / "htpasswd" if root else None),
                   policy, tuple(str(a) for a in anonymous), token)

    def policy_source(self) -> Policy | PolicySource:
        if self.policy is None:
            return Policy.allow_authenticated(self.anonymous)
        if isinstance(self.policy, Mapping):
            return Policy.parse(self.policy).with_anonymous(self.anonymous)
        return PolicyFile(self.policy, self.anonymous)

    def users(self) -> HtpasswdFile:
        if self.htpasswd is None:
            raise InvalidArgument("auth.htpasswd: no htpasswd file given (and no registry root)")
        return HtpasswdFile(self.htpasswd)


_EPHEMERAL: dict[tuple[str, str, str], SigningKey] = {}
_EPHEMERAL_LOCK = threading.Lock()


def _signing_key(cfg: AuthConfig) -> SigningKey:
    """The configured key file (created if missing).  With neither ``token.key`` nor a root, a key
    that lives as long as this process — shared by ``build_authorizer`` and ``token_routes`` of
    the same service, so tokens validate — with a warning: restarts invalidate tokens, and other
    processes over the same store would not trust them."""
    if cfg.token.key is not None:
        return load_signing_key(cfg.token.key, cfg.token.algorithm)
    ident = (cfg.token.issuer, cfg.token.service, cfg.token.algorithm)
    with _EPHEMERAL_LOCK:
        if ident not in _EPHEMERAL:
            log.warning("registry: no auth.token.key configured: signing tokens with a key that lasts "
                        "only as long as this process (set auth.token.key to share it across processes)")
            _EPHEMERAL[ident] = SigningKey.generate(cfg.token.algorithm)
        return _EPHEMERAL[ident]


def _token_parts(cfg: AuthConfig) -> TokenIssuer:
    return TokenIssuer(_signing_key(cfg), cfg.token.issuer, cfg.token.service, cfg.token.expiry,
                       cfg.token.refresh_expiry)


def build_authorizer(config: Mapping[str, Any]) -> Authorizer:
    """The authorizer the registry app calls once per request (see the module docstring for keys).

    Raises InvalidArgument for a bad config, policy file or key, so ``serve`` fails at startup."""
    cfg = AuthConfig.from_config(config)
    if cfg.type == "none":
        return AllowAllAuthorizer()
    if cfg.type == "htpasswd":
        return HtpasswdAuthorizer(cfg.users(), cfg.policy_source(), realm=cfg.realm)
    issuer = _token_parts(cfg)
    validator = TokenValidator([issuer.key], issuer.issuer, issuer.service)
    return TokenAuthorizer(validator, cfg.token.realm, cfg.policy_source(), path=cfg.token.path)


def build_token_service(config: Mapping[str, Any]) -> TokenService | None:
    """The token endpoint for ``auth: token``; None for the other kinds."""
    cfg = AuthConfig.from_config(config)
    if cfg.type != "token":
        return None
    return TokenService(_token_parts(cfg), cfg.users(), cfg.policy_source(), path=cfg.token.path,
                        realm=cfg.realm)
