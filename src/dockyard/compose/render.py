"""A loaded project back as YAML, the way ``docker compose config`` prints it: long syntax, absolute
paths, ``env_file`` folded into ``environment``, durations as Go durations (``1m30s``), resources by
their engine names, keys sorted, literal dollars written ``$$``.

The output loads back (with any environment) into an equal project, so it can be saved and used with
``-f``; only the enabled services are shown.

Pure: returns text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

from dockyard.compose.model import FileObject, Network, Project, Service, Volume, format_duration

_KEEP_VALUES = frozenset({"environment", "args", "labels", "annotations", "sysctls", "driver_opts", "options"})


def render_config(project: Project) -> str:
    doc: dict[str, Any] = {
        "name": project.name,
        "services": {name: _service(s) for name, s in sorted(project.services.items())},
    }
    resources: dict[str, Mapping[str, Network | Volume | FileObject]] = {
        "networks": project.networks, "volumes": project.volumes,
        "secrets": project.secrets, "configs": project.configs}
    for key, items in resources.items():
        if items:
            doc[key] = {name: _resource(r) for name, r in sorted(items.items())}
    for key, value in sorted(project.extensions.items()):
        doc[key] = value
    return yaml.dump(_escape(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1 << 16)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _service(s: Service) -> dict[str, Any]:
    d = dataclasses.asdict(s)
    for key in ("name", "env_file", "watch", "extensions", "extras"):
        d.pop(key)
    if s.stop_grace_period is not None:
        d["stop_grace_period"] = format_duration(s.stop_grace_period)
    if s.healthcheck is not None:
        hc = d["healthcheck"]
        for key in ("interval", "timeout", "start_period", "start_interval"):
            if hc[key] is not None:
                hc[key] = format_duration(hc[key])
        if s.healthcheck.disable:
            hc.pop("test")
    if s.deploy is not None:
        dep = d["deploy"]
        resources = {k: dep.pop(k) for k in ("limits", "reservations") if dep.get(k)}
        for spec in resources.values():
            if spec.get("memory") is not None:
                spec["memory"] = str(spec["memory"])  # the schema types it as a string
        if resources:
            dep["resources"] = resources
        rp = dep.get("restart_policy") or {}
        for key in ("delay", "window"):
            if rp.get(key) is not None:
                rp[key] = format_duration(rp[key])
    d["extra_hosts"] = ["=".join(h.split(":", 1)) for h in s.extra_hosts]
    if s.build is not None:
        d["build"]["extra_hosts"] = ["=".join(h.split(":", 1)) for h in s.build.extra_hosts]
    if s.watch:
        d["develop"] = {"watch": [dataclasses.asdict(w) for w in s.watch]}
    d["networks"] = {name: _prune(cfg) or None for name, cfg in d["networks"].items()}
    d.update(s.extras)
    d.update(s.extensions)
    out = {k: v for k, v in sorted(_prune(d).items())}
    for key in ("command", "entrypoint"):
        if getattr(s, key) is not None:
            out[key] = getattr(s, key)  # [] clears the image's value: keep it
    if d["networks"]:
        out["networks"] = d["networks"]  # `default: null` says "on the default network"
    return {k: out[k] for k in sorted(out)}


def _resource(r: Network | Volume | FileObject) -> dict[str, Any]:
    return _prune(dataclasses.asdict(r))  # type: ignore[no-any-return]


def _prune(value: Any, key: str = "") -> Any:
    """Drop what says nothing: None, False, "" and empty containers — but keep the values of
    key/value maps (an empty or null environment variable means something)."""
    if isinstance(value, dict):
        if key in _KEEP_VALUES:
            return dict(sorted(value.items()))
        out = {}
        for k, v in value.items():
            v = _prune(v, k)
            if v is None or v is False or v == "" or v == [] or v == {}:
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _escape(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value
