"""What a handler receives: the per-process registry state and the one request being served.

The dispatcher in ``app.py`` matches the route, validates the repository name, authorises the
request and only then builds a :class:`Call`; so a handler can trust ``call.name`` (a valid
repository name), ``call.params`` (the route's captures, not yet validated) and ``call.grant``.
Handlers never check authorisation themselves.  The one exception the spec forces — a blob
mount from another repository, where pull access on the *source* is optional (without it the
mount silently becomes an ordinary upload) — is asked of the same authorizer through
:meth:`Call.may`, which the dispatcher provides.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dockyard.registry.auth import Access, Grant
from dockyard.registry.config import RegistryConfig
from dockyard.registry.storage.layout import Layout

if TYPE_CHECKING:
    from dockyard.registry.metrics import Metrics
    from dockyard.registry.notifications import Notifier

__all__ = ["REPOSITORY", "ROUTE", "SENT", "STREAMING", "SUBJECT", "Call", "Registry", "UploadHashes",
           "api_headers"]

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}

# What the dispatcher and handlers note on a request for the access log and metrics.
ROUTE = web.RequestKey("route", str)              # route kind
REPOSITORY = web.RequestKey("repository", str)
SUBJECT = web.RequestKey("subject", str)          # the authenticated user ("" anonymous)
SENT = web.RequestKey("sent", int)                # body bytes, when the response cannot tell early
STREAMING = web.RequestKey("streaming", bool)     # headers sent: errors can only drop the connection


def api_headers(**extra: str) -> dict[str, str]:
    """Headers every /v2 response carries, plus ``extra`` (``Docker_Content_Digest=`` style
    keyword names are turned into header names)."""
    out = dict(API_VERSION_HEADER)
    for k, v in extra.items():
        out[k.replace("_", "-")] = v
    return out


class UploadHashes:
    """Running sha256 states of uploads this process received, keyed by upload id.

    Python cannot serialise a hash state, so a state is only good in the process that fed it;
    it is stored with the upload size it describes and used only if the upload still has that
    size.  When a PATCH or the closing PUT reaches another process (or after a restart) the
    state is missing and the upload is re-read from storage to hash it: correct, just slower.
    """

    def __init__(self, limit: int = 512) -> None:
        self._states: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._limit = limit

    def take(self, upload_id: str, size: int) -> Any | None:
        """The state for ``upload_id`` at ``size`` (a fresh one at size 0), removed from the cache."""
        entry = self._states.pop(upload_id, None)
        if entry is not None and entry[0] == size:
            return entry[1]
        return hashlib.sha256() if size == 0 else None

    def put(self, upload_id: str, size: int, state: Any) -> None:
        self._states[upload_id] = (size, state)
        self._states.move_to_end(upload_id)
        while len(self._states) > self._limit:
            self._states.popitem(last=False)

    def drop(self, upload_id: str) -> None:
        self._states.pop(upload_id, None)


@dataclass
class Registry:
    """Per-process state shared by all handlers (immutable config, the layout, helpers)."""

    config: RegistryConfig
    layout: Layout
    metrics: Metrics
    notifier: Notifier | None = None
    hashes: UploadHashes = field(default_factory=UploadHashes)
    media_types: dict[str, str] = field(default_factory=dict)   # manifest digest -> media type
    open_access: bool = False         # auth "none": every caller may pull every repository


@dataclass
class Call:
    """One authorised request on a route."""

    request: web.Request
    registry: Registry
    route: str                        # route kind: "blob", "manifest", "upload", ...
    name: str                         # validated repository name ("" for base and catalog)
    params: dict[str, str]
    grant: Grant
    may: Callable[[Access], Awaitable[bool]]

    @property
    def layout(self) -> Layout:
        return self.registry.layout

    @property
    def config(self) -> RegistryConfig:
        return self.registry.config

    def notify(self, action: str, target: dict[str, Any]) -> None:
        """Queue a webhook event (no-op without configured endpoints)."""
        if self.registry.notifier is not None:
            self.registry.notifier.emit(action, target, self)
