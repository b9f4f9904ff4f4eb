"""The images of a compose project: build what has ``build:`` (through the builder's facade), pull
what is missing (or always, by ``pull_policy``/``--pull``), push what has an ``image:`` name.

A build-only service's image is ``<project>-<service>`` (compose v2's name).  Failures keep their
kind with compose's exit codes: 17 for a build, 18 for a pull.  Part of
:class:`~dockyard.compose.project.ComposeProject`.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from dockyard.compose import convert as cv
from dockyard.compose.model import Project, Service
from dockyard.errors import DockyardError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.compose.project import Reporter
    from dockyard.engine import Engine


class ImageSteps:
    engine: Engine
    project: Project
    report: Reporter

    def image_id(self, service: Service) -> str | None:
        try:
            return self.engine.images.inspect(cv.image_name(self.project, service))["Id"]
        except NotFound:
            return None

    def ensure_images(self, services: builtins.list[str], *, build: bool = False, no_build: bool = False,
                      pull: str = "") -> dict[str, str]:
        """Build or pull what each service needs; its image id by service."""
        ids: dict[str, str] = {}
        for name in services:
            s = self.project.services[name]
            policy = pull or s.pull_policy or "missing"
            have = self.image_id(s)
            if s.build is not None and not no_build and (build or policy == "build" or have is None):
                self.build([name])
            elif policy == "always" or (have is None and policy in ("missing", "if_not_present")):
                try:
                    self.pull([name])
                except DockyardError:
                    if s.build is None or no_build:
                        raise
                    self.build([name])
            elif have is None and policy == "never":
                raise NotFound(f"service {name}: image {cv.image_name(self.project, s)} not found locally "
                               "and pull_policy is never")
            image = self.image_id(s)
            if image is None:
                raise NotFound(f"No such image: {cv.image_name(self.project, s)}")
            ids[name] = image
        return ids

    def build(self, services: builtins.list[str] | None = None, *, no_cache: bool = False, pull: bool = False,
              build_args: dict[str, str] | None = None) -> None:
        from dockyard.engine.build import BuildOptions

        for name in services if services is not None else sorted(self.project.services):
            s = self.project.service(name)
            b = s.build
            if b is None:
                continue
            if b.dockerfile_inline is not None:
                raise InvalidArgument(f"service {name}: build.dockerfile_inline is not supported; "
                                      "write the Dockerfile to a file")
            dockerfile = b.dockerfile if b.dockerfile.startswith("/") else f"{b.context}/{b.dockerfile}"
            args = {k: v for k, v in b.args.items() if v is not None}
            args.update(build_args or {})
            tags = [cv.image_name(self.project, s), *b.tags]
            self.report.status("Service", name, "Building")
            opts = BuildOptions(context=b.context, dockerfile=dockerfile, tags=tags, build_args=args,
                                labels=dict(b.labels), target=b.target or "", no_cache=no_cache or b.no_cache,
                                network=b.network or "", add_hosts=list(b.extra_hosts), pull=pull or b.pull)
            try:
                for event in self.engine.build.build(opts):
                    self.report.build_event(name, event)
            except DockyardError as exc:
                exc.exit_code = 17  # compose's BuildFailure
                raise
            self.report.status("Service", name, "Built")

    def pull(self, services: builtins.list[str] | None = None, *, ignore_failures: bool = False) -> None:
        from dockyard.engine.remote import PullOptions

        for name in services if services is not None else sorted(self.project.services):
            s = self.project.service(name)
            if s.image is None:
                continue  # build-only: nothing to pull
            self.report.status("Image", s.image, "Pulling")
            try:
                for event in self.engine.remote.pull(PullOptions(name=s.image)):
                    self.report.pull_event(name, event)
            except DockyardError as exc:
                if ignore_failures:
                    self.report.warn(f"{name}: {exc}")
                    continue
                exc.exit_code = 18  # compose's PullFailure
                raise
            self.report.status("Image", s.image, "Pulled")

    def push(self, services: builtins.list[str] | None = None) -> None:
        from dockyard.engine.remote import PushOptions

        for name in services if services is not None else sorted(self.project.services):
            s = self.project.service(name)
            if s.image is None:
                continue  # compose pushes only services with an image name
            self.report.status("Image", s.image, "Pushing")
            for event in self.engine.remote.push(PushOptions(name=s.image)):
                self.report.pull_event(name, event)
            self.report.status("Image", s.image, "Pushed")
