"""Waiting for containers: ``depends_on`` conditions before a service starts, and ``up --wait``.

A condition fails at once when it cannot come true any more (the container turned unhealthy, exited,
or exited non-zero for service_completed_successfully); the error names the container and shows
its last health-check output.  Without a deadline a wait lasts as long as the health check keeps
"starting".  Part of :class:`~dockyard.compose.project.ComposeProject`.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.compose.model import Dependency, Project, Service
from dockyard.containers.store import ContainerRecord
from dockyard.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from dockyard.compose.project import Reporter
    from dockyard.engine import Engine


class Waits:
    engine: Engine
    project: Project
    report: Reporter
    sleep: Callable[[], None]

    def containers(self, services: builtins.list[str] | None = None, *, stopped: bool = True,
                   oneoff: bool | None = False) -> builtins.list[ContainerRecord]:
        raise NotImplementedError

    def _await_dependencies(self, s: Service, targets: builtins.list[str]) -> None:
        for dep_name, dep in sorted(s.depends_on.items()):
            if dep_name not in self.project.services:
                if dep.required:
                    raise InvalidArgument(f"service {s.name} depends on undefined service {dep_name}")
                continue
            try:
                self._await(dep_name, dep)
            except FailedPrecondition as exc:
                if dep.required:
                    raise
                self.report.warn(f"optional dependency {dep_name} of {s.name}: {exc}")

    def _await(self, dep_name: str, dep: Dependency, timeout: float | None = None) -> None:
        if dep.condition == "service_started":
            return
        recs = self.containers([dep_name])
        if not recs:
            if self.project.services[dep_name].replicas == 0:
                return
            raise FailedPrecondition(f"dependency failed to start: service {dep_name} has no container")
        deadline = None if timeout is None else time.monotonic() + timeout
        for r in recs:
            self.report.status("Container", r.name, "Waiting")
            if dep.condition == "service_healthy":
                self._until_healthy(r, dep_name, deadline)
                self.report.status("Container", r.name, "Healthy")
            else:
                self._until_exited(r, dep_name, deadline)
                self.report.status("Container", r.name, "Exited")

    def _until_healthy(self, r: ContainerRecord, service: str, deadline: float | None) -> None:
        if r.spec.healthcheck is None:
            raise FailedPrecondition(f"container {r.name} has no healthcheck configured")
        while True:
            r = self.engine.containers.get(r.id)
            status = (r.health or {}).get("Status", "starting")
            if r.state == "running" and status == "healthy":
                return
            if status == "unhealthy":
                raise FailedPrecondition(f"dependency failed to start: container {r.name} is unhealthy"
                                         f"{last_check(r)}")
            if r.state in ("exited", "dead", "created"):
                raise FailedPrecondition(f"dependency failed to start: container {r.name} exited ({r.exit_code})")
            if deadline is not None and time.monotonic() > deadline:
                raise FailedPrecondition(f"service {service!r}: container {r.name} did not turn healthy in time "
                                         f"(health: {status}){last_check(r)}")
            self.sleep()

    def _until_exited(self, r: ContainerRecord, service: str, deadline: float | None) -> None:
        while True:
            r = self.engine.containers.get(r.id)
            if r.state in ("exited", "dead"):
                if r.exit_code != 0:
                    raise FailedPrecondition(f"service {service!r} didn't complete successfully: exit {r.exit_code}")
                return
            if deadline is not None and time.monotonic() > deadline:
                raise FailedPrecondition(f"service {service!r} did not complete in time")
            self.sleep()

    def wait_ready(self, services: builtins.list[str], timeout: float | None = None) -> None:
        """``up --wait``: running, and healthy where there is a health check (containers of a service
        others wait on with service_completed_successfully may have exited 0)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        jobs = {d for s in self.project.services.values() for d, dep in s.depends_on.items()
                if dep.condition == "service_completed_successfully"}
        for name in services:
            for r in self.containers([name]):
                if name in jobs:
                    self._until_exited(r, name, deadline)
                    continue
                self.report.status("Container", r.name, "Waiting")
                if r.spec.healthcheck is not None:
                    try:
                        self._until_healthy(r, name, deadline)
                    except FailedPrecondition as exc:
                        r = self.engine.containers.get(r.id)
                        raise FailedPrecondition(
                            f"service {name!r} is not healthy: container {r.name} is "
                            f"{(r.health or {}).get('Status', r.state)}{last_check(r) or ' (no health check ran)'}"
                            if "unhealthy" in str(exc) or "in time" in str(exc) else str(exc)) from None
                    self.report.status("Container", r.name, "Healthy")
                else:
                    r = self.engine.containers.get(r.id)
                    if r.state != "running":
                        raise FailedPrecondition(f"service {name!r}: container {r.name} exited ({r.exit_code})")
                    self.report.status("Container", r.name, "Running")


def last_check(r: ContainerRecord) -> str:
    log = (r.health or {}).get("Log") or []
    if not log:
        return ""
    last = log[-1]
    output = str(last.get("Output", "")).strip()
    return f"\nlast health check (exit {last.get('ExitCode')}): {output or '(no output)'}"
