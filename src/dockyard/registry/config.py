"""Registry configuration: one YAML file, typed dataclasses, every option also a flag.

``load_config(path)`` reads the YAML file (docs/registry.md documents every key with an
example); the CLI then applies its flags on top with :func:`apply_overrides`, so a flag always
wins over the file and the file over the defaults.  Unknown keys are errors (InvalidArgument
naming the key): a misspelt ``immutible: true`` silently ignored would be a security bug.

Durations are seconds or ``90s``/``10m``/``1h``/``7d`` (combinable: ``1h30m``); sizes are bytes
or ``4MiB``/``512KiB``/``1GiB``.  This module is pure (no sockets, no files but the one read).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Final, get_type_hints

from dockyard.errors import InvalidArgument

__all__ = [
    "AuthConfig", "EncryptionConfig", "GCConfig", "LogConfig", "NotificationsConfig", "RegistryConfig",
    "RepositoryRule", "StorageConfig", "TLSConfig", "TokenConfig", "WebhookEndpoint",
    "apply_overrides", "config_from_dict", "load_config", "parse_addr", "parse_duration", "parse_size",
]

DEFAULT_ROOT: Final = "/var/lib/dockyard/registry"
STORAGE_DRIVERS: Final = ("filesystem", "azureblob")
AUTH_TYPES: Final = ("none", "htpasswd", "token")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


@dataclass
class StorageConfig:
    driver: str = "filesystem"            # filesystem | azureblob
    root: str = DEFAULT_ROOT               # filesystem: the directory holding the store
    fsync: bool = True                     # filesystem: fsync files before renaming them into place
    options: dict[str, Any] = field(default_factory=dict)   # driver options (azureblob: see docs)


@dataclass
class TokenConfig:
    realm: str = ""            # URL clients fetch tokens from; default: this server's /token
    path: str = "/token"       # where this server serves the token endpoint
    service: str = "dockyard-registry"
    issuer: str = "dockyard"
    key: str | None = None     # PEM private key signing the JWTs; default <root>/token.key (created)
    algorithm: str = "ES256"
    expiry: float = 300.0      # access token lifetime, seconds
    refresh_expiry: float = 30 * 86400.0   # OAuth2 refresh token lifetime


@dataclass
class AuthConfig:
    type: str = "none"         # none (loopback only) | htpasswd | token
    htpasswd: str | None = None
    policy: str | None = None  # access policy file (users/groups -> repository patterns -> actions)
    anonymous: list[str] = field(default_factory=list)   # repository patterns anyone may pull
    realm: str = "dockyard-registry"   # Basic realm
    token: TokenConfig = field(default_factory=TokenConfig)

    def to_dict(self) -> dict[str, Any]:
        """The plain dict ``dockyard.registry.auth.build_authorizer`` takes (the auth section)."""
        return _to_dict(self)


@dataclass
class TLSConfig:
    cert: str | None = None
    key: str | None = None
    self_signed: bool = False
    self_signed_dir: str | None = None     # where the generated pair is kept (default: next to the root)

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.self_signed)


@dataclass
class EncryptionConfig:
    key_file: str | None = None            # master key; when set every blob is stored encrypted
    previous_key_files: list[str] = field(default_factory=list)   # older keys, still read (rotation)


@dataclass
class WebhookEndpoint:
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 5.0
    attempts: int = 5                      # tries per event batch before it is dropped (logged)
    backoff: float = 1.0                   # first retry delay, doubled each time


@dataclass
class NotificationsConfig:
    endpoints: list[WebhookEndpoint] = field(default_factory=list)
    queue_size: int = 1000                 # events held in memory per endpoint; oldest dropped first


@dataclass
class RepositoryRule:
    """Per-repository-pattern policy: immutable tags and/or keep only the N newest tags.

    ``repositories`` and ``tags`` are globs: ``*`` stays within a path component, ``**`` crosses
    them, ``?`` is one character.  Immutable tags cannot be moved to another digest or deleted;
    retention untags the oldest matching tags after a push (immutable ones are never removed).
    """

    repositories: str = "**"
    tags: str = "*"
    immutable: bool = False
    keep: int | None = None

    def matches(self, name: str) -> bool:
        return _glob(self.repositories).fullmatch(name) is not None

    def matches_tag(self, tag: str) -> bool:
        return _glob(self.tags).fullmatch(tag) is not None


@dataclass
class GCConfig:
    grace_period: float = 3600.0           # blobs younger than this are never collected
    upload_max_age: float = 86400.0        # uploads idle longer than this are killed pushes
    delete_untagged: bool = False          # also collect manifests no tag/index/subject keeps
    interval: float = 0.0                  # run GC online every N seconds in `serve` (0: never)


@dataclass
class LogConfig:
    level: str = "info"
    access_log: bool = True                # JSON line per request on logger dockyard.registry.access


@dataclass
class RegistryConfig:
    addr: str = "127.0.0.1:5000"
    workers: int = 1                       # processes sharing the port (SO_REUSEPORT)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    rules: list[RepositoryRule] = field(default_factory=list)
    gc: GCConfig = field(default_factory=GCConfig)
    log: LogConfig = field(default_factory=LogConfig)
    manifest_max_bytes: int = 4 << 20
    delete_enabled: bool = True
    metrics: bool = True

    def validate(self) -> RegistryConfig:
        """Check cross-field rules; InvalidArgument naming the option."""
        host, port = parse_addr(self.addr)
        if self.storage.driver not in STORAGE_DRIVERS:
            raise InvalidArgument(f"storage.driver: must be one of {', '.join(STORAGE_DRIVERS)}")
        if self.auth.type not in AUTH_TYPES:
            raise InvalidArgument(f"auth.type: must be one of {', '.join(AUTH_TYPES)}")
        if self.auth.type == "none" and not is_loopback(host):
            raise InvalidArgument(
                f"refusing to serve without authentication on {self.addr}: auth 'none' is for "
                "loopback addresses only; configure auth htpasswd or token")
        if bool(self.tls.cert) != bool(self.tls.key):
            raise InvalidArgument("tls: cert and key go together")
        if self.tls.cert and self.tls.self_signed:
            raise InvalidArgument("tls: self_signed and cert/key are exclusive")
        if self.log.level not in LOG_LEVELS:
            raise InvalidArgument(f"log.level: must be one of {', '.join(LOG_LEVELS)}")
        if self.workers < 1:
            raise InvalidArgument("workers: must be at least 1")
        if self.manifest_max_bytes < 1024:
            raise InvalidArgument("manifest_max_bytes: must be at least 1KiB")
        for i, rule in enumerate(self.rules):
            if rule.keep is not None and rule.keep < 1:
                raise InvalidArgument(f"rules[{i}].keep: must be at least 1")
        for i, ep in enumerate(self.notifications.endpoints):
            if not re.match(r"https?://", ep.url):
                raise InvalidArgument(f"notifications.endpoints[{i}].url: must be an http(s) URL")
        del port
        return self

    def auth_dict(self) -> dict[str, Any]:
        """The auth section for ``build_authorizer``/``token_routes``, with ``root`` (filesystem
        driver) so the htpasswd file and token key default to files beside the store that
        every process over it shares."""
        out = self.auth.to_dict()
        if self.storage.driver == "filesystem":
            out["root"] = self.storage.root
        return out

    def is_immutable(self, name: str, tag: str) -> bool:
        return any(r.immutable and r.matches(name) and r.matches_tag(tag) for r in self.rules)

    def retention_rules(self, name: str) -> list[RepositoryRule]:
        return [r for r in self.rules if r.keep is not None and r.matches(name)]


# --- parsing helpers ---------------------------------------------------------------------------

_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE: Final = re.compile(r"(\d+)\s*([KMGT]i?B?|B)?", re.IGNORECASE)


def parse_duration(value: Any, where: str = "duration") -> float:
    if isinstance(value, bool):
        raise InvalidArgument(f"{where}: expected a duration")
    if isinstance(value, (int, float)):
        return float(value)
    s = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = _DURATION_RE.findall(s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise InvalidArgument(f"{where}: invalid duration {value!r} (e.g. 90s, 10m, 1h30m, 7d)")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def parse_size(value: Any, where: str = "size") -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE_RE.fullmatch(str(value).strip())
    if m is None:
        raise InvalidArgument(f"{where}: invalid size {value!r} (e.g. 4MiB)")
    unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; ``:port`` means every interface) -> (host, port)."""
    m = re.fullmatch(r"(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})", addr or "")
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise InvalidArgument(f"addr: invalid listen address {addr!r} (expected HOST:PORT)")
    return (m.group(1) or m.group(2) or ""), int(m.group(3))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; any other name is treated as public."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_GLOB_CACHE: dict[str, re.Pattern[str]] = {}


def _glob(pattern: str) -> re.Pattern[str]:
    rx = _GLOB_CACHE.get(pattern)
    if rx is None:
        out, i = [], 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
            elif pattern[i] == "*":
                out.append("[^/]*")
                i += 1
            elif pattern[i] == "?":
                out.append("[^/]")
                i += 1
            else:
                out.append(re.escape(pattern[i]))
                i += 1
        rx = _GLOB_CACHE[pattern] = re.compile("".join(out))
    return rx


# --- dict <-> dataclass --------------------------------------------------------------------------

_DURATIONS: Final = {"grace_period", "upload_max_age", "interval", "timeout", "backoff", "expiry",
                     "refresh_expiry"}
_SIZES: Final = {"manifest_max_bytes"}


def _convert(tp: Any, value: Any, where: str, key: str) -> Any:
    """Convert one YAML value to the annotated type ``tp`` (a string from get_type_hints)."""
    if value is None:
        return None
    if key in _DURATIONS:
        return parse_duration(value, where)
    if key in _SIZES:
        return parse_size(value, where)
    if isinstance(tp, type) and is_dataclass(tp):
        return _build(tp, value, where)
    origin = getattr(tp, "__origin__", None)
    args: tuple[Any, ...] = tuple(getattr(tp, "__args__", ()))
    if origin is list:
        if not isinstance(value, list):
            raise InvalidArgument(f"{where}: expected a list")
        return [_convert(args[0], v, f"{where}[{i}]", "") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidArgument(f"{where}: expected a mapping")
        return {str(k): v if args[1] is Any else str(v) for k, v in value.items()}
    if args and type(None) in args:        # X | None
        inner = next(a for a in args if a is not type(None))
        return _convert(inner, value, where, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "on"):
            return True
        if str(value).lower() in ("false", "no", "0", "off"):
            return False
        raise InvalidArgument(f"{where}: expected true or false")
    if tp is int:
        if isinstance(value, bool):
            raise InvalidArgument(f"{where}: expected an integer")
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"{where}: expected an integer") from exc
    if tp is float:
        return parse_duration(value, where)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise InvalidArgument(f"{where}: expected a string")
        return str(value)
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where or 'config'}: expected a mapping")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        k = str(key).replace("-", "_")
        path = f"{where}.{k}" if where else k
        if k not in known:
            raise InvalidArgument(f"{path}: unknown configuration key")
        kwargs[k] = _convert(hints[k], value, path, k)
    return cls(**{k: v for k, v in kwargs.items() if v is not None})


def _to_dict(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, list):
        return [_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_dict(v) for k, v in obj.items()}
    return obj


def config_from_dict(data: dict[str, Any] | None) -> RegistryConfig:
    """A config from a decoded YAML document (None: all defaults); not yet validated.

    A top-level ``root`` is shorthand for ``storage.root`` (the flag is ``--root`` too).
    """
    data = dict(data or {})
    if "root" in data:
        storage = dict(data.get("storage") or {})
        if "root" in storage:
            raise InvalidArgument("root: give either root or storage.root, not both")
        storage["root"] = data.pop("root")
        data["storage"] = storage
    return _build(RegistryConfig, data, "")


def load_config(path: str | Path | None) -> RegistryConfig:
    """Read the YAML file at ``path`` (None: defaults); InvalidArgument on any bad key or value."""
    if path is None:
        return RegistryConfig()
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"config file {path}: {exc}") from exc
    return config_from_dict(data)


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """Set dotted keys (``storage.root``, ``auth.type``) of a config dataclass from flags; None
    values are skipped.

    List-valued keys (``rules``, ``notifications.endpoints``) are appended to, so flags add to
    what the file configured.
    """
    for dotted, value in overrides.items():
        if value is None or value == () or value == []:
            continue
        *parents, leaf = dotted.split(".")
        target: Any = config
        for p in parents:
            target = getattr(target, p)
        hints = get_type_hints(type(target))
        if leaf not in hints:
            raise InvalidArgument(f"{dotted}: unknown configuration key")
        current = getattr(target, leaf)
        if isinstance(current, list):
            items = value if isinstance(value, (list, tuple)) else [value]
            current.extend(items)
        elif isinstance(current, dict) and isinstance(value, dict):
            current.update(value)
        else:
            setattr(target, leaf, _convert(hints[leaf], value, dotted, leaf))
    return config
