"""Typed values of a loaded compose project, and the compose syntaxes they are parsed from.

:func:`dockyard.compose.loader.load_project` produces a :class:`Project`: every short syntax already
made long, relative paths made absolute, ``env_file`` folded into ``environment``, durations in
seconds and sizes in bytes.  The converge code (``project.py``) reads these values and never sees
YAML.

What the fields mean when absent:

- ``None`` on an optional scalar means "not set in the compose file": the engine's (or the
  image's) default applies.  ``command``/``entrypoint`` of ``[]`` explicitly clear the image's value.
- ``Service.environment`` values of ``None`` are variables listed without a value whose name is not
  in the project environment: the container gets no such variable.
- ``Service.networks`` is never empty unless ``network_mode`` is set: a service with no networks is
  on the project's ``default`` network.

:meth:`Service.config_hash` is the "recreate only what changed" key: a stable digest of everything
that shapes the container, but not of what does not (replicas, build instructions, pull policy,
dependencies, profiles, ``develop``).  A rebuilt or re-pulled image does not change it either — the
converge code compares the image id separately, as docker compose does.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from dockyard.errors import InvalidArgument, NotFound

PROTOCOLS: Final = ("tcp", "udp", "sctp")
DEPENDENCY_CONDITIONS: Final = ("service_started", "service_healthy", "service_completed_successfully")
WATCH_ACTIONS: Final = ("sync", "rebuild", "restart", "sync+restart", "sync+exec")
PROPAGATIONS: Final = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
CONSISTENCIES: Final = ("consistent", "cached", "delegated")


# --- units -----------------------------------------------------------------------------------------

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BYTES: Final = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp])?i?b?", re.IGNORECASE)
_BYTE_UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_duration(value: Any) -> float:
    """A Go duration (``1m30s``, ``500ms``, ``1.5h``) or a number of seconds -> seconds.

    Raises ``ValueError`` (the loader adds the file and path)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")  # noqa: TRY004 - callers catch ValueError
    if isinstance(value, (int, float)):
        return float(value)
    s = str(value).strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return sign * float(s)
    parts = _DURATION_PART.findall(s)
    if not s or "".join(n + u for n, u in parts) != s:
        raise ValueError(f"invalid duration {value!r} (e.g. 30s, 1m30s, 500ms)")
    return sign * sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """Seconds -> Go's ``time.Duration.String()`` (``90`` -> ``1m30s``), the form compose prints."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1e3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1e6)}ms"
    h, rest = divmod(ns, 3_600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    sec = _trim(rest / 1e9)
    if h:
        return f"{sign}{h}h{m}m{sec}s"
    if m:
        return f"{sign}{m}m{sec}s"
    return f"{sign}{sec}s"


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


def parse_bytes(value: Any) -> int:
    """A size as docker's ``RAMInBytes`` reads it (``512m``, ``1g``, ``1.5GiB``, ``1024``; binary
    multiples) -> bytes.  ``-1`` (unlimited swap) is kept.  Raises ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")  # noqa: TRY004 - callers catch ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    s = str(value).strip()
    if s == "-1":
        return -1
    m = _BYTES.fullmatch(s)
    if m is None:
        raise ValueError(f"invalid size {value!r} (e.g. 512m, 1g, 1073741824)")
    return int(float(m.group(1)) * _BYTE_UNITS[(m.group(2) or "").lower()])


def parse_bool(value: Any) -> bool:
    """YAML booleans, and the strings interpolation leaves (``"true"``, ``"0"``, ``"yes"``...)."""
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("true", "1", "yes", "y", "on"):
        return True
    if s in ("false", "0", "no", "n", "off", ""):
        return False
    raise ValueError(f"invalid boolean {value!r}")


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"invalid integer {value!r}")  # noqa: TRY004 - callers catch ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"invalid integer {value!r}") from None


# --- ports -----------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class PortConfig:
    """One published or exposed container port (compose's long syntax).

    ``published`` is a string: ``""`` (an ephemeral host port), ``"8080"``, or a range ``"8000-8010"``
    to allocate from."""

    target: int
    published: str = ""
    host_ip: str = ""
    protocol: str = "tcp"
    mode: str = "ingress"
    name: str = ""
    app_protocol: str = ""

    def key(self) -> tuple[str, str, int, str]:
        """What makes two entries the same port when files are merged."""
        return (self.host_ip or "0.0.0.0", self.published, self.target, self.protocol)


def _port_range(text: str, what: str, lowest: int) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
    if m is None:
        raise ValueError(f"invalid {what}: {text}")
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else start
    if not (lowest <= start <= 65535 and lowest <= end <= 65535) or end < start:
        raise ValueError(f"invalid {what}: {text}")
    return start, end


def parse_port(spec: str | int) -> list[PortConfig]:
    """The short syntax (docker's ``-p``): ``80``, ``8080:80``, ``127.0.0.1:8080:80``,
    ``[::1]::80``, ``9090-9091:8080-8081``, ``8000-8010:80``, ``53:53/udp``.

    A container range gives one entry per port.  Raises ``ValueError`` in docker's words."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = str(spec)
    raw, _, proto = str(spec).strip().partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOCOLS:
        raise ValueError(f"invalid proto: {proto}")
    parts = raw.split(":")
    if len(parts) == 1:
        ip, host, container = "", "", parts[0]
    elif len(parts) == 2:
        ip, host, container = "", parts[0], parts[1]
    else:
        ip, host, container = ":".join(parts[:-2]), parts[-2], parts[-1]
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"invalid IP address: {ip}") from None
    if not container:
        raise ValueError(f"no port specified: {spec}")
    c_start, c_end = _port_range(container, "containerPort", 1)
    h_start = h_end = 0
    if host:
        h_start, h_end = _port_range(host, "hostPort", 0)
        if (c_end - c_start) != (h_end - h_start) and c_end != c_start:
            raise ValueError(f"invalid ranges specified for container and host Ports: {container} and {host}")
    out = []
    for i in range(c_end - c_start + 1):
        if not host:
            published = ""
        elif c_start == c_end and h_start != h_end:
            published = f"{h_start}-{h_end}"  # one container port, a host range to pick from
        else:
            published = str(h_start + i)
        out.append(PortConfig(target=c_start + i, published=published, host_ip=ip, protocol=proto))
    return out


# --- volumes ---------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class BindOptions:
    propagation: str | None = None
    create_host_path: bool = False
    selinux: str | None = None
    recursive: str | None = None


@dataclass(kw_only=True)
class VolumeOptions:
    nocopy: bool = False
    subpath: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class TmpfsOptions:
    size: int | None = None
    mode: int | None = None


@dataclass(kw_only=True)
class VolumeMount:
    """A service mount (compose's long syntax).  ``type`` is ``volume`` (``source`` = the key of a
    top-level volume, or ``""`` for an anonymous one), ``bind`` (``source`` = an absolute host path)
    or ``tmpfs``."""

    type: str
    target: str
    source: str = ""
    read_only: bool = False
    consistency: str | None = None
    bind: BindOptions | None = None
    volume: VolumeOptions | None = None
    tmpfs: TmpfsOptions | None = None


def is_host_path(source: str) -> bool:
    """Compose's rule for the short syntax: a source starting with ``.``, ``/`` or ``~`` is a path
    (a bind mount); anything else names a volume."""
    return source.startswith((".", "/", "~"))


def parse_volume(spec: str) -> VolumeMount:
    """The short syntax ``[SOURCE:]TARGET[:MODE]``; MODE is a comma list of ``ro``/``rw``,
    ``nocopy``, ``z``/``Z``, a propagation and a consistency.

    The source is returned as written (the loader makes paths absolute).  A short-syntax bind
    creates a missing host directory (``bind.create_host_path``), as docker compose does.
    Raises ``ValueError``."""
    if not spec:
        raise ValueError("invalid empty volume spec")
    parts = spec.split(":")
    if any(p == "" for p in parts):
        raise ValueError(f"invalid spec: {spec}: empty section between colons")
    if len(parts) > 3:
        raise ValueError(f"invalid spec: {spec}: too many colons")
    source, mode = "", ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        source, target = parts
    else:
        source, target, mode = parts
    if not target.startswith("/"):
        raise ValueError(f"invalid spec: {spec}: the mount target {target!r} must be an absolute path")
    mount = VolumeMount(type="volume", target=target, source=source)
    if source and is_host_path(source):
        mount.type = "bind"
        mount.bind = BindOptions(create_host_path=True)
    for option in filter(None, mode.split(",")):
        if option in ("ro", "rw"):
            mount.read_only = option == "ro"
        elif option == "nocopy":
            if mount.type != "volume":
                raise ValueError(f"invalid spec: {spec}: nocopy applies to volumes only")
            mount.volume = VolumeOptions(nocopy=True)
        elif option in ("z", "Z") or option in PROPAGATIONS:
            if mount.type != "bind":
                raise ValueError(f"invalid spec: {spec}: {option} applies to bind mounts only")
            assert mount.bind is not None
            if option in PROPAGATIONS:
                mount.bind.propagation = option
            else:
                mount.bind.selinux = option
        elif option in CONSISTENCIES:
            mount.consistency = option
        else:
            raise ValueError(f"invalid spec: {spec}: unknown mode {option!r}")
    return mount


# --- the rest of a service -------------------------------------------------------------------------

@dataclass(kw_only=True)
class BuildConfig:
    context: str
    dockerfile: str = "Dockerfile"
    dockerfile_inline: str | None = None
    args: dict[str, str | None] = field(default_factory=dict)
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    cache_from: list[str] = field(default_factory=list)
    cache_to: list[str] = field(default_factory=list)
    network: str | None = None
    tags: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    no_cache: bool = False
    pull: bool = False
    shm_size: int | None = None
    extra_hosts: list[str] = field(default_factory=list)
    additional_contexts: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class ServiceNetwork:
    """A service's attachment to a network, by the network's key in ``Project.networks``."""

    aliases: list[str] = field(default_factory=list)
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    link_local_ips: list[str] = field(default_factory=list)
    mac_address: str | None = None
    priority: int | None = None
    gw_priority: int | None = None
    interface_name: str | None = None
    driver_opts: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class Dependency:
    condition: str = "service_started"
    restart: bool = False
    required: bool = True


@dataclass(kw_only=True)
class Healthcheck:
    """Docker's health check: ``test`` in the Engine API's list form (``["CMD", ...]``,
    ``["CMD-SHELL", "..."]``, or ``["NONE"]`` when ``disable`` is set); durations in seconds."""

    test: list[str] = field(default_factory=list)
    interval: float | None = None
    timeout: float | None = None
    start_period: float | None = None
    start_interval: float | None = None
    retries: int | None = None
    disable: bool = False


@dataclass(kw_only=True)
class ResourceSpec:
    cpus: float | None = None
    memory: int | None = None  # bytes
    pids: int | None = None


@dataclass(kw_only=True)
class RestartPolicy:
    condition: str | None = None
    delay: float | None = None
    max_attempts: int | None = None
    window: float | None = None


@dataclass(kw_only=True)
class DeployConfig:
    mode: str | None = None
    replicas: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    limits: ResourceSpec | None = None
    reservations: ResourceSpec | None = None
    restart_policy: RestartPolicy | None = None


@dataclass(kw_only=True)
class Ulimit:
    soft: int
    hard: int


@dataclass(kw_only=True)
class Logging:
    driver: str | None = None
    options: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class EnvFile:
    """An ``env_file`` entry, kept after its values were folded into ``environment`` (``kube
    generate`` turns env files into ConfigMaps)."""

    path: str
    required: bool = True
    format: str | None = None


@dataclass(kw_only=True)
class FileReference:
    """A service's use of a top-level secret or config."""

    source: str
    target: str | None = None
    uid: str | None = None
    gid: str | None = None
    mode: int | None = None


@dataclass(kw_only=True)
class WatchRule:
    """A ``develop.watch`` rule for ``compose watch``: ``path`` is absolute on the host."""

    path: str
    action: str
    target: str | None = None
    ignore: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    initial_sync: bool = False


@dataclass(kw_only=True)
class Service:
    name: str
    image: str | None = None
    build: BuildConfig | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str | None] = field(default_factory=dict)
    env_file: list[EnvFile] = field(default_factory=list)
    ports: list[PortConfig] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)
    volumes: list[VolumeMount] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    networks: dict[str, ServiceNetwork] = field(default_factory=dict)
    network_mode: str | None = None
    depends_on: dict[str, Dependency] = field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    restart: str | None = None
    deploy: DeployConfig | None = None
    scale: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    user: str | None = None
    working_dir: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    container_name: str | None = None
    stop_signal: str | None = None
    stop_grace_period: float | None = None  # seconds
    init: bool | None = None
    read_only: bool = False
    privileged: bool = False
    tty: bool = False
    stdin_open: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opt: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)  # "host:ip", the Engine API's form
    group_add: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)  # "host[:container[:perms]]"
    links: list[str] = field(default_factory=list)
    external_links: list[str] = field(default_factory=list)
    volumes_from: list[str] = field(default_factory=list)
    ulimits: dict[str, Ulimit] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    shm_size: int | None = None
    mem_limit: int | None = None
    mem_reservation: int | None = None
    memswap_limit: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset: str | None = None
    pids_limit: int | None = None
    oom_score_adj: int | None = None
    pull_policy: str | None = None
    platform: str | None = None
    ipc: str | None = None
    pid: str | None = None
    uts: str | None = None
    userns_mode: str | None = None
    cgroup: str | None = None
    cgroup_parent: str | None = None
    runtime: str | None = None
    mac_address: str | None = None
    logging: Logging | None = None
    secrets: list[FileReference] = field(default_factory=list)
    configs: list[FileReference] = field(default_factory=list)
    watch: list[WatchRule] = field(default_factory=list)  # develop.watch
    extensions: dict[str, Any] = field(default_factory=dict)  # x-* keys, verbatim
    extras: dict[str, Any] = field(default_factory=dict)  # schema-valid keys not modelled here

    @property
    def replicas(self) -> int:
        """How many containers ``up`` runs: ``scale``, else ``deploy.replicas``, else 1."""
        if self.scale is not None:
            return self.scale
        if self.deploy is not None and self.deploy.replicas is not None:
            return self.deploy.replicas
        return 1

    def config_hash(self) -> str:
        """A stable sha256 (hex) of the container-shaping configuration, for the
        ``com.docker.compose.config-hash`` label: equal hashes mean the container can be kept."""
        data = dataclasses.asdict(self)
        for key in ("build", "pull_policy", "scale", "depends_on", "profiles", "watch", "env_file"):
            data.pop(key, None)
        if data.get("deploy"):
            data["deploy"]["replicas"] = None
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


# --- top-level resources ---------------------------------------------------------------------------

@dataclass(kw_only=True)
class IpamPool:
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class Ipam:
    driver: str | None = None
    config: list[IpamPool] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class Network:
    """A top-level network.  ``name`` is the engine's name: ``<project>_<key>`` unless set, the key
    itself for an external network."""

    name: str
    driver: str | None = None
    driver_opts: dict[str, str] = field(default_factory=dict)
    external: bool = False
    internal: bool = False
    attachable: bool = False
    enable_ipv4: bool | None = None
    enable_ipv6: bool | None = None
    ipam: Ipam | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class Volume:
    """A top-level volume; ``name`` as for :class:`Network`."""

    name: str
    driver: str | None = None
    driver_opts: dict[str, str] = field(default_factory=dict)
    external: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class FileObject:
    """A top-level secret or config: from a host ``file`` (absolute), an ``environment`` variable,
    inline ``content`` (configs only), or ``external``."""

    name: str
    file: str | None = None
    environment: str | None = None
    content: str | None = None
    external: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class Project:
    name: str
    working_dir: str
    services: dict[str, Service] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    secrets: dict[str, FileObject] = field(default_factory=dict)
    configs: dict[str, FileObject] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # shell environment over .env
    files: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)  # the active ones
    disabled_services: dict[str, Service] = field(default_factory=dict)  # not in an active profile
    extensions: dict[str, Any] = field(default_factory=dict)  # top-level x-* keys
    warnings: list[str] = field(default_factory=list)  # e.g. unset variables, obsolete `version`

    def service(self, name: str) -> Service:
        """An enabled service; :class:`NotFound` ("no such service: x", docker compose's words) for an
        unknown name, :class:`InvalidArgument` for one outside the active profiles."""
        try:
            return self.services[name]
        except KeyError:
            if name in self.disabled_services:
                raise InvalidArgument(f"service {name!r} is not enabled by the active profiles") from None
            raise NotFound(f"no such service: {name}") from None

    def dependency_order(self, names: list[str] | None = None) -> list[str]:
        """Services (all, or ``names`` and what they depend on) so that each comes after its
        dependencies; ties in name order, so the order is stable.  ``down`` uses the reverse."""
        wanted = list(names) if names is not None else sorted(self.services)
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for dep in sorted(self.service(name).depends_on):
                if dep in self.services:
                    visit(dep)
            order.append(name)

        for name in wanted:
            visit(name)
        return order

    def iter_services(self) -> Iterator[Service]:
        return iter(self.services[n] for n in sorted(self.services))
