"""Content digests: the ``algorithm:hex`` strings that name every blob.

Docker and OCI write digests as ``<algorithm>:<encoded>`` (``sha256:9f86d0…``).  The rules
here follow ``github.com/opencontainers/go-digest`` so that a digest dockyard accepts is one
the docker CLI, containerd and the CNCF registry accept too, and the error texts are the ones
they print:

* ``invalid checksum digest format`` — no ``:``, empty part, malformed algorithm, or an
  encoded part of the wrong length or alphabet (go-digest folded "invalid length" into this);
* ``unsupported digest algorithm`` — well-formed, but not an algorithm we can compute.

Only ``sha256`` (64 lowercase hex) and ``sha512`` (128 lowercase hex) are supported: they are
the algorithms registered by the OCI image specification.  Uppercase hex is rejected, as
go-digest does, because two spellings of one digest would give one blob two names.
"""

from __future__ import annotations

import re
from typing import Final

from dockyard.errors import InvalidArgument

# hashlib is imported where a digest is computed (loading OpenSSL costs commands that hash nothing).

__all__ = [
    "SHA256",
    "SHA512",
    "Digester",
    "digest_algorithm",
    "digest_hex",
    "is_digest",
    "sha256_digest",
    "short_id",
    "validate_digest",
]

SHA256: Final = "sha256"
SHA512: Final = "sha512"

# Encoded-part rules per supported algorithm (go-digest's anchoredEncodedRegexps).
_ENCODED: Final[dict[str, re.Pattern[str]]] = {
    SHA256: re.compile(r"[a-f0-9]{64}"),
    SHA512: re.compile(r"[a-f0-9]{128}"),
}
# go-digest's DigestRegexp: decides "malformed" versus "well-formed but unsupported".
_WELL_FORMED: Final = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")

ERR_FORMAT: Final = "invalid checksum digest format"
ERR_UNSUPPORTED: Final = "unsupported digest algorithm"


def sha256_digest(data: bytes) -> str:
    """Return the canonical digest (``sha256:<hex>``) of ``data``."""
    import hashlib
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Digester:
    """Incremental digest of a byte stream, for content too big to hold in memory.

    Feed chunks with :meth:`update`; read :attr:`digest` and :attr:`size` at any point (they
    describe everything fed so far).  Used by ingest to check a blob while it is written.
    """

    def __init__(self, algorithm: str = SHA256) -> None:
        if algorithm not in _ENCODED:
            raise InvalidArgument(ERR_UNSUPPORTED)
        self.algorithm = algorithm
        import hashlib
        self._hash = hashlib.new(algorithm)
        self._size = 0

    def update(self, data: bytes) -> None:
        """Add ``data`` to the digest."""
        self._hash.update(data)
        self._size += len(data)

    @property
    def digest(self) -> str:
        """The ``algorithm:hex`` digest of the bytes fed so far."""
        return f"{self.algorithm}:{self._hash.hexdigest()}"

    @property
    def size(self) -> int:
        """How many bytes have been fed."""
        return self._size


def validate_digest(s: str) -> str:
    """Return ``s`` unchanged if it is a valid, supported digest; raise otherwise.

    Raises InvalidArgument with go-digest's wording (see the module docstring).
    """
    if not isinstance(s, str):
        raise InvalidArgument(ERR_FORMAT)
    i = s.find(":")
    if i <= 0 or i + 1 == len(s):
        raise InvalidArgument(ERR_FORMAT)
    algorithm, encoded = s[:i], s[i + 1 :]
    pattern = _ENCODED.get(algorithm)
    if pattern is None:
        if _WELL_FORMED.fullmatch(s) is None:
            raise InvalidArgument(ERR_FORMAT)
        raise InvalidArgument(ERR_UNSUPPORTED)
    if pattern.fullmatch(encoded) is None:
        raise InvalidArgument(ERR_FORMAT)
    return s


def is_digest(s: str) -> bool:
    """True when ``s`` passes :func:`validate_digest`."""
    try:
        validate_digest(s)
    except InvalidArgument:
        return False
    return True


def digest_algorithm(d: str) -> str:
    """The algorithm part of a valid digest (``sha256``)."""
    return validate_digest(d).split(":", 1)[0]


def digest_hex(d: str) -> str:
    """The encoded (hex) part of a valid digest, as used in on-disk blob paths."""
    return validate_digest(d).split(":", 1)[1]


def short_id(d: str) -> str:
    """The 12-hex-character form Docker shows for image and container IDs.

    Accepts a digest (``sha256:…``) or a bare hex ID; like Docker's ``stringid.TruncateID`` it
    drops the algorithm and keeps the first 12 characters.
    """
    _, _, hex_part = d.rpartition(":")
    return hex_part[:12]
