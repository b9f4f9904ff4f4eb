"""Registry authorisation seam.

The app computes, once per request and from the route and method alone, the accesses the request
needs (GET/HEAD -> pull, POST/PUT/PATCH -> push, DELETE -> delete, /v2/_catalog -> registry:catalog:*)
and calls ``await authorizer.authorize(request_info, accesses)``.  Handlers never check auth.

An authorizer returns a Grant (who, and what was granted) or raises:
- Unauthenticated(challenge=...)  -> 401 with the WWW-Authenticate challenge and the spec's
  UNAUTHORIZED error body;
- PermissionDenied                -> 403 DENIED.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dockyard.errors import Unauthenticated as _Unauthenticated


@dataclass(frozen=True)
class Access:
    type: str                 # "repository" | "registry"
    name: str                 # "team/app" | "catalog"
    action: str               # "pull" | "push" | "delete" | "*"

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{self.action}"


@dataclass(frozen=True)
class RequestInfo:
    method: str
    path: str
    headers: Mapping[str, str]
    remote: str = ""
    secure: bool = False      # TLS


@dataclass(frozen=True)
class Grant:
    subject: str = ""         # user name, "" for anonymous
    accesses: tuple[Access, ...] = field(default_factory=tuple)


class Unauthenticated(_Unauthenticated):
    """401: carries the WWW-Authenticate challenge to send."""

    def __init__(self, message: str = "authentication required", *, challenge: str = "") -> None:
        super().__init__(message)
        self.challenge = challenge


class Authorizer(Protocol):
    async def authorize(self, request: RequestInfo, access: Sequence[Access]) -> Grant: ...


def build_authorizer(config: Mapping[str, object]) -> Authorizer:
    """The authorizer for a registry config (its ``auth`` section: none | htpasswd | token).

    Imported lazily so that this seam module stays light; the keys are documented in
    ``dockyard.registry.auth.factory``.  Mount ``dockyard.registry.auth.token.token_routes(config)``
    beside it for the token endpoint (an empty list unless ``auth`` is ``token``)."""
    from dockyard.registry.auth.factory import build_authorizer as _build

    return _build(config)
