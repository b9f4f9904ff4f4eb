"""Validate runtime bundle configs against the OCI runtime-spec JSON Schemas in the shared reference folder.

The schemas are draft-04 without ``id``s and point at each other with relative ``$ref``s
("defs.json#/definitions/Mount", "config-linux.json#/linux"), so every file of the folder is served by
its file name: a reference resolves against the name of the file it appears in, which is what the
runtime-spec's own validator does by loading the folder from disk.

The folder is ``$DOCKYARD_SHARED/reference/oci-runtime-spec-schema``; DOCKYARD_SHARED defaults to the
``shared`` directory beside the repository root.  A missing folder is an error, never a skip::

    from tests.helpers.runtimeschema import errors, validate
    validate(config)            # raises jsonschema.ValidationError
    assert errors(config) == []
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

from tests.helpers.ocischema import shared_dir

ROOT = "config-schema.json"


def schema_dir() -> Path:
    """The folder holding the OCI runtime-spec schemas."""
    return shared_dir() / "reference" / "oci-runtime-spec-schema"


@functools.lru_cache(maxsize=2)
def _load(folder: Path) -> tuple[dict[str, Any], referencing.Registry[Any]]:
    docs = {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    if ROOT not in docs:
        raise FileNotFoundError(f"no OCI runtime-spec schemas in {folder} (set DOCKYARD_SHARED)")
    resources = [
        (name, referencing.jsonschema.specification_with(
            contents.get("$schema", ""), default=referencing.jsonschema.DRAFT4).create_resource(contents))
        for name, contents in docs.items()
    ]
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(resources)
    return docs, registry


def validator(schema: str = ROOT) -> jsonschema.protocols.Validator:
    """A validator for one schema file of the folder (the bundle config by default)."""
    docs, registry = _load(schema_dir())
    # Give the root its file name as base URI so that its relative $refs find their files.
    contents = {**docs[schema], "id": schema}
    cls = jsonschema.validators.validator_for(contents, default=jsonschema.Draft4Validator)
    return cls(contents, registry=registry, format_checker=cls.FORMAT_CHECKER)


def errors(instance: Any, schema: str = ROOT) -> list[str]:
    """Every validation error as ``path: message`` (empty when valid)."""
    out = []
    for err in sorted(validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in err.absolute_path) or "<root>"
        out.append(f"{path}: {err.message}")
    return out


def validate(instance: Any, schema: str = ROOT) -> None:
    """Raise jsonschema.ValidationError when ``instance`` does not satisfy ``schema``."""
    validator(schema).validate(instance)
