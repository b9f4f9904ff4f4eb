"""What a container is, as typed values: the spec it was created with and the state it is in.

``ContainerSpec`` holds everything ``docker create``/``run`` decided (image defaults merged with the
user's flags); the runtime turns it into an OCI bundle.  ``ContainerState`` is what the monitor and
the runtime report.  Both are stored as JSON in the metadata DB (``containers`` table) and rendered
by the faces in Docker's inspect shape; durations are seconds (floats), sizes bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class HealthSpec:
    """A health check: ``test`` is Docker's form (["CMD", ...], ["CMD-SHELL", "cmd"] or ["NONE"])."""

    test: list[str]
    interval: float = 30.0
    timeout: float = 30.0
    start_period: float = 0.0
    start_interval: float = 5.0
    retries: int = 3


@dataclass
class Resources:
    """Limits of the container's cgroup (docker run --memory, --cpus, ...; None: not set)."""

    memory: int | None = None            # bytes (--memory)
    memory_swap: int | None = None       # bytes of memory+swap (--memory-swap); -1 unlimited
    memory_reservation: int | None = None
    nano_cpus: int | None = None         # --cpus * 1e9
    cpu_shares: int | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None        # <= 0: unlimited
    oom_kill_disable: bool = False


@dataclass
class Ulimit:
    """One --ulimit: an rlimit's soft and hard values (never above this host's hard limit)."""

    name: str                            # "nofile", "nproc", ... (without RLIMIT_)
    soft: int
    hard: int


@dataclass
class MountSpec:
    """A mount in the container: bind (source = host path), tmpfs, or volume (source = volume name,
    resolved to a host path before the bundle is written)."""

    type: str                            # bind | tmpfs | volume
    target: str
    source: str = ""
    readonly: bool = False
    options: list[str] = field(default_factory=list)   # e.g. ["size=65536k", "mode=1777"], propagation
    name: str = ""                       # volume name (volume mounts)
    # Volume mounts: how a missing volume is created, and what the container owns.
    driver: str = ""                     # volume driver ("" = the volume's own, or local for a new one)
    driver_opts: dict[str, str] = field(default_factory=dict)   # --mount volume-opt
    labels: dict[str, str] = field(default_factory=dict)        # --mount volume-label
    nocopy: bool = False                 # do not fill a new empty volume with the image's content
    anonymous: bool = False              # made for this container: removed by `rm -v` and `run --rm`
    # How the user said it (inspect shows it back): -v's text and mode; "" for --mount.
    raw: str = ""                        # the -v/--volume argument (HostConfig.Binds)
    mode: str = ""                       # its mode part ("ro,z")
    from_image: bool = False             # an anonymous volume for the image's VOLUME
    create_source: bool = False          # -v bind: a missing host directory is created (Docker's way)


@dataclass
class RestartPolicy:
    """--restart: what happens when the container's process exits (Docker's HostConfig.RestartPolicy)."""

    name: str = "no"                     # no | always | unless-stopped | on-failure
    maximum_retry_count: int = 0


@dataclass
class ContainerSpec:
    """Everything a container is made from, fixed at create (the record's JSON ``spec`` column);
    start builds the OCI runtime config from it."""

    id: str
    name: str                            # without the leading "/"
    image_id: str
    image_name: str                      # as the user gave it ("busybox")
    args: list[str]                      # the process: entrypoint + cmd, resolved
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    stop_signal: str = "SIGTERM"
    stop_timeout: int | None = None      # seconds; None = 10
    init: bool = False
    read_only: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    no_new_privileges: bool = False
    tmpfs: dict[str, str] = field(default_factory=dict)     # path -> options ("size=64m,mode=1777")
    shm_size: int = 64 * 1024 * 1024
    ulimits: list[Ulimit] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    healthcheck: HealthSpec | None = None
    mounts: list[MountSpec] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)    # "name:ip"
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    network_mode: str = "bridge"                             # bridge | host | none | container:<id> | a network
    network_aliases: list[str] = field(default_factory=list)   # --network-alias (user networks)
    ipv4_address: str = ""                                     # --ip
    mac_address: str = ""                                      # --mac-address
    port_bindings: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # HostConfig.PortBindings
    publish_all: bool = False                                  # -P
    exposed_ports: dict[str, dict] = field(default_factory=dict)
    volumes: dict[str, dict] = field(default_factory=dict)  # image VOLUME paths
    auto_remove: bool = False
    cidfile: str = ""
    runtime: str = "runc"
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContainerSpec:
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        kw["resources"] = Resources(**(d.get("resources") or {}))
        kw["restart_policy"] = RestartPolicy(**(d.get("restart_policy") or {}))
        kw["ulimits"] = [Ulimit(**u) for u in d.get("ulimits") or []]
        kw["mounts"] = [MountSpec(**m) for m in d.get("mounts") or []]
        kw["healthcheck"] = HealthSpec(**d["healthcheck"]) if d.get("healthcheck") else None
        return cls(**kw)
