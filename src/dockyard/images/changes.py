"""Dockerfile instructions applied to an image config: ``import --change`` and ``commit --change``.

Parsed with the BuildKit Dockerfile parser (the ``dockerfile`` package), so the quoting and JSON
rules are exactly Docker's.  Docker allows CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME and WORKDIR here.  Pure: works on the ``config`` object of an image config.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    import dockerfile

ALLOWED = {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
           "VOLUME", "WORKDIR"}


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def _pairs(values: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    if len(values) % 2:
        raise InvalidArgument(f"{what} requires key-value pairs")
    return [(_unquote(values[i]), _unquote(values[i + 1])) for i in range(0, len(values), 2)]


def _command(cmd: dockerfile.Command, shell: list[str]) -> list[str]:
    if cmd.json:
        return list(cmd.value)
    return [*shell, " ".join(cmd.value)]


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Return a copy of ``config`` (the image config's "config" object) with ``changes`` applied."""
    import dockerfile  # loads a Go runtime: only where changes are parsed, not for every importer

    cfg = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for change in changes:
        try:
            parsed = dockerfile.parse_string(change)
        except dockerfile.GoParseError as exc:
            raise InvalidArgument(f"dockerfile parse error: {exc}") from exc
        for cmd in parsed:
            name = cmd.cmd.upper()
            if name not in ALLOWED:
                raise InvalidArgument(f"{name} is not a valid change command")
            shell = cfg.get("Shell") or ["/bin/sh", "-c"]
            if name == "CMD":
                cfg["Cmd"] = _command(cmd, shell)
            elif name == "ENTRYPOINT":
                cfg["Entrypoint"] = _command(cmd, shell)
            elif name == "ENV":
                env = list(cfg.get("Env") or [])
                for k, v in _pairs(cmd.value, "ENV"):
                    env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
                cfg["Env"] = env
            elif name == "LABEL":
                labels = dict(cfg.get("Labels") or {})
                labels.update(dict(_pairs(cmd.value, "LABEL")))
                cfg["Labels"] = labels
            elif name == "EXPOSE":
                ports = dict(cfg.get("ExposedPorts") or {})
                for p in cmd.value:
                    ports[p if "/" in p else f"{p}/tcp"] = {}
                cfg["ExposedPorts"] = ports
            elif name == "VOLUME":
                vols = dict(cfg.get("Volumes") or {})
                for v in cmd.value:
                    vols[v] = {}
                cfg["Volumes"] = vols
            elif name == "WORKDIR":
                wd = cmd.value[0]
                cfg["WorkingDir"] = posixpath.normpath(posixpath.join(cfg.get("WorkingDir") or "/", wd))
            elif name == "USER":
                cfg["User"] = cmd.value[0]
            elif name == "STOPSIGNAL":
                cfg["StopSignal"] = cmd.value[0]
            elif name == "ONBUILD":
                cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), cmd.original.split(None, 1)[1]]
            elif name == "HEALTHCHECK":
                cfg["Healthcheck"] = _healthcheck(cmd)
    return cfg


def _duration_ns(text: str) -> int:
    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
    import re

    total = 0
    pos = 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * units[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidArgument(f"time: invalid duration \"{text}\"")
    return total


def _healthcheck(cmd: dockerfile.Command) -> dict[str, Any]:
    if cmd.value and cmd.value[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    hc: dict[str, Any] = {}
    for flag in cmd.flags:
        key, _, val = flag.lstrip("-").partition("=")
        field = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
                 "start-interval": "StartInterval", "retries": "Retries"}.get(key)
        if field is None:
            raise InvalidArgument(f"unknown flag: {key}")
        hc[field] = int(val) if field == "Retries" else _duration_ns(val)
    rest = list(cmd.value)
    if not rest or rest[0].upper() != "CMD":
        raise InvalidArgument("Unknown type in HEALTHCHECK (try CMD or NONE)")
    args = rest[1:]
    hc["Test"] = ["CMD", *args] if cmd.json else ["CMD-SHELL", " ".join(args)]
    return hc
