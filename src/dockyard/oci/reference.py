"""Image references, parsed and normalised exactly as Docker does.

This is a port of ``github.com/distribution/reference`` (the package the docker CLI, moby and
containerd use), so that every string a user types means to dockyard what it means to Docker:

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] remote-name
    domain     := host [":" port]          host = domain-name | IPv4 | "[" IPv6 "]"
    remote-name:= path-component ("/" path-component)*    lowercase, separators . _ __ -+
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex{32,}

Normalisation (``ParseNormalizedNamed``, here :func:`parse_normalized`): the first component
of a name is a *domain* only if it contains ``.`` or ``:``, is ``localhost``, or has uppercase
letters (uppercase is not allowed in paths, so it must be a host name).  Otherwise the name
lives on Docker Hub: ``docker.io`` is prepended, ``index.docker.io`` becomes ``docker.io``, and
single-component Hub names get the ``library/`` namespace (``busybox`` →
``docker.io/library/busybox``).  The *familiar* form undoes exactly that, for display.

Errors are raised as InvalidArgument carrying the library's own text, which the docker CLI
prints verbatim (``invalid reference format``, ``invalid reference format: repository name
(library/Busybox) must be lowercase``, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final

from dockyard.errors import InvalidArgument
from dockyard.oci.digest import validate_digest

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "DigestReference",
    "Reference",
    "looks_like_image_id",
    "parse",
    "parse_any_reference",
    "parse_docker_ref",
    "parse_normalized",
    "validate_repository_name",
]

DEFAULT_DOMAIN: Final = "docker.io"
LEGACY_DEFAULT_DOMAIN: Final = "index.docker.io"
OFFICIAL_REPO_PREFIX: Final = "library/"
DEFAULT_TAG: Final = "latest"
NAME_TOTAL_LENGTH_MAX: Final = 255

ERR_INVALID_FORMAT: Final = "invalid reference format"
ERR_TAG_FORMAT: Final = "invalid tag format"
ERR_DIGEST_FORMAT: Final = "invalid digest format"
ERR_NAME_UPPERCASE: Final = "repository name must be lowercase"
ERR_NAME_EMPTY: Final = "repository name must have at least one component"
ERR_NAME_TOO_LONG: Final = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"

# --- the grammar of regexp.go; Go's \w and [[:xdigit:]] are ASCII-only, so they are spelled out.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME
_TAG = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"

_REFERENCE_RE: Final = re.compile(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?")
_ANCHORED_NAME_RE: Final = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")")
_TAG_RE: Final = re.compile(_TAG)
_DIGEST_RE: Final = re.compile(_DIGEST)
_IDENTIFIER_RE: Final = re.compile(r"[a-f0-9]{64}")
_IMAGE_ID_RE: Final = re.compile(r"(?:sha256:)?[a-f0-9]{1,64}")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: ``domain/path[:tag][@digest]``.

    ``domain`` is empty only for references made by :func:`parse` (which does not normalise);
    everything from :func:`parse_normalized` carries a domain.  Instances are immutable; the
    ``with_*`` methods return new ones.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository name, ``domain/path`` (Docker's ``Name()``)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The name as Docker shows it: ``busybox``, ``user/x``, ``localhost:5000/a/b``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX):
            rest = path[len(OFFICIAL_REPO_PREFIX) :]
            # library/a/b stays as is: only single-component official names are shortened.
            if "/" not in rest:
                path = rest
        return path

    def __str__(self) -> str:
        return self._render(self.name)

    def familiar_string(self) -> str:
        """The reference as Docker shows it (``busybox:latest``, ``user/x@sha256:…``)."""
        return self._render(self.familiar_name)

    def _render(self, name: str) -> str:
        out = name
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    @property
    def is_name_only(self) -> bool:
        """True when the reference has neither tag nor digest."""
        return self.tag is None and self.digest is None

    def with_default_tag(self) -> Reference:
        """Add the tag ``latest`` when there is neither tag nor digest (``TagNameOnly``)."""
        return replace(self, tag=DEFAULT_TAG) if self.is_name_only else self

    def with_tag(self, tag: str) -> Reference:
        """Return a copy with ``tag`` (any digest is kept); InvalidArgument for a bad tag."""
        if not isinstance(tag, str) or _TAG_RE.fullmatch(tag) is None:
            raise InvalidArgument(ERR_TAG_FORMAT)
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """Return a copy with ``digest`` (any tag is kept); InvalidArgument for a bad digest."""
        if not isinstance(digest, str) or _DIGEST_RE.fullmatch(digest) is None:
            raise InvalidArgument(ERR_DIGEST_FORMAT)
        return replace(self, digest=digest)

    def trim(self) -> Reference:
        """The bare repository: no tag, no digest (``TrimNamed``)."""
        return replace(self, tag=None, digest=None)


@dataclass(frozen=True)
class DigestReference:
    """A reference that is only a digest: what ``ParseAnyReference`` makes of an image ID."""

    digest: str

    def __str__(self) -> str:
        return self.digest


def parse(s: str) -> Reference:
    """Parse ``s`` without normalising it (distribution's ``Parse``).

    The domain is split off by the grammar alone (``foo/bar`` has domain ``foo``) and may be
    empty.  Used where the input must already be canonical; user input goes through
    :func:`parse_normalized`.
    """
    if s == "":
        raise InvalidArgument(ERR_NAME_EMPTY)
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        lowered = s.lower()
        if lowered != s and _REFERENCE_RE.fullmatch(lowered) is not None:
            raise InvalidArgument(ERR_NAME_UPPERCASE)
        raise InvalidArgument(ERR_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    nm = _ANCHORED_NAME_RE.fullmatch(name)
    if nm is not None:
        domain, path = nm.group(1) or "", nm.group(2)
    else:  # pragma: no cover - the reference grammar embeds the name grammar
        domain, path = "", name
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(ERR_NAME_TOO_LONG)
    if digest is not None:
        validate_digest(digest)
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Split ``name`` into (domain, remainder), applying Docker Hub's defaults.

    A first component is a domain when it is ``localhost``, contains ``.`` or ``:``, or is not
    all lowercase.  The remainder may still carry ``:tag`` and ``@digest``.
    """
    maybe_domain, sep, maybe_remote = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif (
        maybe_domain == "localhost"
        or "." in maybe_domain
        or ":" in maybe_domain
        or maybe_domain.lower() != maybe_domain  # uppercase is never a path: must be a host
    ):
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse_normalized(s: str) -> Reference:
    """Parse a reference as the user typed it and return its fully qualified form.

    ``busybox`` → ``docker.io/library/busybox`` (no tag is added; see
    :meth:`Reference.with_default_tag`).  Raises InvalidArgument with Docker's messages,
    including the refusal of a bare 64-hex string, which could only be an image ID.
    """
    if not isinstance(s, str):
        raise InvalidArgument(ERR_INVALID_FORMAT)
    if _IDENTIFIER_RE.fullmatch(s) is not None:
        raise InvalidArgument(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidArgument(f"invalid reference format: repository name ({remote}) must be lowercase")
    return parse(domain + "/" + remainder)


def display_name(s: str, *, familiar: bool = True) -> str:
    """A name the user typed, as Docker prints it in messages: the familiar form with the default
    tag (``busybox:latest``), or with ``familiar=False`` the full one
    (``docker.io/library/busybox:latest``); a string that is no reference comes back unchanged."""
    try:
        ref = parse_normalized(s)
    except InvalidArgument:
        return s
    if ref.digest is None:
        ref = ref.with_default_tag()
    return ref.familiar_string() if familiar else str(ref)


def parse_docker_ref(s: str) -> Reference:
    """Normalise as Docker stores images: tagged *or* digested, never both, never bare.

    A reference with both tag and digest keeps only the digest (the digest is what is
    pulled); a bare name gets ``latest``.
    """
    ref = parse_normalized(s)
    if ref.tag is not None and ref.digest is not None:
        return replace(ref, tag=None)
    return ref.with_default_tag()


def parse_any_reference(s: str) -> Reference | DigestReference:
    """Parse an image ID, a full digest, or a name (``ParseAnyReference``).

    A 64-hex string is an ID (``sha256:`` is implied); a valid digest is itself; anything
    else is parsed with :func:`parse_normalized`.
    """
    if isinstance(s, str) and _IDENTIFIER_RE.fullmatch(s) is not None:
        return DigestReference("sha256:" + s)
    try:
        return DigestReference(validate_digest(s))
    except InvalidArgument:
        pass
    return parse_normalized(s)


def looks_like_image_id(s: str) -> bool:
    """True when ``s`` could name an image by ID: hex (1–64 chars), optionally ``sha256:``.

    Short prefixes such as ``abc`` are also valid repository names; like Docker, the image
    store should try a name match first and fall back to an ID-prefix search.
    """
    return isinstance(s, str) and _IMAGE_ID_RE.fullmatch(s) is not None


def validate_repository_name(name: str) -> str:
    """Check a bare repository name as a registry receives it (``WithName``); return it.

    No tag, no digest and no normalisation: ``team/app`` stays ``team/app``.  Raises
    InvalidArgument (``invalid reference format`` or the 255-character limit).
    """
    if not isinstance(name, str):
        raise InvalidArgument(ERR_INVALID_FORMAT)
    m = _ANCHORED_NAME_RE.fullmatch(name)
    if m is None:
        raise InvalidArgument(ERR_INVALID_FORMAT)
    if len(m.group(2)) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(ERR_NAME_TOO_LONG)
    return name
