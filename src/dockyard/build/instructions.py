"""What the metadata instructions do to an image config, and how each step reads in the history.

Metadata instructions (ENV, LABEL, MAINTAINER, EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL,
HEALTHCHECK, SHELL, ONBUILD, CMD, ENTRYPOINT, ARG) change ``config`` only; :func:`apply_metadata`
does that on a copy of the container config (the ``config`` object of the OCI image config) and
returns the history ``created_by`` text in BuildKit's form, which prints Go values with ``%v`` and
``%q``::

    ENV NAME=World                      EXPOSE map[5000/tcp:{}]
    CMD ["python" "app.py"]             VOLUME [/data /logs]
    SHELL [/bin/bash -c]                HEALTHCHECK &{["CMD-SHELL" "curl -f x"] "30s" "3s" "0s" "0s" '\\x03'}
    RUN |1 V=1 /bin/sh -c make # buildkit   COPY . /app # buildkit   WORKDIR /app

Pure (no I/O): the executor feeds it the instruction expanded with the variables in scope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from dockyard.errors import InvalidArgument

DEFAULT_SHELL = ["/bin/sh", "-c"]
METADATA = {"ENV", "LABEL", "MAINTAINER", "EXPOSE", "VOLUME", "USER", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
            "ONBUILD", "CMD", "ENTRYPOINT"}
LAYER_STEPS = {"RUN", "COPY", "ADD", "WORKDIR"}


# -- Go formatting -------------------------------------------------------------------------------

def go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def go_quoted_list(items: list[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def go_list(items: list[str]) -> str:
    """Go's ``%v`` of a []string: ``[a b]``."""
    return "[" + " ".join(items) + "]"


def go_duration(ns: int) -> str:
    """Go's time.Duration String() for whole-ish values (``1m30s``, ``500ms``, ``0s``)."""
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{ns / size:g}{unit}"
    secs = ns / 1e9
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = ""
    if h:
        out += f"{int(h)}h"
    if h or m:
        out += f"{int(m)}m"
    return out + f"{s:g}s"


# -- config helpers ------------------------------------------------------------------------------

def env_map(inner: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in inner.get("Env") or []:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def set_env(inner: dict[str, Any], key: str, value: str) -> None:
    """Set a variable where it is (a new one goes last), as BuildKit's AddEnv does."""
    env = list(inner.get("Env") or [])
    for i, e in enumerate(env):
        if e.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            break
    else:
        env.append(f"{key}={value}")
    inner["Env"] = env


def shell_form(ins: Any, shell: list[str]) -> list[str]:
    """CMD/ENTRYPOINT/RUN arguments: exec form as written, shell form through the SHELL."""
    if ins.json:
        return list(ins.value)
    return [*shell, " ".join(ins.value)]


def pairs(values: list[str]) -> list[tuple[str, str]]:
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


def parse_ports(words: list[str]) -> list[str]:
    """EXPOSE words as ExposedPorts keys ("80/tcp"); ranges expand as nat.ParsePortSpecs does."""
    out: list[str] = []
    for w in words:
        port, _, proto = w.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid proto: {proto}")
        if ":" in port:
            raise InvalidArgument(f"invalid containerPort: {w}")
        lo, _, hi = port.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise InvalidArgument(f"invalid containerPort: {port}")
        a, b = int(lo), int(hi or lo)
        if b < a or b > 65535:
            raise InvalidArgument(f"invalid range specified for port: {port}")
        out.extend(f"{p}/{proto}" for p in range(a, b + 1))
    return out


def healthcheck(ins: Any) -> tuple[dict[str, Any], str]:
    """HEALTHCHECK's config value and its history text (Go's %q of the HealthConfig pointer)."""
    from dockyard.build.plan import parse_healthcheck

    h = parse_healthcheck(ins)
    hc: dict[str, Any] = {"Test": list(h.test)}
    for key, ns in (("Interval", h.interval), ("Timeout", h.timeout), ("StartPeriod", h.start_period),
                    ("StartInterval", h.start_interval)):
        if ns:
            hc[key] = ns
    if h.retries:
        hc["Retries"] = h.retries
    durations = " ".join(go_quote(go_duration(ns)) for ns in
                         (h.interval, h.timeout, h.start_period, h.start_interval))
    return hc, f"HEALTHCHECK &{{{go_quoted_list(list(h.test))} {durations} '\\x{h.retries:02x}'}}"


def apply_metadata(ins: Any, inner: dict[str, Any], top: dict[str, Any], *, shell: list[str],
                   cmd_set: bool) -> str:
    """Apply an *expanded* metadata instruction (plan.expand_instruction) to ``inner`` (the container
    config) and ``top`` (the image config: ``author``); returns the history text."""
    kind = ins.kind
    if kind == "ENV":
        shown = []
        for key, val in pairs(list(ins.value)):
            set_env(inner, key, val)
            shown.append(f"{key}={val}")
        return "ENV " + " ".join(shown)
    if kind == "LABEL":
        labels = dict(inner.get("Labels") or {})
        shown = []
        for key, val in pairs(list(ins.value)):
            labels[key] = val
            shown.append(f"{key}={val}")
        inner["Labels"] = labels
        return "LABEL " + " ".join(shown)
    if kind == "MAINTAINER":
        top["author"] = " ".join(ins.value)
        return "MAINTAINER " + top["author"]
    if kind == "EXPOSE":
        ports = parse_ports(list(ins.value))
        exposed = dict(inner.get("ExposedPorts") or {})
        for p in ports:
            exposed[p] = {}
        inner["ExposedPorts"] = exposed
        return "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in sorted(set(ports))) + "]"
    if kind == "VOLUME":
        vols = dict(inner.get("Volumes") or {})
        for path in ins.value:
            if not path.strip():
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[path] = {}
        inner["Volumes"] = vols
        return "VOLUME " + go_list(list(ins.value))
    if kind == "USER":
        inner["User"] = " ".join(ins.value)
        return "USER " + inner["User"]
    if kind == "STOPSIGNAL":
        sig = " ".join(ins.value)
        if not re.fullmatch(r"(SIG)?[A-Z0-9+-]+|\d+", sig):
            raise InvalidArgument(f"Invalid signal: {sig}")
        inner["StopSignal"] = sig
        return "STOPSIGNAL " + sig
    if kind == "SHELL":
        inner["Shell"] = list(ins.value)
        return "SHELL " + go_list(list(ins.value))
    if kind == "ONBUILD":
        inner["OnBuild"] = [*(inner.get("OnBuild") or []), ins.trigger]
        return "ONBUILD " + ins.trigger
    if kind in ("CMD", "ENTRYPOINT"):
        args = shell_form(ins, shell)
        if kind == "CMD":
            inner["Cmd"] = args
        else:
            inner["Entrypoint"] = args
            if not cmd_set:
                inner.pop("Cmd", None)
        return f"{kind} " + go_quoted_list(args)
    if kind == "HEALTHCHECK":
        hc, text = healthcheck(ins)
        inner["Healthcheck"] = hc
        return text
    raise InvalidArgument(f"not a metadata instruction: {kind}")
