"""Validate documents against the OCI image-spec JSON Schemas kept in the shared reference folder.

The schemas are draft-04 and point at each other with relative ``$ref``s ("defs-descriptor.json",
"content-descriptor.json") resolved against ``id`` URLs such as
``https://opencontainers.org/schema/image/manifest`` — and, inside content-descriptor.json, against
``https://opencontainers.org/schema/descriptor``.  So the same file is reached under several URLs;
like image-spec's own Go validator, we serve every file of the folder by its basename whatever
the URL's directory.

The folder is ``$DOCKYARD_SHARED/reference/oci-image-spec-schema``; DOCKYARD_SHARED defaults to
the ``shared`` directory beside the repository root.  Usage::

    from tests.helpers.ocischema import validate
    validate(manifest.to_dict(), "image-manifest-schema.json")   # raises ValidationError
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema

REPO_ROOT = Path(__file__).resolve().parents[2]

MANIFEST = "image-manifest-schema.json"
INDEX = "image-index-schema.json"
CONFIG = "config-schema.json"
DESCRIPTOR = "content-descriptor.json"
LAYOUT = "image-layout-schema.json"

_BASES = ("https://opencontainers.org/schema/", "https://opencontainers.org/schema/image/")


def shared_dir() -> Path:
    """The shared directory: ``$DOCKYARD_SHARED`` or ``<repo>/../shared``."""
    return Path(os.environ.get("DOCKYARD_SHARED") or REPO_ROOT.parent / "shared")


def schema_dir() -> Path:
    """The folder holding the OCI image-spec schemas."""
    return shared_dir() / "reference" / "oci-image-spec-schema"


def schemas_available() -> bool:
    """True when the schema folder exists."""
    return (schema_dir() / MANIFEST).is_file()


def _resource(contents: Any) -> referencing.Resource[Any]:
    # The files declare draft-04; honour "$schema" when present, draft-04 otherwise.
    return referencing.jsonschema.specification_with(
        contents.get("$schema", ""), default=referencing.jsonschema.DRAFT4
    ).create_resource(contents)


@functools.lru_cache(maxsize=4)
def _load(folder: Path) -> tuple[dict[str, Any], referencing.Registry[Any]]:
    docs = {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    if not docs:
        raise FileNotFoundError(f"no OCI schemas in {folder} (set DOCKYARD_SHARED)")

    def retrieve(uri: str) -> referencing.Resource[Any]:
        name = Path(urlsplit(uri).path).name
        for candidate in (name, name + ".json"):
            if candidate in docs:
                return _resource(docs[candidate])
        raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs class

    pairs: list[tuple[str, referencing.Resource[Any]]] = []
    for name, contents in docs.items():
        resource = _resource(contents)
        own_id = contents.get("id") or contents.get("$id")
        if own_id:
            pairs.append((own_id, resource))
        pairs.extend((base + name, resource) for base in _BASES)
    registry: referencing.Registry[Any] = referencing.Registry(retrieve=retrieve).with_resources(pairs)  # type: ignore[call-arg]
    return docs, registry


def registry() -> referencing.Registry[Any]:
    """A registry holding every schema file of :func:`schema_dir` (plus basename fallback)."""
    return _load(schema_dir())[1]


def validator(schema: str) -> jsonschema.protocols.Validator:
    """A draft-04 validator for one schema file (by file name, e.g. ``"config-schema.json"``)."""
    docs, reg = _load(schema_dir())
    contents = docs[schema]
    cls = jsonschema.validators.validator_for(contents, default=jsonschema.Draft4Validator)
    return cls(contents, registry=reg, format_checker=cls.FORMAT_CHECKER)


def errors(instance: Any, schema: str) -> list[str]:
    """All validation errors as ``path: message`` strings (empty when valid)."""
    out = []
    for err in sorted(validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in err.absolute_path) or "<root>"
        out.append(f"{path}: {err.message}")
    return out


def validate(instance: Any, schema: str) -> None:
    """Raise jsonschema.ValidationError when ``instance`` does not satisfy ``schema``."""
    validator(schema).validate(instance)
