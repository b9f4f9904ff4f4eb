"""What ``compose up`` must do to one service: the pure part of converging (compose's convergence.go).

Given the service's wanted state (replicas, config hash, image id) and the containers the project
already has for it, :func:`plan_service` returns one action per container number::

    existing, same hash and image, running          keep
    existing, same hash and image, not running      start
    existing, hash or image changed (or --force)    recreate (stop, rename aside, create, remove old, start)
    existing, number > replicas                     remove (scale down: the highest numbers go)
    missing number <= replicas                      create (the lowest free numbers)

``--no-recreate`` keeps changed containers (starting them if stopped).

:func:`check_ports` refuses, before anything is created, a scale that cannot work: a fixed host
port published by more than one replica is Docker's "port is already allocated".  A host port
range (``8000-8010:80``) or a container-only port (``80``) gives each replica its own free port.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.compose.model import Service
from dockyard.errors import InvalidArgument


@dataclass(frozen=True)
class Existing:
    """A container the project has for a service, as the planner sees it."""

    id: str
    name: str
    number: int
    config_hash: str
    image_id: str
    state: str                      # created | running | paused | restarting | exited | dead


@dataclass(frozen=True)
class Action:
    kind: str                       # keep | start | recreate | remove | create
    number: int
    container: Existing | None = None

    def describe(self) -> str:
        return f"{self.kind} #{self.number}" + (f" ({self.container.name})" if self.container else "")


@dataclass
class ServicePlan:
    service: str
    actions: list[Action] = field(default_factory=list)

    def of(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]

    @property
    def changed(self) -> bool:
        return any(a.kind != "keep" for a in self.actions)


RUNNING = ("running", "paused", "restarting")


def plan_service(service: str, *, replicas: int, config_hash: str, image_id: str, existing: list[Existing],
                 force_recreate: bool = False, no_recreate: bool = False) -> ServicePlan:
    """The actions that bring ``existing`` to ``replicas`` containers of this configuration.

    Containers numbered alike (a leftover of an interrupted recreate) keep the one that is running
    or newest-by-id-order and remove the rest."""
    if replicas < 0:
        raise InvalidArgument(f"invalid scale {replicas} for service {service}: must be 0 or more")
    plan = ServicePlan(service)
    by_number: dict[int, Existing] = {}
    for c in sorted(existing, key=lambda c: (c.number, c.state not in RUNNING, c.id)):
        if c.number in by_number or c.number < 1:
            plan.actions.append(Action("remove", c.number, c))
        else:
            by_number[c.number] = c
    kept = sorted(by_number)[:replicas]
    for number in sorted(by_number):
        c = by_number[number]
        if number not in kept:
            plan.actions.append(Action("remove", number, c))
            continue
        outdated = c.config_hash != config_hash or (image_id and c.image_id and c.image_id != image_id)
        if force_recreate or (outdated and not no_recreate):
            plan.actions.append(Action("recreate", number, c))
        elif c.state in RUNNING:
            plan.actions.append(Action("keep", number, c))
        else:
            plan.actions.append(Action("start", number, c))
    number = 0
    for _ in range(replicas - len(kept)):
        number += 1
        while number in by_number:
            number += 1
        plan.actions.append(Action("create", number))
    order = {"remove": 0, "keep": 1, "start": 2, "recreate": 2, "create": 3}
    plan.actions.sort(key=lambda a: (order[a.kind], a.number))
    return plan


def check_ports(service: Service, replicas: int) -> None:
    """Raise InvalidArgument when ``replicas`` containers cannot all publish the service's ports."""
    if replicas <= 1:
        return
    for p in service.ports:
        if not p.published or "-" in p.published:
            if "-" in p.published:
                lo, hi = (int(x) for x in p.published.split("-", 1))
                if hi - lo + 1 < replicas:
                    raise InvalidArgument(
                        f"service {service.name}: the host port range {p.published} has {hi - lo + 1} ports for "
                        f"{replicas} replicas")
            continue
        ip = p.host_ip or "0.0.0.0"
        raise InvalidArgument(
            f"service {service.name} publishes the fixed host port {p.published} and cannot run {replicas} "
            f"replicas: Bind for {ip}:{p.published} failed: port is already allocated (publish a range, e.g. "
            f"\"{p.published}-{int(p.published) + replicas - 1}:{p.target}\", or only the container port)")


def parse_scale(values: list[str] | tuple[str, ...], known: set[str]) -> dict[str, int]:
    """``--scale SERVICE=NUM`` values."""
    out: dict[str, int] = {}
    for v in values:
        name, eq, num = v.partition("=")
        if not eq or not num.strip().isdigit():
            raise InvalidArgument(f"invalid --scale value {v!r}: expected SERVICE=NUM")
        if name not in known:
            raise InvalidArgument(f"no such service: {name}")
        out[name] = int(num)
    return out


def orphans(containers: list[tuple[str, str]], services: set[str]) -> list[str]:
    """Names of ``(name, service label)`` containers whose service the project no longer has."""
    return [name for name, svc in containers if svc not in services]
