"""``compose down``: everything the project made, found by label, also after a partial ``up``.

Containers of the project's services (and its one-off ``run`` containers; orphans with
``--remove-orphans``) are stopped a dependency level at a time (dependents first), the containers of
one level in parallel, then removed (``-v``: with their anonymous volumes).  Then the networks
labelled with the project, the named volumes with ``-v`` (never external ones, never ones compose
did not make), the images with ``--rmi local|all``.  Part of
:class:`~dockyard.compose.project.ComposeProject`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.compose import convert as cv
from dockyard.compose.model import Project
from dockyard.containers.store import ContainerRecord
from dockyard.engine.options import Filters
from dockyard.errors import DockyardError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.compose.project import Reporter
    from dockyard.engine import Engine


@dataclass
class DownOptions:
    volumes: bool = False
    rmi: str = ""                        # "" | local | all
    remove_orphans: bool = False
    timeout: int | None = None


class Teardown:
    engine: Engine
    project: Project
    report: Reporter

    def containers(self, services: builtins.list[str] | None = None, *, stopped: bool = True,
                   oneoff: bool | None = False) -> builtins.list[ContainerRecord]:
        raise NotImplementedError

    def _remove(self, cid: str, name: str, timeout: int | None, *, volumes: bool = False) -> None:
        raise NotImplementedError

    def down(self, opts: DownOptions) -> None:
        known = set(self.project.services) | set(self.project.disabled_services)
        recs = self.containers(oneoff=None)
        mine = [r for r in recs if r.spec.labels.get(cv.SERVICE) in known or r.spec.labels.get(cv.ONEOFF) == "True"
                or opts.remove_orphans]
        orphans = [r for r in recs if r not in mine]
        for group in self._levels(mine, reverse=True):
            parallel(lambda r: self._remove(r.id, r.name, opts.timeout, volumes=opts.volumes), group)
        if orphans:
            self.report.warn(f"Found orphan containers ({', '.join(r.name for r in orphans)}) for this project. "
                             "If you removed or renamed this service in your compose file, you can run this "
                             "command with the --remove-orphans flag to clean it up.")
        self._remove_networks()
        if opts.volumes:
            self._remove_volumes()
        if opts.rmi:
            self._remove_images(opts.rmi)

    def _levels(self, recs: builtins.list[ContainerRecord], *, reverse: bool = False
                ) -> builtins.list[builtins.list[ContainerRecord]]:
        """Containers grouped by their service's depth in the dependency graph (what depends on
        nothing first): a group can be stopped or started at once."""
        depth: dict[str, int] = {}

        def level(name: str, seen: tuple[str, ...] = ()) -> int:
            if name not in depth:
                s = self.project.services.get(name)
                deps = [d for d in (s.depends_on if s else {}) if d in self.project.services and d not in seen]
                depth[name] = 1 + max((level(d, (*seen, name)) for d in deps), default=-1)
            return depth[name]

        groups: dict[int, builtins.list[ContainerRecord]] = {}
        for r in recs:
            service = r.spec.labels.get(cv.SERVICE, "")
            groups.setdefault(level(service) if service in self.project.services else -1, []).append(r)
        return [groups[k] for k in sorted(groups, reverse=reverse)]

    def _remove_networks(self) -> None:
        names = {n.name for n in self.project.networks.values() if not n.external}
        names |= {n.name for n in self.engine.networks.list(Filters({"label": [f"{cv.PROJECT}={self.project.name}"]}))}
        for name in sorted(names):
            try:
                net = self.engine.networks.get(name)
            except NotFound:
                continue
            if net.labels.get(cv.PROJECT) != self.project.name:
                continue  # not ours (compose leaves foreign networks alone)
            self.report.status("Network", name, "Removing")
            try:
                self.engine.networks.remove(net.id)
            except DockyardError as exc:
                self.report.warn(f"network {name}: {exc}")
                continue
            self.report.status("Network", name, "Removed")

    def _remove_volumes(self) -> None:
        names = {v.name for v in self.project.volumes.values() if not v.external}
        names |= {v.name for v in self.engine.volumes.list(Filters({"label": [f"{cv.PROJECT}={self.project.name}"]}))}
        for name in sorted(names):
            try:
                vol = self.engine.volumes.inspect(name)
            except NotFound:
                continue
            if vol.labels.get(cv.PROJECT) != self.project.name:
                continue
            self.report.status("Volume", name, "Removing")
            try:
                self.engine.volumes.remove(name)
            except DockyardError as exc:
                self.report.warn(f"volume {name}: {exc}")
                continue
            self.report.status("Volume", name, "Removed")

    def _remove_images(self, which: str) -> None:
        from dockyard.engine.image_options import ImageRemoveOptions

        if which not in ("local", "all"):
            raise InvalidArgument(f"invalid --rmi value {which!r}: local or all")
        services = {**self.project.services, **self.project.disabled_services}
        names = sorted({cv.image_name(self.project, s) for s in services.values()
                        if which == "all" or s.image is None})
        for name in names:
            try:
                self.engine.images.remove(name, ImageRemoveOptions(force=False))
            except NotFound:
                continue
            except DockyardError as exc:
                self.report.warn(f"image {name}: {exc}")
                continue
            self.report.status("Image", name, "Removed")


def parallel(fn: Callable[[Any], Any], items: builtins.list[Any]) -> None:
    """``fn`` over ``items`` in threads (stopping ten containers takes one stop timeout, as in
    compose); the first error is raised after all have finished."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
    for f in futures:
        f.result()
