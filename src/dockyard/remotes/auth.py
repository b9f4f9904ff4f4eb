"""Client-side registry authentication: answer a 401 challenge once, then reuse the answer.

The challenge flow itself is pure and lives in :mod:`dockyard.registry.auth.challenge`
(``auth_flow``, a generator in the style of httpx's ``_auth.py``).  This module keeps what a client
learns from it: an ``Authorization`` header per token scope (``repository:team/app:pull``), so that
every request after the first for a repository goes out authorised, and a Basic header reused for
every scope of a registry that asked for Basic.  A cached Bearer token that the registry rejects
(expired, or lacking an action) is dropped and the flow runs again: that is the refresh.

Nothing here does I/O: :meth:`AuthCache.answer` drives the generator with a ``send`` coroutine the
transport supplies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from dockyard.errors import Unauthenticated
from dockyard.registry.auth.challenge import (
    Credentials,
    HttpRequest,
    HttpResponse,
    auth_flow,
    parse_challenges,
)

Send = Callable[[HttpRequest], Awaitable[HttpResponse]]


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


@dataclass
class AuthCache:
    """Authorization headers learnt from challenges, per scope; one per registry host."""

    credentials: Credentials | None = None
    by_scope: dict[str, str] = field(default_factory=dict)
    basic: str | None = None

    def header(self, scope: str) -> str | None:
        """The header to send for a request needing ``scope``, if one is known."""
        return self.by_scope.get(scope) or self.basic

    def forget(self, scope: str) -> None:
        self.by_scope.pop(scope, None)

    async def answer(self, request: HttpRequest, challenge_response: HttpResponse, scope: str,
                     send: Send) -> str:
        """Turn a 401 into an Authorization header for ``scope`` (cached) or raise Unauthenticated.

        Only the token request is sent through ``send``; the retried request itself is the
        caller's, because it may stream a body the flow must not buffer."""
        self.forget(scope)
        flow = auth_flow(request, self.credentials)
        next(flow)
        try:
            follow = flow.send(challenge_response)
        except StopIteration:
            raise Unauthenticated(_unauthorized_message(challenge_response)) from None
        if "Authorization" in follow.headers and follow.url == request.url:
            value = follow.headers["Authorization"]       # Basic: no token round trip
            self.basic = value
            return value
        token_response = await send(follow)
        try:
            retry = flow.send(token_response)
        except StopIteration:
            raise Unauthenticated(_unauthorized_message(token_response)) from None
        flow.close()
        value = retry.headers["Authorization"]
        self.by_scope[scope] = value
        return value


def _unauthorized_message(response: HttpResponse) -> str:
    """Docker's wording: ``unauthorized: <the registry's message>``."""
    import json

    detail = "authentication required"
    try:
        doc = json.loads(response.body or b"{}")
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if errors and isinstance(errors, list) and errors[0].get("message"):
            detail = str(errors[0]["message"])
        elif isinstance(doc, dict) and doc.get("details"):
            detail = str(doc["details"])
    except (ValueError, AttributeError):
        pass
    if not parse_challenges(response.www_authenticate) and response.status not in (401, 403):
        return f"unexpected status {response.status}: {detail}"
    return f"unauthorized: {detail}"
