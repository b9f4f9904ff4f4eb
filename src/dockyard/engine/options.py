"""Options and reports of the engine facade: what the CLI, the API server and compose pass in and get
back.  Plain dataclasses; no wire formats (the faces render them as tables or Docker's JSON).  The
image side's are in :mod:`dockyard.engine.image_options`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Filters:
    """Docker's ``--filter key=value`` pairs, several values per key (OR within a key, AND across)."""

    values: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, items: list[str] | tuple[str, ...]) -> Filters:
        from dockyard.errors import InvalidArgument

        out: dict[str, list[str]] = {}
        for item in items:
            if "=" not in item:
                raise InvalidArgument("bad format of filter (expected name=value)")
            k, v = item.split("=", 1)
            out.setdefault(k.strip().lower(), []).append(v)
        return cls(out)

    def check(self, allowed: set[str]) -> None:
        from dockyard.errors import InvalidArgument

        for k in self.values:
            if k not in allowed:
                raise InvalidArgument(f"invalid filter '{k}'")

    def get(self, key: str) -> list[str]:
        return self.values.get(key, [])

    def __contains__(self, key: str) -> bool:
        return key in self.values


def _resources():
    from dockyard.containers.model import Resources

    return Resources()


def _restart():
    from dockyard.containers.model import RestartPolicy

    return RestartPolicy()


@dataclass
class ContainerCreateOptions:
    """``docker create``/``run`` flags, already parsed into values (sizes in bytes, durations in s)."""

    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: str | list[str] | None = None          # a list: the Engine API's exec-form Entrypoint
    name: str = ""
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str | None = None
    hostname: str = ""
    domainname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    interactive: bool = False
    attach: bool = False
    init: bool = False
    read_only: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    shm_size: int | None = None
    ulimits: list = field(default_factory=list)
    resources: object = field(default_factory=_resources)
    restart_policy: object = field(default_factory=_restart)
    stop_signal: str = ""
    stop_timeout: int | None = None
    health_cmd: str = ""
    health_interval: float | None = None
    health_timeout: float | None = None
    health_start_period: float | None = None
    health_start_interval: float | None = None
    health_retries: int | None = None
    no_healthcheck: bool = False
    auto_remove: bool = False
    cidfile: str = ""
    add_hosts: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    network: str = ""
    network_aliases: list[str] = field(default_factory=list)
    ip: str = ""
    mac_address: str = ""
    publish: list[str] = field(default_factory=list)        # -p values, as typed
    publish_all: bool = False
    expose: list[str] = field(default_factory=list)
    mounts: list = field(default_factory=list)          # MountSpec values from -v and --mount, in order
    volume_driver: str = ""                             # --volume-driver: for new volumes of -v


_DETACH_KEYS = {f"ctrl-{c}": bytes([i + 1]) for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
_DETACH_KEYS.update({"ctrl-@": b"\x00", "ctrl-[": b"\x1b", "ctrl-\\": b"\x1c", "ctrl-]": b"\x1d",
                     "ctrl-^": b"\x1e", "ctrl-_": b"\x1f"})


def parse_detach_keys(spec: str | None) -> bytes:
    """``--detach-keys`` / the API's ``detachKeys`` ("ctrl-p,ctrl-q" when not given) as bytes."""
    from dockyard.errors import InvalidArgument

    out = b""
    for part in (spec or "ctrl-p,ctrl-q").split(","):
        part = part.strip().lower()
        if part in _DETACH_KEYS:
            out += _DETACH_KEYS[part]
        elif len(part) == 1:
            out += part.encode()
        else:
            raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return out
