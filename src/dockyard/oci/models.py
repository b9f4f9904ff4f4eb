"""Typed OCI / Docker schema 2 documents: descriptors, manifests, indexes, image configs.

Wire JSON stops here (house rule 6): :meth:`from_dict` turns a decoded document into
dataclasses, checking the type of every field it knows, and :meth:`to_dict` turns it back.

Round-trips keep data.  Fields this module does not know (Docker's ``container_config``,
``docker_version``, ``Hostname``…) are kept in ``extra`` and written back after the known ones.
An explicit ``null`` for a known field is kept there too, so ``from_dict(d).to_dict() == d``
holds for any well-formed ``d``; setting the field later takes precedence over the kept null.

Key order is deterministic: known fields in the Go struct order of image-spec / moby, maps
(annotations, labels, ports, volumes) sorted as Go's encoder sorts them, then extras in input
order.  :func:`canonical_json` writes that compactly with Go's escaping of ``<``, ``>``, ``&``,
so JSON we generate hashes the same as the equivalent document written by Go tools.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Self

from dockyard.errors import InvalidArgument
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import sha256_digest, validate_digest

__all__ = [
    "ContainerConfig",
    "Descriptor",
    "HealthConfig",
    "History",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "RootFS",
    "canonical_json",
    "parse_manifest_or_index",
]


class _F(NamedTuple):
    """One wire field: JSON key, attribute name, value kind, and for nested kinds the model."""

    key: str
    attr: str
    kind: str  # str | int | bool | str_list | str_map | obj_map | model | model_list
    required: bool = False
    model: type[_Model] | None = None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _read(f: _F, value: Any, where: str) -> Any:
    """Check and convert one present, non-null JSON value; InvalidArgument names the path."""
    path = f"{where}.{f.key}"

    def fail(expected: str) -> InvalidArgument:
        return InvalidArgument(f"{path}: expected {expected}, got {_json_type(value)}")

    if f.kind == "str":
        if not isinstance(value, str):
            raise fail("string")
        return value
    if f.kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail("integer")
        return value
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise fail("boolean")
        return value
    if f.kind == "str_list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail("array of strings")
        return list(value)
    if f.kind == "str_map":
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise fail("object of strings")
        return dict(value)
    if f.kind == "obj_map":
        if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
            raise fail("object of objects")
        return {k: copy.deepcopy(dict(v)) for k, v in value.items()}
    assert f.model is not None
    if f.kind == "model":
        return f.model.from_dict(value, path)
    if not isinstance(value, list):
        raise fail("array")
    return [f.model.from_dict(v, f"{path}[{i}]") for i, v in enumerate(value)]


def _write(kind: str, value: Any) -> Any:
    """The JSON form of one attribute value (None means: leave the key out)."""
    if value is None:
        return None
    if kind == "model":
        return value.to_dict()
    if kind == "model_list":
        return [v.to_dict() for v in value]
    if kind in ("str_map", "obj_map"):
        return {k: copy.deepcopy(value[k]) for k in sorted(value)}  # Go sorts map keys
    if kind == "str_list":
        return list(value)
    return value


class _Model:
    """Generic from_dict/to_dict driven by the subclass's ``WIRE`` table.

    Absent and null fields are not passed to the constructor, so dataclass defaults apply.
    Subclasses add semantic checks in :meth:`_check`.
    """

    WIRE: ClassVar[tuple[_F, ...]] = ()
    WHERE: ClassVar[str] = "document"
    extra: dict[str, Any]

    @classmethod
    def from_dict(cls, data: object, where: str | None = None) -> Self:
        where = where or cls.WHERE
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{where}: expected a JSON object, got {_json_type(data)}")
        known = {f.key for f in cls.WIRE}
        # Unknown keys, and known keys given as null, survive in extra (see module docstring).
        extra = {k: copy.deepcopy(v) for k, v in data.items() if k not in known or v is None}
        kwargs: dict[str, Any] = {}
        for f in cls.WIRE:
            value = data.get(f.key)
            if value is None:
                if f.required:
                    raise InvalidArgument(f"{where}: missing required field {f.key!r}")
                continue
            kwargs[f.attr] = _read(f, value, where)
        cls._check(kwargs, where)
        kwargs["extra"] = extra
        return cls(**kwargs)

    @classmethod
    def _check(cls, kwargs: dict[str, Any], where: str) -> None:
        """Semantic checks beyond JSON types; raise InvalidArgument."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: known fields in wire order, then extras no known field overrides."""
        out: dict[str, Any] = {}
        for f in self.WIRE:
            value = _write(f.kind, getattr(self, f.attr))
            if value is not None:
                out[f.key] = value
        for key, value in self.extra.items():
            if key not in out:
                out[key] = copy.deepcopy(value)
        return out


def _check_digest(value: str, path: str) -> None:
    try:
        validate_digest(value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc}") from exc


def _check_schema_version(kwargs: dict[str, Any], where: str) -> None:
    version = kwargs["schema_version"]
    if version == 1:
        raise InvalidArgument(f"{where}: Docker schema 1 manifests are not supported")
    if version != 2:
        raise InvalidArgument(f"{where}: unsupported schemaVersion {version}")


@dataclass
class Platform(_Model):
    """The platform an image runs on (``linux``/``arm64``/``v8``), as found in an index."""

    architecture: str | None = None
    os: str | None = None
    os_version: str | None = None
    os_features: list[str] | None = None
    variant: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    WHERE = "platform"
    WIRE = (
        _F("architecture", "architecture", "str"),
        _F("os", "os", "str"),
        _F("os.version", "os_version", "str"),
        _F("os.features", "os_features", "str_list"),
        _F("variant", "variant", "str"),
    )

    def __str__(self) -> str:
        """``os/arch[/variant]``, the spelling of ``--platform``."""
        parts = [self.os or "", self.architecture or ""]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


@dataclass
class Descriptor(_Model):
    """A typed pointer to content: media type, digest and size (plus optional hints).

    ``digest`` is validated on the way in; ``size`` must be a non-negative integer because
    readers use it to bound how much they fetch.
    """

    media_type: str
    digest: str
    size: int
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    data: str | None = None
    platform: Platform | None = None
    artifact_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    WHERE = "descriptor"
    WIRE = (
        _F("mediaType", "media_type", "str", required=True),
        _F("digest", "digest", "str", required=True),
        _F("size", "size", "int", required=True),
        _F("urls", "urls", "str_list"),
        _F("annotations", "annotations", "str_map"),
        _F("data", "data", "str"),
        _F("platform", "platform", "model", model=Platform),
        _F("artifactType", "artifact_type", "str"),
    )

    @classmethod
    def _check(cls, kwargs: dict[str, Any], where: str) -> None:
        _check_digest(kwargs["digest"], f"{where}.digest")
        if kwargs["size"] < 0:
            raise InvalidArgument(f"{where}.size: must not be negative")

    @classmethod
    def for_content(cls, media_type: str, content: bytes, **kwargs: Any) -> Descriptor:
        """Describe ``content`` (sha256 digest and length) as ``media_type``."""
        return cls(media_type=media_type, digest=sha256_digest(content), size=len(content), **kwargs)


@dataclass
class Manifest(_Model):
    """A single-platform image manifest: one config and its layers (OCI or Docker schema 2)."""

    config: Descriptor
    layers: list[Descriptor] = field(default_factory=list)
    media_type: str | None = mt.OCI_MANIFEST
    schema_version: int = 2
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    WHERE = "manifest"
    WIRE = (
        _F("schemaVersion", "schema_version", "int", required=True),
        _F("mediaType", "media_type", "str"),
        _F("artifactType", "artifact_type", "str"),
        _F("config", "config", "model", required=True, model=Descriptor),
        _F("layers", "layers", "model_list", required=True, model=Descriptor),
        _F("subject", "subject", "model", model=Descriptor),
        _F("annotations", "annotations", "str_map"),
    )

    @classmethod
    def _check(cls, kwargs: dict[str, Any], where: str) -> None:
        _check_schema_version(kwargs, where)
        # An explicit null media type is kept in extra; do not invent one in its place.
        kwargs.setdefault("media_type", None)


@dataclass
class Index(_Model):
    """A multi-platform index (OCI image index or Docker manifest list)."""

    manifests: list[Descriptor] = field(default_factory=list)
    media_type: str | None = mt.OCI_INDEX
    schema_version: int = 2
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    WHERE = "index"
    WIRE = (
        _F("schemaVersion", "schema_version", "int", required=True),
        _F("mediaType", "media_type", "str"),
        _F("artifactType", "artifact_type", "str"),
        _F("manifests", "manifests", "model_list", required=True, model=Descriptor),
        _F("subject", "subject", "model", model=Descriptor),
        _F("annotations", "annotations", "str_map"),
    )

    @classmethod
    def _check(cls, kwargs: dict[str, Any], where: str) -> None:
        _check_schema_version(kwargs, where)
        kwargs.setdefault("media_type", None)


@dataclass
class HealthConfig(_Model):
    """Docker's ``Healthcheck`` (durations in nanoseconds, as Docker stores them)."""

    test: list[str] | None = None
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    start_interval: int | None = None
    retries: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    WHERE = "Healthcheck"
    WIRE = (
        _F("Test", "test", "str_list"),
        _F("Interval", "interval", "int"),
        _F("Timeout", "timeout", "int"),
        _F("StartPeriod", "start_period", "int"),
        _F("StartInterval", "start_interval", "int"),
        _F("Retries", "retries", "int"),
    )


@dataclass
class ContainerConfig(_Model):
    """The ``config`` of an image config: the defaults a container starts with.

    Keys are Docker's capitalised ones.  OCI defines User…ArgsEscaped; Healthcheck, OnBuild
    and Shell are Docker extensions that ``docker build`` writes and ``docker run`` honours.
    """

    user: str | None = None
    exposed_ports: dict[str, dict[str, Any]] | None = None
    env: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    volumes: dict[str, dict[str, Any]] | None = None
    working_dir: str | None = None
    labels: dict[str, str] | None = None
    stop_signal: str | None = None
    args_escaped: bool | None = None
    healthcheck: HealthConfig | None = None
    on_build: list[str] | None = None
    shell: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    WHERE = "config"
    WIRE = (
        _F("User", "user", "str"),
        _F("ExposedPorts", "exposed_ports", "obj_map"),
        _F("Env", "env", "str_list"),
        _F("Entrypoint", "entrypoint", "str_list"),
        _F("Cmd", "cmd", "str_list"),
        _F("Volumes", "volumes", "obj_map"),
        _F("WorkingDir", "working_dir", "str"),
        _F("Labels", "labels", "str_map"),
        _F("StopSignal", "stop_signal", "str"),
        _F("ArgsEscaped", "args_escaped", "bool"),
        _F("Healthcheck", "healthcheck", "model", model=HealthConfig),
        _F("OnBuild", "on_build", "str_list"),
        _F("Shell", "shell", "str_list"),
    )


@dataclass
class RootFS(_Model):
    """The layer chain of an image: uncompressed layer digests (diff IDs), base first."""

    type: str = "layers"
    diff_ids: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    WHERE = "rootfs"
    WIRE = (_F("type", "type", "str"), _F("diff_ids", "diff_ids", "str_list"))

    @classmethod
    def _check(cls, kwargs: dict[str, Any], where: str) -> None:
        for i, d in enumerate(kwargs.get("diff_ids", ())):
            _check_digest(d, f"{where}.diff_ids[{i}]")


@dataclass
class History(_Model):
    """One step of how an image was built; ``empty_layer`` steps added no layer."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    WHERE = "history"
    WIRE = (
        _F("created", "created", "str"),
        _F("created_by", "created_by", "str"),
        _F("author", "author", "str"),
        _F("comment", "comment", "str"),
        _F("empty_layer", "empty_layer", "bool"),
    )


@dataclass
class ImageConfig(_Model):
    """An image config blob (OCI ``config.v1`` or Docker ``container.image.v1``).

    ``created`` stays the RFC 3339 string it was (Go writes nanoseconds, which a datetime
    cannot hold, and rewriting it would change the image ID).  A config without ``rootfs``
    is refused, as moby refuses it.
    """

    architecture: str = ""
    os: str = ""
    rootfs: RootFS = field(default_factory=RootFS)
    config: ContainerConfig | None = None
    created: str | None = None
    author: str | None = None
    variant: str | None = None
    os_version: str | None = None
    os_features: list[str] | None = None
    history: list[History] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    WHERE = "image config"
    WIRE = (
        _F("created", "created", "str"),
        _F("author", "author", "str"),
        _F("architecture", "architecture", "str"),
        _F("os", "os", "str"),
        _F("os.version", "os_version", "str"),
        _F("os.features", "os_features", "str_list"),
        _F("variant", "variant", "str"),
        _F("config", "config", "model", model=ContainerConfig),
        _F("rootfs", "rootfs", "model", model=RootFS),
        _F("history", "history", "model_list", model=History),
    )

    @classmethod
    def _check(cls, kwargs: dict[str, Any], where: str) -> None:
        if "rootfs" not in kwargs:
            raise InvalidArgument("invalid image JSON, no RootFS key")


def canonical_json(obj: Any) -> bytes:
    """Serialise a model (anything with ``to_dict``) or plain JSON value deterministically.

    Compact separators, keys in the order given (see the module docstring), UTF-8, and Go's
    HTML-safe escapes so that the bytes match what Go's ``json.Marshal`` writes.
    """
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(ch, esc)
    return text.encode("utf-8")


def parse_manifest_or_index(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """Decode a manifest or index, deciding which from ``media_type`` and the body.

    ``media_type`` is the descriptor's media type or the HTTP ``Content-Type`` (parameters are
    ignored; generic types such as ``application/json`` defer to the body).  The body's own
    ``mediaType`` must agree with it when both are present.  Without either, the shape decides:
    ``manifests`` means an index, ``config``/``layers`` a manifest.  Raises InvalidArgument for
    bad JSON, wrong shapes, schema 1 and artifact manifests.
    """
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"invalid manifest JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument(f"invalid manifest: expected a JSON object, got {_json_type(doc)}")
    declared = mt.normalize(media_type)
    body = doc.get("mediaType")
    if body is not None and not isinstance(body, str):
        raise InvalidArgument(f"invalid manifest: mediaType: expected string, got {_json_type(body)}")
    if doc.get("schemaVersion") == 1 or declared in mt.SCHEMA1_TYPES or body in mt.SCHEMA1_TYPES:
        raise InvalidArgument("unsupported manifest format: Docker schema 1")
    if mt.OCI_ARTIFACT_MANIFEST in (declared, body):
        raise InvalidArgument(f"unsupported manifest media type {mt.OCI_ARTIFACT_MANIFEST}")
    known = mt.MANIFEST_TYPES | mt.INDEX_TYPES
    if declared in known and body and body != declared:
        noun = "image index" if declared in mt.INDEX_TYPES else "manifest"
        raise InvalidArgument(f"if present, mediaType in {noun} should be '{declared}' not '{body}'")
    kind = declared if declared in known else body if body in known else None
    if kind is None:
        if body:
            raise InvalidArgument(f"unsupported manifest media type {body}")
        if "manifests" in doc:
            kind = mt.OCI_INDEX
        elif "config" in doc or "layers" in doc:
            kind = mt.OCI_MANIFEST
        else:
            raise InvalidArgument("invalid manifest: neither a manifest nor an index")
    if kind in mt.INDEX_TYPES:
        return Index.from_dict(doc)
    return Manifest.from_dict(doc)
