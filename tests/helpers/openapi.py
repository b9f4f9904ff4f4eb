"""Validate Engine API responses against the Docker Engine API reference (Swagger 2.0, v1.43).

The reference is ``$DOCKYARD_SHARED/reference/docker-engine-api-v1.43.yaml`` (DOCKYARD_SHARED
defaults to the ``shared`` directory beside the repository root).  Usage, for any endpoint::

    from helpers.openapi import validate
    validate("/containers/{id}/json", "get", 200, body)      # raises jsonschema.ValidationError

``path_template`` is the reference's path key (without the ``/v1.43`` base path); ``body`` is the
decoded JSON or the raw response body (bytes or str, decoded here).  A status the reference does not list for the operation is an error; a response
without a schema (204, text) only checks that the status is listed.

Null: Go marshals nil slices and maps as ``null`` and dockerd sends them so (``"Labels": null``,
``"Ports": null``), while the reference marks only some fields ``x-nullable``.  So every
property that its object does not list as ``required`` may be null; required ones, array items and
top-level bodies may not (unless marked ``x-nullable``).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def reference_path() -> Path:
    shared = Path(os.environ.get("DOCKYARD_SHARED") or REPO_ROOT.parent / "shared")
    return shared / "reference" / "docker-engine-api-v1.43.yaml"


@functools.lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    with open(reference_path()) as f:
        return yaml.safe_load(f)


def _nullable(schema: Any, allow_null: bool) -> Any:
    """A copy of ``schema`` where optional properties (and x-nullable ones) also accept null."""
    if isinstance(schema, list):
        return [_nullable(s, False) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    required = set(schema.get("required") or []) if isinstance(schema.get("required"), list) else set()
    for k, v in schema.items():
        if k == "properties" and isinstance(v, dict):
            out[k] = {name: _nullable(sub, name not in required) for name, sub in v.items()}
        elif k in ("items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"):
            out[k] = _nullable(v, False)
        elif k == "definitions" and isinstance(v, dict):
            out[k] = {name: _nullable(sub, False) for name, sub in v.items()}
        elif k == "required" and not isinstance(v, list):
            continue  # swagger's "required: true" on parameters; not JSON Schema
        else:
            out[k] = v
    if allow_null or schema.get("x-nullable"):
        if "$ref" in out:
            return {"anyOf": [{"type": "null"}, {"$ref": out["$ref"]}]}
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        elif isinstance(t, list) and "null" not in t:
            out["type"] = [*t, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


@functools.lru_cache(maxsize=1)
def _definitions() -> dict[str, Any]:
    return _nullable({"definitions": copy.deepcopy(spec()["definitions"])}, False)["definitions"]


def response_schema(path_template: str, method: str, status: int) -> dict[str, Any] | None:
    """The JSON schema of a response, with ``#/definitions/...`` resolvable; None if it has none."""
    paths = spec()["paths"]
    if path_template not in paths:
        raise KeyError(f"{path_template} is not in the Engine API reference")
    op = paths[path_template].get(method.lower())
    if op is None:
        raise KeyError(f"{method.upper()} {path_template} is not in the Engine API reference")
    responses = op.get("responses", {})
    resp = responses.get(str(status), responses.get(status))
    if resp is None:
        raise AssertionError(f"{method.upper()} {path_template}: status {status} is not a documented response "
                             f"({', '.join(map(str, responses))})")
    schema = resp.get("schema")
    if schema is None:
        return None
    return {**_nullable(copy.deepcopy(schema), False), "definitions": _definitions()}


def validate(path_template: str, method: str, status: int, body: Any) -> None:
    """Raise jsonschema.ValidationError unless ``body`` fits the documented response."""
    schema = response_schema(path_template, method, status)
    if schema is None:
        return
    if isinstance(body, (bytes, bytearray, str)):
        if schema.get("type") in ("string", ["string", "null"]):
            return
        body = json.loads(body)
    jsonschema.Draft4Validator(schema).validate(body)


def validate_definition(name: str, value: Any) -> None:
    """Validate ``value`` against ``#/definitions/<name>`` (e.g. one EventMessage of a stream)."""
    schema = {"$ref": f"#/definitions/{name}", "definitions": _definitions()}
    jsonschema.Draft4Validator(schema).validate(value)
