"""Running a build plan: stage by stage (only the stages the target needs), each instruction
committing an image, with the build cache in front of every step.

For each needed stage, in dependency order::

    FROM          base image (pulled if missing, or --pull), an earlier stage's result, or scratch;
                  the base's ONBUILD triggers run next, and its OnBuild list is not inherited
    ARG, ENV, LABEL, CMD, ... (metadata)   a new config, an ``empty_layer`` history entry
    RUN           a container (run.py) on the step's input image; its diff is the layer
    COPY / ADD    a snapshot of the input image, files copied in (copy.py); its diff is the layer
    WORKDIR       the directory is created (as USER) in a snapshot; a layer only if it was missing

Every step's cache key (cache.py) is looked up first; a hit reuses the image and runs nothing
(``--no-cache`` skips lookups; results are still recorded for later builds).  Variables are
expanded per instruction with the stage's environment at that point (plan.expand_instruction:
ENV over ARG); RUN gets the stage's ARG values (and the proxy args) in its environment, and its
history entry shows the ARGs the way BuildKit does (``RUN |1 V=1 /bin/sh -c make # buildkit``).

Events (events.py) say what happens; errors keep their kind and carry where the build failed
(:func:`~dockyard.build.events.annotate`).  A failing RUN raises ``process "/bin/sh -c false"
did not complete successfully: exit code: 1`` (BuildKit's words, exit status 1).  Tags are set
only at the very end, so a failed build tags nothing; its intermediate images stay in the cache.
"""

from __future__ import annotations

import copy
import os
import posixpath
import time
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.build.cache import BuildCache, cache_key
from dockyard.build.context import BuildContext
from dockyard.build.events import (
    BuildEvent,
    BuildFinished,
    BuildWarning,
    StepDone,
    StepOutput,
    StepStarted,
    annotate,
)
from dockyard.build.instructions import (
    DEFAULT_SHELL,
    LAYER_STEPS,
    METADATA,
    apply_metadata,
    env_map,
    go_quote,
)
from dockyard.build.layers import StepImages
from dockyard.build.plan import (
    PROXY_ARGS,
    BuildPlan,
    Instruction,
    Stage,
    expand_instruction,
    make_plan,
    resolve_arg,
)
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.oci.reference import display_name

OUTPUT_TAIL = 12


@dataclass
class BuildRequest:
    context: BuildContext
    tags: list[Any] = field(default_factory=list)          # oci.reference.Reference, with tags
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    network: str = ""                                       # "" / default = the bridge
    add_hosts: list[str] = field(default_factory=list)
    pull: bool = False
    platform: str = ""


@dataclass
class _State:
    """A stage while it is built: the current image and what the next step needs to know."""

    stage: Stage
    image_id: str | None
    config: dict[str, Any]
    args: dict[str, str] = field(default_factory=dict)   # ARG values in scope, in declaration order
    cmd_set: bool = False
    index: int = 1
    total: int = 1

    @property
    def inner(self) -> dict[str, Any]:
        return self.config.setdefault("config", {})

    def env(self) -> dict[str, str]:
        return {**self.args, **env_map(self.inner)}

    @property
    def shell(self) -> list[str]:
        return list(self.inner.get("Shell") or DEFAULT_SHELL)


class Executor:
    def __init__(self, engine: Any, req: BuildRequest) -> None:
        self.engine = engine
        self.req = req
        self.store = engine.image_store
        self.cache = BuildCache(engine.db)
        self.work = engine.root / "build"
        self.images = StepImages(self.store, self.work)
        self.ctx = req.context
        self.step = 0
        self.results: dict[int, str | None] = {}
        self.used: list[str] = []  # cache keys hit (their last use is recorded at the end)
        self.plan: BuildPlan | None = None

    # -- the build -------------------------------------------------------------------------------
    def run(self) -> Iterator[BuildEvent]:
        ctx = self.ctx
        yield from self._internal(f"load build definition from {ctx.dockerfile_name}",
                                  f"transferring dockerfile: {len(ctx.dockerfile.encode())}B done")
        try:
            platform = {"platform": self.req.platform} if self.req.platform else {}
            self.plan = plan = make_plan(ctx.dockerfile, self.req.build_args, self.req.target,
                                         dockerfile_name=ctx.dockerfile_name, **platform)
        except DockyardError as exc:
            raise self._annotate(exc, None) from None
        if ctx.ignore_file:
            yield from self._internal(f"load {ctx.ignore_file}",
                                      f"transferring context: {len(chr(10).join(ctx.ignore_patterns))}B done")
        unused = plan.unused_build_args()
        if unused:
            yield BuildWarning(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        multi = len(plan.stages) > 1
        for index in plan.needed:
            stage = plan.stages[index]
            label = (stage.name or f"stage-{stage.index}") if multi else ""
            self.results[index] = yield from self._stage(stage, label)
        image_id = self.results[plan.target.index]
        if self.req.labels or image_id is None:
            image_id = yield from self._final_labels(image_id, plan.target)
        assert image_id is not None
        self.cache.touch(self.used)
        self.ctx.save_hashes()
        self.step += 1
        yield StepStarted(self.step, "", 0, 0, "exporting to image")
        t0 = time.monotonic()
        names = []
        for ref in self.req.tags:
            self.store.tag(image_id, ref)
            names.append(ref.familiar_string())
            yield StepOutput(self.step, f"naming to {ref} done")
        yield StepOutput(self.step, f"writing image {image_id} done")
        yield StepDone(self.step, False, time.monotonic() - t0, image_id)
        yield BuildFinished(image_id, names)

    def _internal(self, text: str, note: str) -> Iterator[BuildEvent]:
        self.step += 1
        yield StepStarted(self.step, "internal", 0, 0, text)
        yield StepOutput(self.step, note)
        yield StepDone(self.step, False, 0.0)

    def _annotate(self, exc: DockyardError, ins: Instruction | None, title: str = "",
                  tail: list[str] | None = None) -> DockyardError:
        line = ins.line if ins is not None else 0
        if not line:
            import re

            m = re.search(r"on line (\d+)", str(exc))
            line = int(m.group(1)) if m else 0
        annotate(exc, step=title, line=line, end_line=(ins.end_line if ins is not None else line) or line,
                 output_tail=tail, dockerfile=self.ctx.dockerfile_name, source=self.ctx.dockerfile)
        exc.exit_code = 1  # docker build: every build failure exits 1
        return exc

    # -- stages ----------------------------------------------------------------------------------
    def _stage(self, stage: Stage, label: str) -> Generator[BuildEvent, None, str | None]:
        assert self.plan is not None
        from_ins = stage.from_instruction
        triggers: list[Instruction] = []
        self.step += 1
        t0 = time.monotonic()
        if stage.base_stage is not None:
            base_id, shown = self.results[stage.base_stage], f"FROM {stage.base}"
        elif stage.base.lower() == "scratch":
            base_id, shown = None, "FROM scratch"
        else:
            try:
                base_id, shown = self._image(stage.base, stage.platform), f"FROM {display_name(stage.base, familiar=False)}"
            except DockyardError as exc:
                raise self._annotate(exc, from_ins, f"[{label}] FROM {stage.base}") from None
        config = copy.deepcopy(self.images.config(base_id, stage.platform))
        onbuild = (config.get("config") or {}).pop("OnBuild", None) or []
        if onbuild:
            from dockyard.build.plan import parse_onbuild_triggers

            try:
                triggers = parse_onbuild_triggers(onbuild)
            except DockyardError as exc:
                raise self._annotate(exc, from_ins) from None
        instructions = [*triggers, *stage.instructions]
        st = _State(stage, base_id, config)
        st.total = 1 + sum(1 for i in instructions if i.kind in LAYER_STEPS)
        yield StepStarted(self.step, label, 1, st.total, shown)
        yield StepDone(self.step, False, time.monotonic() - t0, base_id or "")
        for n, ins in enumerate(instructions):
            try:
                yield from self._instruction(st, ins, label, trigger=n < len(triggers))
            except DockyardError as exc:
                raise self._annotate(exc, ins if n >= len(triggers) else from_ins) from None
        return st.image_id

    def _final_labels(self, image_id: str | None, stage: Stage) -> Generator[BuildEvent, None, str]:
        config = copy.deepcopy(self.images.config(image_id, stage.platform))
        st = _State(stage, image_id, config)
        labels = dict(st.inner.get("Labels") or {})
        labels.update(self.req.labels)
        st.inner["Labels"] = labels
        text = "LABEL " + " ".join(f"{k}={v}" for k, v in self.req.labels.items())
        return (yield from self._commit_metadata(st, text if self.req.labels else "FROM scratch"))

    def _instruction(self, st: _State, ins: Instruction, label: str, trigger: bool) -> Iterator[BuildEvent]:
        assert self.plan is not None
        escape = self.plan.escape
        if ins.kind == "ARG":
            shown = []
            for name, default in ins.args():
                value = resolve_arg(name, default, build_args=self.req.build_args,
                                    global_args=self.plan.global_args, env=st.env(), escape=escape)
                if value is not None:
                    st.args[name] = value
                    shown.append(f"{name}={value}")
                else:
                    shown.append(name)
            yield from self._commit_metadata(st, "ARG " + " ".join(shown))
            return
        x = expand_instruction(ins, st.env(), escape=escape)
        if x.kind in METADATA:
            inner = copy.deepcopy(st.inner)
            top = dict(st.config)
            created_by = apply_metadata(x, inner, top, shell=st.shell, cmd_set=st.cmd_set)
            if x.kind == "CMD":
                st.cmd_set = True
            top["config"] = inner
            st.config = top
            yield from self._commit_metadata(st, created_by)
            return
        st.index += 1
        self.step += 1
        text = ("ONBUILD " if trigger else "") + _one_line(ins.original)
        title = StepStarted(self.step, label, st.index, st.total, text)
        yield title
        t0 = time.monotonic()
        done = False
        try:
            if x.kind == "RUN":
                done = yield from self._run(st, x, title.title)
            elif x.kind in ("COPY", "ADD"):
                done = yield from self._copy(st, x)
            elif x.kind == "WORKDIR":
                done = self._workdir(st, x)
            else:
                raise InvalidArgument(f"unknown instruction: {x.kind}")
        except DockyardError as exc:
            raise self._annotate(exc, None if trigger else ins, title.title) from None
        yield StepDone(self.step, done, time.monotonic() - t0, st.image_id or "")

    # -- steps -----------------------------------------------------------------------------------
    def _lookup(self, key: str) -> str | None:
        if self.req.no_cache:
            return None
        hit = self.cache.get(key)
        if hit is not None:
            self.used.append(key)
        return hit

    def _advance(self, st: _State, key: str, image_id: str, created_by: str) -> None:
        if key not in self.used:
            self.cache.put(key, image_id, st.image_id or "", created_by)
        st.image_id = image_id
        st.config = self.images.config(image_id)

    def _commit_metadata(self, st: _State, created_by: str) -> Generator[BuildEvent, None, str]:
        key = cache_key("meta", st.image_id, created_by, st.inner, st.config.get("author"))
        image_id = self._lookup(key)
        if image_id is None:
            base = {k: v for k, v in st.config.items() if k != "config"}
            image_id = self.images.commit_config(st.image_id, base, st.inner, created_by)
        self._advance(st, key, image_id, created_by)
        return image_id
        yield  # a generator: callers use ``yield from``

    def _run(self, st: _State, x: Instruction, title: str) -> Generator[BuildEvent, None, bool]:
        from dockyard.build.run import RunSetup

        if st.image_id is None:
            raise InvalidArgument("RUN needs a base image with a shell (FROM scratch has none)")
        with RunSetup(self.work, self.ctx, self.images, self._from_image) as setup:
            args, mounts, mount_keys = setup.prepare(x, st.shell)
            config_env = env_map(st.inner)
            arg_env = [f"{k}={v}" for k, v in st.args.items() if k not in config_env]
            shown = f"|{len(arg_env)} {' '.join(arg_env)} " if arg_env else ""
            created_by = f"RUN {shown}{' '.join(args)} # buildkit"
            network = x.flag("network") or "default"
            if network not in ("default", "none", "host"):
                raise InvalidArgument(f"unsupported network mode {network}")
            key = cache_key("run", st.image_id, created_by, mount_keys, network == "none")
            hit = self._lookup(key)
            if hit is not None:
                self._advance(st, key, hit, created_by)
                return True
            from dockyard.build.layers import upper_and_lowers
            from dockyard.build.run import RunContainer, clean_mount_stubs
            from dockyard.engine.options import ContainerCreateOptions

            proxies = [f"{k}={self.req.build_args[k]}" for k in PROXY_ARGS if k in self.req.build_args]
            net = self.req.network if network == "default" else network
            if net in ("", "default"):
                net = "bridge"
            opts = ContainerCreateOptions(image=st.image_id, command=args, entrypoint="",
                                          env=[*arg_env, *proxies], attach=True, no_healthcheck=True, network=net,
                                          hostname="buildkitsandbox", add_hosts=list(self.req.add_hosts),
                                          mounts=mounts)
            run = RunContainer(self.engine, opts)
            tail: list[str] = []
            t0 = time.monotonic()
            try:
                try:
                    for stream, line in run.output():
                        tail = (tail + [line])[-OUTPUT_TAIL:]
                        yield StepOutput(self.step, line, time.monotonic() - t0, stream)
                except BaseException:
                    run.stop()
                    raise
                if run.exit_code != 0:
                    process = " ".join(args)
                    failed = DockyardError(f"process {go_quote(process)} did not complete successfully: "
                                           f"exit code: {run.exit_code}")
                    failed.build_command, failed.build_exit = args, run.exit_code  # type: ignore[attr-defined]
                    raise self._annotate(failed, None, title, tail)
                upper, lowers = upper_and_lowers(self.engine.snapshotter.mounts(run.cid))
                clean_mount_stubs(upper, lowers, run.mount_points())
                base = {k: v for k, v in st.config.items() if k != "config"}
                image_id = self.images.commit_snapshot(run.cid, st.image_id, base, st.inner, created_by)
            finally:
                run.remove()
        self._advance(st, key, image_id, created_by)
        return False

    def _from_image(self, ref: str) -> str | None:
        assert self.plan is not None
        stage = self.plan.stage(ref)
        if stage is not None:
            if stage.index not in self.results:
                raise InvalidArgument(f"stage {ref} is not built before it is used")
            return self.results[stage.index]
        return self._image(ref, "")

    def _copy(self, st: _State, x: Instruction) -> Generator[BuildEvent, None, bool]:
        from dockyard.build.copy import CopyStep

        ref = x.flag("from")
        with ExitStack() as stack:
            src_image: str | None = None
            if ref:
                src_image = self._from_image(ref)
                fs = BuildContext(stack.enter_context(self.images.view(src_image)), "", "")
            else:
                fs = self.ctx
            sources, dest = list(x.value[:-1]), x.value[-1]
            step = CopyStep(sources=sources, dest=dest, workdir=st.inner.get("WorkingDir") or "/", fs=fs,
                            from_image=bool(ref), add=x.kind == "ADD", chown=x.flag("chown"), chmod=x.flag("chmod"),
                            parents=x.flag_true("parents"), excludes=x.flag_values("exclude"),
                            heredocs={h.name: h.content.encode() for h in x.heredocs}, checksum=x.flag("checksum"),
                            tmp_dir=self._tmp())
            try:
                step.resolve()
                created_by = f"{x.kind} {' '.join(sources)} {dest} # buildkit"
                flags = {k: v for k, v in x.flags.items() if k not in ("link",)}
                digest = src_image if ref else step.digest()
                key = cache_key("copy", st.image_id, created_by, flags, digest, st.inner.get("WorkingDir"))
                hit = self._lookup(key)
                if hit is not None:
                    self._advance(st, key, hit, created_by)
                    return True
                yield StepOutput(self.step, f"copying {len(step.resolved)} source(s)")
                base = {k: v for k, v in st.config.items() if k != "config"}
                image_id = self._in_snapshot(st, base, created_by, step.apply)
            finally:
                step.cleanup()
        self._advance(st, key, image_id, created_by)
        return False

    def _workdir(self, st: _State, x: Instruction) -> bool:
        path = x.value[0]
        if not path.startswith("/"):
            path = posixpath.join(st.inner.get("WorkingDir") or "/", path)
        path = posixpath.normpath(path)
        inner = copy.deepcopy(st.inner)
        inner["WorkingDir"] = path
        created_by = f"WORKDIR {path}"
        key = cache_key("workdir", st.image_id, created_by, inner.get("User"))
        hit = self._lookup(key)
        if hit is not None:
            self._advance(st, key, hit, created_by)
            return True
        user = inner.get("User") or ""
        st.config = {**st.config, "config": inner}
        base = {k: v for k, v in st.config.items() if k != "config"}
        image_id = self._in_snapshot(st, base, created_by, lambda root: _mkdir_p(root, path, user))
        self._advance(st, key, image_id, created_by)
        return False

    def _in_snapshot(self, st: _State, base: dict, created_by: str, change) -> str:
        key = ""
        try:
            with self.images.prepare(st.image_id) as (key, rootfs, _):
                change(rootfs)
            return self.images.commit_snapshot(key, st.image_id, base, st.inner, created_by)
        finally:
            if key:
                self.images.discard(key)

    def _tmp(self) -> Path:
        d = self.work / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- images ----------------------------------------------------------------------------------
    def _image(self, name: str, platform: str) -> str:
        """A base or --from image: local, else pulled (always tried first with --pull)."""
        row = self.store.lookup(name)
        if row is not None and not self.req.pull:
            return row.id
        from dockyard.engine.remote import PullOptions

        try:
            for _ in self.engine.remote.pull(PullOptions(name, platform=platform or None)):
                pass
        except DockyardError as exc:
            if row is not None:
                return row.id
            full = display_name(name, familiar=False)
            raise NotFound(f"{display_name(name)}: failed to resolve source metadata for {full}: {exc}") from None
        row = self.store.lookup(name)
        if row is None:
            raise NotFound(f"{display_name(name)}: failed to resolve source metadata for {display_name(name, familiar=False)}: not found")
        return row.id


def _mkdir_p(root: Path, path: str, user: str) -> None:
    """WORKDIR's directory: missing components are made 0755, owned by USER (as BuildKit does)."""
    from dockyard.build.copy import resolve_chown
    from dockyard.containers.fsview import FSView

    owner = None
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        node = FSView(root).resolve("/" + "/".join(parts[:i]), follow=True)
        try:
            if node.st is not None:
                continue
            if owner is None:
                owner = resolve_chown(root, user) if user else (0, 0)
                if user and ":" not in user:
                    owner = _user_primary(root, user, owner)
            os.mkdir(node.name, 0o755, dir_fd=node.dirfd)
            os.chmod(node.name, 0o755, dir_fd=node.dirfd)
            os.chown(node.name, *owner, dir_fd=node.dirfd, follow_symlinks=False)
        finally:
            node.close()


def _user_primary(root: Path, user: str, owner: tuple[int, int]) -> tuple[int, int]:
    """USER name without a group: the group is the user's primary one from /etc/passwd."""
    try:
        from dockyard.runtime.spec import resolve_user

        def read(name: str) -> str | None:
            try:
                return (root / "etc" / name).read_text(errors="replace") if not (root / "etc").is_symlink() else None
            except OSError:
                return None

        u = resolve_user(user, read("passwd"), read("group"))
        return u.uid, u.gid
    except DockyardError:
        return owner


def _one_line(text: str) -> str:
    first = text.split("\n", 1)[0]
    return " ".join(first.replace("\\\n", " ").split())


__all__ = ["BuildRequest", "Executor"]
