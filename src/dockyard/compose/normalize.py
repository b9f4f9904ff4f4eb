"""One compose file's services and resources in long syntax, and the merge rules between files.

The loader works in three steps (see :mod:`dockyard.compose.loader`): each file is parsed, interpolated
and validated; then each service is *normalised* here into a canonical dict — only the keys the file
wrote, but every value in its long form (ports as :class:`~dockyard.compose.model.PortConfig`,
volumes as :class:`~dockyard.compose.model.VolumeMount`, environment as a dict, relative paths made
absolute against the file's base directory); then the canonical dicts of several files (and of
``extends`` bases) are merged by the Compose Specification's rules:

==========================================  ===================================================
attribute                                   rule
==========================================  ===================================================
scalars (image, user, restart, ...)         the later file wins
command, entrypoint, healthcheck.test       replaced as a whole
environment, labels, annotations, sysctls,  merged by key, the later value wins
extra_hosts, ulimits, build.args, ...
ports                                       merged by (host_ip, published, target, protocol)
volumes                                     merged by target
expose                                      merged by value
secrets, configs                            merged by target (or source)
env_file                                    merged by path
networks, depends_on                        merged per entry (aliases are a union)
other sequences (dns, cap_add, ...)         union, first appearance order
other mappings (build, deploy, ...)         merged recursively by these same rules
``!reset``-tagged value                     removes the attribute
``!override``-tagged value                  replaces instead of merging
==========================================  ===================================================

Defaults (``condition: service_started``, the ``default`` network, ...) are *not* filled in here, so
an override file that writes ``depends_on: [db]`` keeps the base file's ``condition``.

Pure: no I/O.  Errors are :class:`~dockyard.errors.InvalidArgument` naming the file, the path and
(when known) the line.
"""

from __future__ import annotations

import copy
import json
import posixpath
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dockyard.compose.interpolate import dotted
from dockyard.compose.model import (
    BindOptions,
    PortConfig,
    TmpfsOptions,
    VolumeMount,
    VolumeOptions,
    parse_bool,
    parse_bytes,
    parse_duration,
    parse_int,
    parse_port,
    parse_volume,
)
from dockyard.errors import InvalidArgument

Path = tuple[str | int, ...]


# --- YAML markers ----------------------------------------------------------------------------------

class _Reset:
    """``!reset``: remove the attribute (or service, or resource) from what earlier files set."""

    def __repr__(self) -> str:
        return "!reset"


RESET: Final = _Reset()


class OverrideDict(dict):  # type: ignore[type-arg]
    """A mapping tagged ``!override``: replaces the earlier value instead of merging with it."""


class OverrideList(list):  # type: ignore[type-arg]
    """A sequence tagged ``!override``: replaces the earlier value instead of merging with it."""


@dataclass
class Replace:
    """A normalised value that replaces (set from an ``!override`` tag)."""

    value: Any


# --- per-file context ------------------------------------------------------------------------------

@dataclass
class FileContext:
    """Where a service definition came from: ``file`` for messages, ``base_dir`` for relative paths
    (the project directory for the ``-f`` files, the file's own directory for an ``extends`` file),
    ``lines`` maps a path inside the file to its line number."""

    file: str
    base_dir: str
    home: str | None = None
    lines: dict[Path, int] = field(default_factory=dict)

    def fail(self, path: Path, message: str) -> InvalidArgument:
        line = self.line_of(path)
        where = f" (line {line})" if line else ""
        return InvalidArgument(f"{self.file}: {dotted(path)}: {message}{where}")

    def line_of(self, path: Path) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def abspath(self, p: str) -> str:
        if p == "~" or p.startswith("~/"):
            if self.home:
                p = self.home + p[1:]
            else:
                return p
        return posixpath.normpath(posixpath.join(self.base_dir, p))


def is_remote_context(context: str) -> bool:
    """A build context that is a URL (git or tarball), not a directory."""
    return "://" in context or context.startswith(("git@", "github.com/"))


# --- small converters ------------------------------------------------------------------------------

def scalar_str(value: Any) -> str:
    """A YAML scalar as the string docker sees (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def kv(value: Any, *, unset: Any = None) -> dict[str, Any]:
    """``list_or_dict`` (``["A=1", "B"]`` or ``{A: 1, B: null}``) -> ``{"A": "1", "B": unset}``."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out[str(k)] = unset if v is None else v if v is RESET else scalar_str(v)
    elif isinstance(value, list):
        for item in value:
            k, sep, v = str(item).partition("=")
            out[k] = v if sep else unset
    return out


def str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [scalar_str(v) for v in value]
    return [scalar_str(value)]


def command(value: Any) -> list[str] | None:
    """``command``/``entrypoint``: a string is split as a shell would (no expansion)."""
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [scalar_str(v) for v in value]


def extra_hosts(value: Any) -> dict[str, list[str]]:
    """``["host=ip", "host:ip"]`` or ``{host: ip | [ips]}`` -> ``{host: [ips]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for host, ips in value.items():
            out[str(host)] = [_unbracket(str(ip)) for ip in (ips if isinstance(ips, list) else [ips])]
        return out
    for entry in value or []:
        entry = str(entry)
        host, sep, ip = entry.partition("=")
        if not sep:
            host, sep, ip = entry.partition(":")
        if not sep or not host or not ip:
            raise ValueError(f"invalid extra host {entry!r}: expected HOST=IP")
        out.setdefault(host, []).append(_unbracket(ip))
    return out


def _unbracket(ip: str) -> str:
    return ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip


def _cast(fn: Callable[[Any], Any], value: Any, ctx: FileContext, path: Path) -> Any:
    try:
        return fn(value)
    except ValueError as exc:
        raise ctx.fail(path, str(exc)) from None


# --- services --------------------------------------------------------------------------------------

BOOL_KEYS: Final = frozenset({"init", "read_only", "privileged", "tty", "stdin_open", "oom_kill_disable",
                              "use_api_socket"})
INT_KEYS: Final = frozenset({"scale", "cpu_shares", "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime",
                             "oom_score_adj", "pids_limit", "mem_swappiness", "cpu_count", "cpu_percent"})
BYTES_KEYS: Final = frozenset({"mem_limit", "mem_reservation", "memswap_limit", "shm_size"})
LIST_KEYS: Final = frozenset({"cap_add", "cap_drop", "security_opt", "dns", "dns_search", "dns_opt", "tmpfs",
                              "profiles", "group_add", "links", "external_links", "volumes_from",
                              "device_cgroup_rules"})
KV_KEYS: Final = frozenset({"labels", "annotations", "sysctls"})


def normalise_service(name: str, raw: Mapping[str, Any], ctx: FileContext) -> dict[str, Any]:
    """One service definition -> its canonical dict (``extends`` is left to the caller)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "extends":
            continue
        path: Path = ("services", name, key)
        if value is RESET:
            out[key] = RESET
            continue
        replace = isinstance(value, (OverrideDict, OverrideList))
        norm = _service_value(key, value, path, ctx)
        out[key] = Replace(norm) if replace else norm
    return out


def _service_value(key: str, value: Any, path: Path, ctx: FileContext) -> Any:
    if key.startswith("x-"):
        return value
    if key in BOOL_KEYS:
        return _cast(parse_bool, value, ctx, path)
    if key in INT_KEYS:
        return _cast(parse_int, value, ctx, path)
    if key in BYTES_KEYS:
        return _cast(parse_bytes, value, ctx, path)
    if key in LIST_KEYS:
        return str_list(value)
    if key in KV_KEYS:
        return kv(value, unset="")
    if key == "cpus":
        return _cast(float, value, ctx, path)
    if key == "stop_grace_period":
        return _cast(parse_duration, value, ctx, path)
    if key in ("command", "entrypoint"):
        try:
            return command(value)
        except ValueError as exc:  # shlex: unbalanced quotes
            raise ctx.fail(path, f"invalid command line: {exc}") from None
    if key == "environment":
        return kv(value)
    if key == "env_file":
        return _env_files(value, ctx)
    if key == "extra_hosts":
        return _cast(extra_hosts, value, ctx, path)
    if key == "ports":
        return [p for i, item in enumerate(value) for p in _port(item, (*path, i), ctx)]
    if key == "expose":
        return [scalar_str(v) for v in value]
    if key == "volumes":
        return [_volume(item, (*path, i), ctx) for i, item in enumerate(value)]
    if key == "networks":
        return _service_networks(value)
    if key == "depends_on":
        return _depends_on(value, path, ctx)
    if key == "healthcheck":
        return _healthcheck(value, path, ctx)
    if key == "build":
        return _build(value, path, ctx)
    if key == "deploy":
        return _deploy(value or {}, path, ctx)
    if key == "ulimits":
        return {k: v if v is RESET else _ulimit(v, (*path, k), ctx) for k, v in value.items()}
    if key in ("secrets", "configs"):
        return [_file_ref(item, (*path, i), ctx) for i, item in enumerate(value)]
    if key == "develop":
        return _develop(value or {}, path, ctx)
    if key == "devices":
        return [_device(v) for v in value]
    if key == "logging":
        out = {k: v for k, v in value.items() if k == "driver"}
        if "options" in value:
            out["options"] = kv(value["options"] or {}, unset="")
        return out
    if key == "pull_policy":
        return "missing" if value == "if_not_present" else value
    return value


def _env_files(value: Any, ctx: FileContext) -> list[dict[str, Any]]:
    out = []
    for item in [value] if isinstance(value, str) else value:
        if isinstance(item, str):
            item = {"path": item}
        entry = {"path": ctx.abspath(item["path"]), "required": parse_bool(item.get("required", True))}
        if item.get("format"):
            entry["format"] = item["format"]
        out.append(entry)
    return out


def _port(item: Any, path: Path, ctx: FileContext) -> list[PortConfig]:
    if not isinstance(item, dict):
        return _cast(parse_port, item, ctx, path)
    try:
        target = parse_int(item.get("target"))
    except ValueError:
        raise ctx.fail(path, f"invalid containerPort: {item.get('target')}") from None
    if not 0 < target < 65536:
        raise ctx.fail(path, f"invalid containerPort: {target}")
    protocol = str(item.get("protocol") or "tcp").lower()
    if protocol not in ("tcp", "udp", "sctp"):
        raise ctx.fail(path, f"invalid proto: {protocol}")
    published = item.get("published")
    return [PortConfig(
        target=target,
        published="" if published is None else scalar_str(published),
        host_ip=str(item.get("host_ip") or ""),
        protocol=protocol,
        mode=str(item.get("mode") or "ingress"),
        name=str(item.get("name") or ""),
        app_protocol=str(item.get("app_protocol") or ""),
    )]


def _volume(item: Any, path: Path, ctx: FileContext) -> VolumeMount:
    if isinstance(item, str):
        mount = _cast(parse_volume, item, ctx, path)
        if mount.type == "bind":
            mount.source = ctx.abspath(mount.source)
        return mount
    kind = item["type"]
    if kind not in ("volume", "bind", "tmpfs"):
        raise ctx.fail(path, f"volume type {kind!r} is not supported")
    target = item.get("target")
    if not target:
        raise ctx.fail(path, f'invalid mount config for type "{kind}": field Target must not be empty')
    if not str(target).startswith("/"):
        raise ctx.fail(path, f"the mount target {target!r} must be an absolute path")
    source = str(item.get("source") or "")
    mount = VolumeMount(type=kind, target=str(target), source=source,
                        read_only=_cast(parse_bool, item.get("read_only", False), ctx, (*path, "read_only")),
                        consistency=item.get("consistency"))
    if kind == "bind":
        if not source:
            raise ctx.fail(path, 'invalid mount config for type "bind": field Source must not be empty')
        mount.source = ctx.abspath(source)
        b = item.get("bind") or {}
        mount.bind = BindOptions(propagation=b.get("propagation"), selinux=b.get("selinux"),
                                 recursive=b.get("recursive"),
                                 create_host_path=_cast(parse_bool, b.get("create_host_path", False), ctx,
                                                        (*path, "bind", "create_host_path")))
    elif kind == "tmpfs":
        if source:
            raise ctx.fail(path, 'invalid mount config for type "tmpfs": field Source must not be specified')
        t = item.get("tmpfs") or {}
        mode = t.get("mode")
        mount.tmpfs = TmpfsOptions(
            size=None if t.get("size") is None else _cast(parse_bytes, t["size"], ctx, (*path, "tmpfs", "size")),
            mode=None if mode is None else (mode if isinstance(mode, int) else _cast(
                lambda m: int(str(m), 8), mode, ctx, (*path, "tmpfs", "mode"))))
    else:
        v = item.get("volume") or {}
        if v:
            mount.volume = VolumeOptions(
                nocopy=_cast(parse_bool, v.get("nocopy", False), ctx, (*path, "volume", "nocopy")),
                subpath=v.get("subpath"), labels=kv(v.get("labels") or {}, unset=""))
    for other in ("bind", "volume", "tmpfs"):
        if other != kind and item.get(other):
            raise ctx.fail(path, f"{other} options are invalid for a mount of type {kind}")
    return mount


def _service_networks(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {str(n): {} for n in value}
    out: dict[str, Any] = {}
    for name, cfg in value.items():
        if cfg is RESET:
            out[str(name)] = RESET
            continue
        cfg = dict(cfg or {})
        for key in ("aliases", "link_local_ips"):
            if key in cfg:
                cfg[key] = str_list(cfg[key])
        if "driver_opts" in cfg:
            cfg["driver_opts"] = kv(cfg["driver_opts"], unset="")
        out[str(name)] = cfg
    return out


def _depends_on(value: Any, path: Path, ctx: FileContext) -> dict[str, Any]:
    if isinstance(value, list):
        return {str(n): {} for n in value}
    out: dict[str, Any] = {}
    for name, cfg in value.items():
        if cfg is RESET:
            out[str(name)] = RESET
            continue
        entry: dict[str, Any] = {}
        for key, v in (cfg or {}).items():
            if key in ("restart", "required"):
                v = _cast(parse_bool, v, ctx, (*path, name, key))
            entry[key] = v
        out[str(name)] = entry
    return out


def _healthcheck(value: Any, path: Path, ctx: FileContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in value.items():
        p = (*path, key)
        if key == "test":
            if isinstance(v, str):
                v = ["CMD-SHELL", v]
            elif v and v[0] not in ("CMD", "CMD-SHELL", "NONE"):
                raise ctx.fail(p, f"the first item must be CMD, CMD-SHELL or NONE, not {v[0]!r}")
            out[key] = list(v)
        elif key in ("interval", "timeout", "start_period", "start_interval"):
            out[key] = _cast(parse_duration, v, ctx, p)
        elif key == "retries":
            out[key] = _cast(parse_int, v, ctx, p)
        elif key == "disable":
            out[key] = _cast(parse_bool, v, ctx, p)
        else:
            out[key] = v
    return out


def _build(value: Any, path: Path, ctx: FileContext) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"context": value}
    out: dict[str, Any] = {}
    for key, v in value.items():
        p = (*path, key)
        if key == "context":
            out[key] = v if is_remote_context(v) else ctx.abspath(v)
        elif key == "args":
            out[key] = kv(v)
        elif key in ("labels", "ssh"):
            out[key] = kv(v, unset="")
        elif key == "additional_contexts":
            out[key] = {k: (c if is_remote_context(c) or ":" in c.split("/")[0] else ctx.abspath(c))
                        for k, c in kv(v, unset="").items()}
        elif key == "extra_hosts":
            out[key] = _cast(extra_hosts, v, ctx, p)
        elif key in ("no_cache", "pull", "privileged"):
            out[key] = _cast(parse_bool, v, ctx, p)
        elif key == "shm_size":
            out[key] = _cast(parse_bytes, v, ctx, p)
        else:
            out[key] = v
    # no default context here: an override file that only adds args must keep the base's context
    # (the loader defaults it to the project directory after merging, as compose does)
    return out


def _deploy(value: Mapping[str, Any], path: Path, ctx: FileContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in value.items():
        p = (*path, key)
        if key == "replicas":
            out[key] = _cast(parse_int, v, ctx, p)
        elif key == "labels":
            out[key] = kv(v, unset="")
        elif key == "resources":
            res: dict[str, Any] = {}
            for kind, spec in (v or {}).items():
                spec = dict(spec or {})
                if "cpus" in spec:
                    spec["cpus"] = _cast(float, spec["cpus"], ctx, (*p, kind, "cpus"))
                if "memory" in spec:
                    spec["memory"] = _cast(parse_bytes, spec["memory"], ctx, (*p, kind, "memory"))
                if "pids" in spec:
                    spec["pids"] = _cast(parse_int, spec["pids"], ctx, (*p, kind, "pids"))
                res[kind] = spec
            out[key] = res
        elif key == "restart_policy":
            rp = dict(v or {})
            for k in ("delay", "window"):
                if k in rp:
                    rp[k] = _cast(parse_duration, rp[k], ctx, (*p, k))
            if "max_attempts" in rp:
                rp["max_attempts"] = _cast(parse_int, rp["max_attempts"], ctx, (*p, "max_attempts"))
            out[key] = rp
        else:
            out[key] = v
    return out


def _ulimit(value: Any, path: Path, ctx: FileContext) -> dict[str, int]:
    if isinstance(value, dict):
        soft = _cast(parse_int, value["soft"], ctx, (*path, "soft"))
        hard = _cast(parse_int, value["hard"], ctx, (*path, "hard"))
        if soft > hard:
            raise ctx.fail(path, f"soft limit {soft} is greater than hard limit {hard}")
        return {"soft": soft, "hard": hard}
    n = _cast(parse_int, value, ctx, path)
    return {"soft": n, "hard": n}


def _file_ref(item: Any, path: Path, ctx: FileContext) -> dict[str, Any]:
    if isinstance(item, str):
        return {"source": item}
    out = {k: v for k, v in item.items() if not k.startswith("x-")}
    if "mode" in out and not isinstance(out["mode"], int):
        out["mode"] = _cast(lambda m: int(str(m), 8), out["mode"], ctx, (*path, "mode"))
    return out


def _device(value: Any) -> str:
    if isinstance(value, dict):
        parts = [value["source"], value.get("target") or value["source"]]
        if value.get("permissions"):
            parts.append(value["permissions"])
        return ":".join(parts)
    return str(value)


def _develop(value: Mapping[str, Any], path: Path, ctx: FileContext) -> dict[str, Any]:
    out = {k: v for k, v in value.items() if k != "watch"}
    if "watch" in value:
        rules = []
        for i, rule in enumerate(value["watch"] or []):
            r = dict(rule)
            r["path"] = ctx.abspath(r["path"])
            for key in ("ignore", "include"):
                if key in r:
                    r[key] = str_list(r[key])
            if "initial_sync" in r:
                r["initial_sync"] = _cast(parse_bool, r["initial_sync"], ctx, (*path, "watch", i, "initial_sync"))
            if r["action"] in ("sync", "sync+restart", "sync+exec") and not r.get("target"):
                raise ctx.fail((*path, "watch", i), f"action {r['action']} requires a target")
            rules.append(r)
        out["watch"] = rules
    return out


# --- top-level resources ---------------------------------------------------------------------------

def normalise_resource(kind: str, name: str, raw: Any, ctx: FileContext) -> Any:
    """A top-level network, volume, secret or config -> its canonical dict."""
    if raw is RESET:
        return RESET
    out: dict[str, Any] = {}
    for key, v in (raw or {}).items():
        p: Path = (kind, name, key)
        if key in ("labels", "driver_opts"):
            out[key] = kv(v, unset="")
        elif key == "external":
            if isinstance(v, dict):  # the deprecated `external: {name: x}`
                if v.get("name"):
                    out.setdefault("name", v["name"])
                out[key] = True
            else:
                out[key] = _cast(parse_bool, v, ctx, p)
        elif key in ("internal", "attachable", "enable_ipv4", "enable_ipv6"):
            out[key] = _cast(parse_bool, v, ctx, p)
        elif key == "file":
            out[key] = ctx.abspath(v)
        else:
            out[key] = v
    opts = out.get("driver_opts", {})
    if kind == "volumes" and opts.get("o") in ("bind", "rbind") and "device" in opts:
        opts["device"] = ctx.abspath(opts["device"])  # a local bind volume's device is a host path
    return out


# --- merging ---------------------------------------------------------------------------------------

def _freeze(item: Any) -> str:
    return json.dumps(item, sort_keys=True, default=repr)


def _union(base: list[Any], over: list[Any], key: Callable[[Any], Any] = _freeze) -> list[Any]:
    """Later entries replace earlier ones with the same key, in place; new ones are appended."""
    out = list(base)
    index = {key(v): i for i, v in enumerate(out)}
    for v in over:
        k = key(v)
        if k in index:
            out[index[k]] = v
        else:
            index[k] = len(out)
            out.append(v)
    return out


def _ref_key(ref: dict[str, Any]) -> str:
    return str(ref.get("target") or ref.get("source"))


_KEYED: Final[dict[str, Callable[[Any], Any]]] = {
    "ports": lambda p: p.key(),
    "volumes": lambda v: v.target,
    "expose": str,
    "secrets": _ref_key,
    "configs": _ref_key,
    "env_file": lambda e: e["path"],
}
_REPLACED: Final = {("command",), ("entrypoint",), ("healthcheck", "test")}


def merge_value(path: tuple[str, ...], base: Any, over: Any) -> Any:
    """Merge ``over`` onto ``base`` (both canonical) for the attribute at ``path`` inside a service
    (or a resource); the result may be :data:`RESET` (the caller drops the key)."""
    if over is RESET:
        return RESET
    if isinstance(over, Replace):
        return over.value
    if isinstance(base, Replace):
        base = base.value
    if base is RESET or base is None or path in _REPLACED:
        return over
    if len(path) == 1 and path[0] in _KEYED and isinstance(base, list) and isinstance(over, list):
        return _union(base, over, _KEYED[path[0]])
    if (path == ("logging",) and isinstance(base, dict) and isinstance(over, dict)
            and base.get("driver") and over.get("driver") and base["driver"] != over["driver"]):
        return over  # another driver: its options do not mix with the old one's
    if isinstance(base, dict) and isinstance(over, dict):
        return merge_dicts(base, over, path)
    if isinstance(base, list) and isinstance(over, list):
        return _union(base, over)
    return over


def merge_dicts(base: Mapping[str, Any], over: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key.startswith("x-"):  # extensions are replaced, never merged
            out[key] = value
            continue
        merged = merge_value((*path, key), out[key], value) if key in out else _strip(value)
        if merged is RESET:
            out.pop(key, None)
        else:
            out[key] = merged
    return out


def _strip(value: Any) -> Any:
    return value.value if isinstance(value, Replace) else value


def finish(canonical: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the merge markers left in a canonical dict (a ``!reset`` with nothing to reset)."""
    out = {}
    for key, value in canonical.items():
        value = _strip(value)
        if value is RESET:
            continue
        out[key] = finish(value) if isinstance(value, dict) else value
    return out


def merge_services(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two canonical service dicts (later file, or extending service, in ``over``)."""
    return merge_dicts(copy.deepcopy(dict(base)), over)
