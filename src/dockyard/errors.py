"""One error tree for all of dockyard (containerd's errdefs idea).

Every part raises one of these kinds; third-party exceptions are translated at the seam
(``raise NotFound(...) from exc``).  Each face maps a kind to its wire form in one place:
the CLI uses ``exit_code`` and ``str(err)`` (Docker's wording), the Engine API uses
``http_status`` and ``{"message": str(err)}``, the registry uses its own error table.
"""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error dockyard raises on purpose."""

    code = "unknown"
    http_status = 500
    exit_code = 125

    def __init__(self, message: str = "", *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class NotFound(DockyardError):
    code = "not_found"
    http_status = 404


class AlreadyExists(DockyardError):
    code = "already_exists"
    http_status = 409


class Conflict(DockyardError):
    code = "conflict"
    http_status = 409


class InvalidArgument(DockyardError):
    code = "invalid_argument"
    http_status = 400


class FailedPrecondition(DockyardError):
    code = "failed_precondition"
    http_status = 409


class Unauthenticated(DockyardError):
    code = "unauthenticated"
    http_status = 401


class PermissionDenied(DockyardError):
    code = "permission_denied"
    http_status = 403


class Unavailable(DockyardError):
    code = "unavailable"
    http_status = 503


class DataLoss(DockyardError):
    """Stored or received bytes do not match their digest, or an archive is truncated/corrupt."""

    code = "data_loss"
    http_status = 400
