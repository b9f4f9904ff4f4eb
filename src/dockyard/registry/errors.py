"""The registry's error codes and their wire form, in one table (distribution's errcode/register.go).

Every failure a registry client sees is one of the OCI distribution-spec codes below, sent as
``{"errors": [{"code": ..., "message": ..., "detail": ...}]}`` with the code's HTTP status.
Handlers raise :class:`RegistryError` with a code from this table (and an optional detail);
the dispatcher in ``app.py`` turns it into a response, so no handler builds an error body.

Kinds from ``dockyard.errors`` that cross into the registry (a storage driver's NotFound, an
authorizer's Unauthenticated) are translated by :func:`from_dockyard_error`.  Because the same
kind means different things on different routes (a missing file is BLOB_UNKNOWN on a blob
route and MANIFEST_UNKNOWN on a manifest route), the caller passes the code a NotFound or an
InvalidArgument becomes; the rest map the same everywhere.

Beyond the spec's table there are three codes distribution also sends: UNKNOWN (500, a bug —
never used for a client's mistake), UNAVAILABLE (503, the backend is unreachable) and
PAGINATION_NUMBER_INVALID (400, a bad ``n``).  Clients treat unknown codes as UNKNOWN.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from dockyard import errors as kinds

__all__ = [
    "CODES",
    "ErrorCode",
    "RegistryError",
    "error_body",
    "from_dockyard_error",
]


@dataclass(frozen=True)
class ErrorCode:
    """One row of the table: the wire code, the spec's message and the HTTP status."""

    code: str
    message: str
    status: int

    def __call__(self, detail: Any = None, *, message: str | None = None,
                 status: int | None = None, headers: Mapping[str, str] | None = None) -> RegistryError:
        """Shorthand: ``raise BLOB_UNKNOWN(detail={"digest": d})``."""
        return RegistryError(self, detail, message=message, status=status, headers=headers)


BLOB_UNKNOWN: Final = ErrorCode("BLOB_UNKNOWN", "blob unknown to registry", 404)
BLOB_UPLOAD_INVALID: Final = ErrorCode("BLOB_UPLOAD_INVALID", "blob upload invalid", 400)
BLOB_UPLOAD_UNKNOWN: Final = ErrorCode("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404)
DIGEST_INVALID: Final = ErrorCode("DIGEST_INVALID", "provided digest did not match uploaded content", 400)
MANIFEST_BLOB_UNKNOWN: Final = ErrorCode(
    "MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry", 400)
MANIFEST_INVALID: Final = ErrorCode("MANIFEST_INVALID", "manifest invalid", 400)
MANIFEST_UNKNOWN: Final = ErrorCode("MANIFEST_UNKNOWN", "manifest unknown to registry", 404)
NAME_INVALID: Final = ErrorCode("NAME_INVALID", "invalid repository name", 400)
NAME_UNKNOWN: Final = ErrorCode("NAME_UNKNOWN", "repository name not known to registry", 404)
SIZE_INVALID: Final = ErrorCode("SIZE_INVALID", "provided length did not match content length", 400)
UNAUTHORIZED: Final = ErrorCode("UNAUTHORIZED", "authentication required", 401)
DENIED: Final = ErrorCode("DENIED", "requested access to the resource is denied", 403)
UNSUPPORTED: Final = ErrorCode("UNSUPPORTED", "the operation is unsupported", 405)
TOOMANYREQUESTS: Final = ErrorCode("TOOMANYREQUESTS", "too many requests", 429)
RANGE_INVALID: Final = ErrorCode("RANGE_INVALID", "requested range not satisfiable", 416)
PAGINATION_NUMBER_INVALID: Final = ErrorCode(
    "PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400)
UNAVAILABLE: Final = ErrorCode("UNAVAILABLE", "service unavailable", 503)
UNKNOWN: Final = ErrorCode("UNKNOWN", "unknown error", 500)

CODES: Final[dict[str, ErrorCode]] = {
    c.code: c
    for c in (BLOB_UNKNOWN, BLOB_UPLOAD_INVALID, BLOB_UPLOAD_UNKNOWN, DIGEST_INVALID,
              MANIFEST_BLOB_UNKNOWN, MANIFEST_INVALID, MANIFEST_UNKNOWN, NAME_INVALID, NAME_UNKNOWN,
              SIZE_INVALID, UNAUTHORIZED, DENIED, UNSUPPORTED, TOOMANYREQUESTS, RANGE_INVALID,
              PAGINATION_NUMBER_INVALID, UNAVAILABLE, UNKNOWN)
}


class RegistryError(Exception):
    """A failure with its wire form: a code from the table, an optional detail, extra headers.

    ``status`` overrides the code's status where the spec asks for another one with the same
    code (an oversized manifest is MANIFEST_INVALID with 413).  ``headers`` are added to the
    response (``WWW-Authenticate`` on 401, ``Range`` on a 416 for an upload).
    """

    def __init__(self, code: ErrorCode, detail: Any = None, *, message: str | None = None,
                 status: int | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.detail = detail
        self.message = message or code.message
        self.status = status or code.status
        self.headers: dict[str, str] = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return entry


def error_body(*errors: RegistryError) -> bytes:
    """The spec's JSON body for one or more errors."""
    return json.dumps({"errors": [e.to_dict() for e in errors]}).encode()


def from_dockyard_error(err: kinds.DockyardError, *, not_found: ErrorCode = NAME_UNKNOWN,
                        invalid: ErrorCode = UNSUPPORTED, detail: Any = None) -> RegistryError:
    """Translate a dockyard error kind into a registry error.

    ``not_found`` and ``invalid`` say what NotFound and InvalidArgument mean on the route at
    hand; the message of the kind becomes the detail unless one is given, so the client learns
    *why* without the registry leaking paths (drivers' messages name store-relative paths only).
    """
    why = detail if detail is not None else (str(err) or None)
    if isinstance(err, kinds.Unauthenticated):
        challenge = getattr(err, "challenge", "")
        return RegistryError(UNAUTHORIZED, why, message=str(err) or None,
                             headers={"WWW-Authenticate": challenge} if challenge else None)
    if isinstance(err, kinds.PermissionDenied):
        return RegistryError(DENIED, why)
    if isinstance(err, kinds.NotFound):
        return RegistryError(not_found, why)
    if isinstance(err, kinds.DataLoss):
        return RegistryError(DIGEST_INVALID, why)
    if isinstance(err, kinds.InvalidArgument):
        return RegistryError(invalid, why, status=400 if invalid is UNSUPPORTED else None)
    if isinstance(err, kinds.Unavailable):
        return RegistryError(UNAVAILABLE, why)
    if isinstance(err, (kinds.Conflict, kinds.AlreadyExists, kinds.FailedPrecondition)):
        return RegistryError(DENIED, why, status=409)
    return RegistryError(UNKNOWN, why)
