"""Converge a compose project through the engine facade: ``up``, ``down`` and the lifecycle commands.

Everything the project makes carries docker compose's labels (see :mod:`dockyard.compose.convert`),
so what exists is found again by label, never remembered: ``up`` twice changes nothing, ``down``
after a partial ``up`` (a build that failed, an image that could not be pulled) still finds the
networks, volumes and containers that were made.

``up``, in order::

    services: the named ones (all without names) and, unless --no-deps, what they depend on
    check:    every --scale against the published ports (before anything is made)
    networks: <project>_default and the declared ones (labels com.docker.compose.project/.network);
              external ones must exist
    volumes:  <project>_<name> with driver and driver_opts (external ones must exist)
    images:   build (--build, or missing and `build:` given), else pull when missing (or --pull always)
    per service, in dependency order:
        wait for its dependencies' conditions (service_started / service_healthy /
        service_completed_successfully) unless --no-deps
        plan (plan.py): keep, start, recreate, remove, create; do it; start what should run
    orphans:  warn, or remove with --remove-orphans
    --wait:   every container running, and healthy when it has a health check; the failure names
              the service and shows the last health-check output

Services reach each other by name: every container joins its networks with the service name as an
alias, so aardvark-dns answers the name with the addresses of all replicas.

Errors are DockyardError kinds; a failed step leaves what was made (``down`` removes it).
"""

from __future__ import annotations

import builtins
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dockyard.compose import convert as cv
from dockyard.compose.images import ImageSteps
from dockyard.compose.model import Project, Service
from dockyard.compose.plan import Existing, check_ports, plan_service
from dockyard.compose.teardown import DownOptions, Teardown, parallel
from dockyard.compose.waits import Waits
from dockyard.containers.model import MountSpec
from dockyard.containers.store import ACTIVE, ContainerRecord
from dockyard.engine.options import Filters
from dockyard.errors import DockyardError, FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.engine import Engine

__all__ = ["ComposeProject", "DownOptions", "Reporter", "RunOptions", "UpOptions"]


class Reporter:
    """Where converge progress goes; the CLI prints it as compose does (`` Container x  Started``)."""

    def status(self, kind: str, name: str, text: str) -> None:  # noqa: B027 - a no-op default
        pass

    def warn(self, text: str) -> None:  # noqa: B027
        pass

    def build_event(self, service: str, event: Any) -> None:  # noqa: B027
        pass

    def pull_event(self, service: str, event: Any) -> None:  # noqa: B027
        pass


@dataclass
class UpOptions:
    services: list[str] = field(default_factory=list)
    build: bool = False
    no_build: bool = False
    pull: str = ""                       # "" (pull_policy) | always | missing | never | build
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    no_start: bool = False
    remove_orphans: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    wait: bool = False
    wait_timeout: float | None = None
    timeout: int | None = None           # stop timeout for recreated/removed containers


@dataclass
class RunOptions:
    service: str
    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str = ""
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    rm: bool = False
    no_deps: bool = False
    service_ports: bool = False
    publish: list[str] = field(default_factory=list)
    tty: bool = False
    interactive: bool = False
    attach: bool = True
    build: bool = False


def _poll(interval: float = 0.25) -> None:
    time.sleep(interval)


class ComposeProject(ImageSteps, Waits, Teardown):
    def __init__(self, engine: Engine, project: Project, reporter: Reporter | None = None,
                 sleep: Callable[[], None] = _poll) -> None:
        self.engine = engine
        self.project = project
        self.report = reporter or Reporter()
        self.sleep = sleep

    # -- what exists -------------------------------------------------------------------------------
    def containers(self, services: builtins.list[str] | None = None, *, stopped: bool = True,
                   oneoff: bool | None = False) -> builtins.list[ContainerRecord]:
        """The project's containers (by label), ordered by service and number."""
        recs = self.engine.containers.list(all_=stopped, filters=Filters({"label": [f"{cv.PROJECT}={self.project.name}"]}))
        out = []
        for r in recs:
            labels = r.spec.labels
            if services is not None and labels.get(cv.SERVICE) not in services:
                continue
            if oneoff is not None and (labels.get(cv.ONEOFF) == "True") != oneoff:
                continue
            out.append(r)
        return sorted(out, key=lambda r: (r.spec.labels.get(cv.SERVICE, ""), _number(r), r.name))

    def container(self, service: str, index: int = 1) -> ContainerRecord:
        """Replica ``index`` of a service (``exec --index``); NotFound in compose's words."""
        self.project.service(service)
        for r in self.containers([service], stopped=True):
            if _number(r) == index:
                return r
        raise NotFound(f"service {service!r} is not running" if index == 1 else
                       f"service {service!r} has no container with index {index}")

    def _targets(self, names: builtins.list[str], no_deps: bool) -> builtins.list[str]:
        for n in names:
            self.project.service(n)
        if no_deps and names:
            order = self.project.dependency_order()
            return [n for n in order if n in names]
        return self.project.dependency_order(names or None)

    # -- networks and volumes ----------------------------------------------------------------------
    def ensure_networks(self, services: builtins.list[str]) -> None:
        from dockyard.engine.networks import NetworkCreateOptions

        wanted = sorted({k for s in services for k in self.project.services[s].networks})
        for key in wanted:
            net = self.project.networks.get(key)
            if net is None:
                raise InvalidArgument(f"service uses undefined network {key}")
            try:
                existing = self.engine.networks.get(net.name)
            except NotFound:
                existing = None
            if net.external:
                if existing is None:
                    raise NotFound(f"network {net.name} declared as external, but could not be found")
                continue
            if existing is not None:
                if existing.labels.get(cv.PROJECT) != self.project.name:
                    self.report.warn(f"a network with name {net.name} exists but was not created by compose.\n"
                                     "Set `external: true` to use an existing network")
                continue
            pool = net.ipam.config[0] if net.ipam and net.ipam.config else None
            self.report.status("Network", net.name, "Creating")
            self.engine.networks.create(NetworkCreateOptions(
                name=net.name, driver=net.driver or "bridge", subnet=(pool.subnet or "") if pool else "",
                gateway=(pool.gateway or "") if pool else "", ip_range=(pool.ip_range or "") if pool else "",
                internal=net.internal, options=dict(net.driver_opts),
                labels={**net.labels, cv.PROJECT: self.project.name, cv.NETWORK: key,
                        cv.VERSION: cv.COMPOSE_VERSION}))
            self.report.status("Network", net.name, "Created")

    def ensure_volumes(self, services: builtins.list[str]) -> None:
        from dockyard.engine.volumes import VolumeCreateOptions

        wanted = sorted({m.source for s in services for m in self.project.services[s].volumes
                         if m.type == "volume" and m.source})
        for key in wanted:
            vol = self.project.volumes.get(key)
            if vol is None:
                raise InvalidArgument(f"service uses undefined volume {key}")
            try:
                existing = self.engine.volumes.inspect(vol.name)
            except NotFound:
                existing = None
            if vol.external:
                if existing is None:
                    raise NotFound(f"external volume \"{vol.name}\" not found")
                continue
            if existing is not None:
                if existing.labels.get(cv.PROJECT) != self.project.name:
                    self.report.warn(f"volume \"{vol.name}\" already exists but was not created by Docker Compose. "
                                     "Use `external: true` to use an existing volume")
                continue
            self.report.status("Volume", vol.name, "Creating")
            self.engine.volumes.create(VolumeCreateOptions(
                name=vol.name, driver=vol.driver or "local", driver_opts=dict(vol.driver_opts),
                labels={**vol.labels, cv.PROJECT: self.project.name, cv.VOLUME: key,
                        cv.VERSION: cv.COMPOSE_VERSION}))
            self.report.status("Volume", vol.name, "Created")

    # -- up ----------------------------------------------------------------------------------------
    def up(self, opts: UpOptions) -> builtins.list[str]:
        """Converge; returns the names of the services brought up (in dependency order)."""
        targets = self._targets(list(opts.services), opts.no_deps)
        for name in opts.scale:
            self.project.service(name)
        replicas = {n: opts.scale.get(n, self.project.services[n].replicas) for n in targets}
        for n in targets:
            check_ports(self.project.services[n], replicas[n])
        self.ensure_networks(targets)
        self.ensure_volumes(targets)
        images = self.ensure_images(targets, build=opts.build, no_build=opts.no_build, pull=opts.pull)
        recreated: set[str] = set()
        for name in targets:
            s = self.project.services[name]
            if not opts.no_deps and not opts.no_start and replicas[name] > 0:
                self._await_dependencies(s, targets)
            changed = self._converge(s, replicas[name], images[name], opts)
            deps_restart = [d for d, dep in s.depends_on.items() if dep.restart and d in recreated]
            if changed:
                recreated.add(name)
            elif deps_restart and not opts.no_start:
                for r in self.containers([name], stopped=False):
                    self.report.status("Container", r.name, "Restarting")
                    self.engine.containers.restart(r.id, opts.timeout)
                    self.report.status("Container", r.name, "Started")
        self._orphans(opts.remove_orphans, opts.timeout)
        if opts.wait and not opts.no_start:
            self.wait_ready(targets, timeout=opts.wait_timeout)
        return targets

    def _converge(self, s: Service, replicas: int, image_id: str, opts: UpOptions) -> bool:
        existing = [Existing(r.id, r.name, _number(r), r.spec.labels.get(cv.CONFIG_HASH, ""),
                             r.spec.labels.get(cv.IMAGE) or r.image_id, r.state)
                    for r in self.containers([s.name])]
        plan = plan_service(s.name, replicas=replicas, config_hash=s.config_hash(), image_id=image_id,
                            existing=existing, force_recreate=opts.force_recreate, no_recreate=opts.no_recreate)
        to_start: builtins.list[tuple[str, str]] = []
        parallel(lambda c: self._remove(c.id, c.name, opts.timeout),
                  [a.container for a in plan.of("remove") if a.container is not None])
        for a in plan.actions:
            c = a.container
            if a.kind == "keep" and c is not None:
                self.report.status("Container", c.name, "Running")
            elif a.kind == "start" and c is not None:
                to_start.append((c.id, c.name))
            elif a.kind == "recreate" and c is not None:
                rec = self._recreate(s, a.number, c, image_id, opts.timeout)
                to_start.append((rec.id, rec.name))
            elif a.kind == "create":
                rec = self.create(s, a.number, image_id)
                to_start.append((rec.id, rec.name))
        if not opts.no_start:
            for cid, name in to_start:
                self.report.status("Container", name, "Starting")
                self.engine.containers.start(cid)
                self.report.status("Container", name, "Started")
        return any(a.kind in ("recreate", "create") for a in plan.actions)

    def create(self, s: Service, number: int, image_id: str, carry: ContainerRecord | None = None,
               name: str = "") -> ContainerRecord:
        opts, extra = cv.create_options(self.project, s, number, image_id=image_id, name=name,
                                        network_mode=self._network_mode(s))
        if carry is not None:
            opts.mounts = _carry_anonymous(opts.mounts, carry)
        self.report.status("Container", opts.name, "Creating")
        rec = self.engine.containers.create(opts)
        try:
            for att in extra:
                self.engine.networks.connect(att.network, rec.id, aliases=att.aliases, ip=att.ip)
        except BaseException:
            self.engine.containers.remove(rec.id, force=True, volumes=carry is None)
            raise
        self.report.status("Container", opts.name, "Created")
        return rec

    def _recreate(self, s: Service, number: int, old: Existing, image_id: str, timeout: int | None) -> ContainerRecord:
        """compose's way: stop the old one, move it aside, create the new one (taking over its
        anonymous volumes), remove the old one.  A failed create puts the old one back."""
        self.report.status("Container", old.name, "Recreate")
        was_running = old.state in ACTIVE
        if was_running:
            self.engine.containers.stop(old.id, timeout)
        aside = f"{old.id[:12]}_{old.name}"
        self.engine.containers.rename(old.id, aside)
        old_rec = self.engine.containers.get(old.id)
        try:
            rec = self.create(s, number, image_id, carry=old_rec, name=old.name)
        except BaseException:
            self.engine.containers.rename(old.id, old.name)
            if was_running:
                try:
                    self.engine.containers.start(old.id)
                except DockyardError:
                    pass
            raise
        self.engine.containers.remove(old.id, force=True, volumes=False)
        self.report.status("Container", old.name, "Recreated")
        return rec

    def _remove(self, cid: str, name: str, timeout: int | None, *, volumes: bool = False) -> None:
        try:
            rec = self.engine.containers.get(cid)
        except NotFound:
            return
        if rec.state in ACTIVE:
            self.report.status("Container", name, "Stopping")
            self.engine.containers.stop(cid, timeout)
            self.report.status("Container", name, "Stopped")
        self.report.status("Container", name, "Removing")
        try:
            self.engine.containers.remove(cid, force=True, volumes=volumes)
        except NotFound:
            pass
        self.report.status("Container", name, "Removed")

    def _network_mode(self, s: Service) -> str | None:
        mode = s.network_mode
        if not mode:
            return None
        if mode.startswith("service:"):
            other = mode.split(":", 1)[1]
            running = self.containers([other], stopped=False)
            if not running:
                raise FailedPrecondition(f"service {s.name} uses network_mode service:{other}, which is not running")
            return f"container:{running[0].id}"
        return mode

    def _orphans(self, remove: bool, timeout: int | None) -> None:
        known = set(self.project.services) | set(self.project.disabled_services)
        orphans = [r for r in self.containers() if r.spec.labels.get(cv.SERVICE) not in known]
        if not orphans:
            return
        if remove:
            for r in orphans:
                self._remove(r.id, r.name, timeout)
            return
        self.report.warn(f"Found orphan containers ({', '.join(r.name for r in orphans)}) for this project. If you "
                         "removed or renamed this service in your compose file, you can run this command with the "
                         "--remove-orphans flag to clean it up.")

    # -- down and the lifecycle commands -------------------------------------------------------------
    def each(self, services: builtins.list[str] | None, verb: str, done: str,
             action: Callable[[ContainerRecord], Any], *, stopped: bool = True, reverse: bool = False) -> int:
        """Apply ``action`` to the services' containers, a dependency level at a time (what others
        depend on first, or last with ``reverse``), the containers of one level in parallel."""
        for n in services or []:
            self.project.service(n)
        recs = self.containers(services or None, stopped=stopped)

        def one(r: ContainerRecord) -> None:
            self.report.status("Container", r.name, verb)
            action(r)
            self.report.status("Container", r.name, done)

        for group in self._levels(recs, reverse=reverse):
            parallel(one, group)
        return len(recs)

    def start(self, services: builtins.list[str] | None = None) -> None:
        names = services or self.project.dependency_order()
        for name in self.project.dependency_order(names):
            if services and name not in services:
                continue
            self._await_dependencies(self.project.services[name], names)
            self.each([name], "Starting", "Started", lambda r: self.engine.containers.start(r.id))

    def stop(self, services: builtins.list[str] | None = None, timeout: int | None = None) -> None:
        self.each(services, "Stopping", "Stopped", lambda r: self.engine.containers.stop(r.id, timeout),
                  stopped=False, reverse=True)

    def restart(self, services: builtins.list[str] | None = None, timeout: int | None = None) -> None:
        self.each(services, "Restarting", "Started", lambda r: self.engine.containers.restart(r.id, timeout))

    def kill(self, services: builtins.list[str] | None = None, signal: str = "SIGKILL") -> None:
        self.each(services, "Killing", "Killed", lambda r: self.engine.containers.kill(r.id, signal),
                  stopped=False, reverse=True)

    def rm(self, services: builtins.list[str] | None = None, *, stop: bool = False, volumes: bool = False,
           timeout: int | None = None) -> builtins.list[str]:
        """``compose rm``: stopped containers (with ``-s`` the running ones are stopped first)."""
        if stop:
            self.stop(services, timeout)
        gone = []
        for r in self.containers(services or None, oneoff=None):
            if r.state in ACTIVE:
                continue
            self.report.status("Container", r.name, "Removing")
            self.engine.containers.remove(r.id, force=True, volumes=volumes)
            self.report.status("Container", r.name, "Removed")
            gone.append(r.name)
        return gone

    # -- run -----------------------------------------------------------------------------------------
    def run(self, opts: RunOptions) -> ContainerRecord:
        """Create the one-off container of ``compose run`` (the caller starts or attaches it)."""
        s = self.project.service(opts.service)
        if not opts.no_deps and s.depends_on:
            deps = [d for d in s.depends_on if d in self.project.services]
            if deps:
                self.up(UpOptions(services=deps))
                for d in deps:
                    self._await(d, s.depends_on[d])
        self.ensure_networks([s.name])
        self.ensure_volumes([s.name])
        image = self.ensure_images([s.name], build=opts.build)[s.name]
        name = opts.name or f"{self.project.name}-{s.name}-run-{secrets.token_hex(6)}"
        create, extra = cv.create_options(self.project, s, 1, image_id=image, oneoff=True, name=name,
                                          network_mode=self._network_mode(s), publish=opts.service_ports)
        create.publish += list(opts.publish)
        if opts.command:
            create.command = list(opts.command)
            if s.entrypoint is not None and opts.entrypoint is None:
                create.command = [*s.entrypoint[1:], *opts.command]
        if opts.entrypoint is not None:
            create.entrypoint = opts.entrypoint
            create.command = list(opts.command)
        keys = {e.split("=", 1)[0] for e in opts.env}
        create.env = [e for e in create.env if e.split("=", 1)[0] not in keys] + list(opts.env)
        if opts.user is not None:
            create.user = opts.user
        if opts.workdir:
            create.workdir = opts.workdir
        create.labels.update(opts.labels)
        create.labels[cv.NUMBER] = "1"
        create.tty, create.interactive, create.attach = opts.tty, opts.interactive, opts.attach
        create.auto_remove = opts.rm
        create.restart_policy = replace(create.restart_policy, name="no", maximum_retry_count=0)
        rec = self.engine.containers.create(create)
        try:
            for att in extra:
                self.engine.networks.connect(att.network, rec.id, aliases=att.aliases, ip=att.ip)
        except BaseException:
            self.engine.containers.remove(rec.id, force=True, volumes=True)
            raise
        return rec


def _number(r: ContainerRecord) -> int:
    try:
        return int(r.spec.labels.get(cv.NUMBER, "0"))
    except ValueError:
        return 0


def _carry_anonymous(mounts: builtins.list[MountSpec], old: ContainerRecord) -> builtins.list[MountSpec]:
    """Anonymous volumes of the container being replaced, taken over at the same paths (compose
    keeps them across a recreate); they stay anonymous, so ``down -v`` still removes them."""
    old_anon = {m.target: m.name for m in old.spec.mounts if m.type == "volume" and m.anonymous and m.name}
    out = []
    taken = set()
    for m in mounts:
        if m.type == "volume" and m.anonymous and m.target in old_anon:
            m = replace(m, name=old_anon[m.target], source=old_anon[m.target])
        taken.add(m.target)
        out.append(m)
    for target, name in sorted(old_anon.items()):
        if target not in taken:  # the image's VOLUMEs
            out.append(MountSpec(type="volume", target=target, name=name, source=name, anonymous=True))
    return out
