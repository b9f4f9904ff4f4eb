"""RUN: a build step's command in a container, through the same path as ``dockyard run``.

:class:`RunContainer` creates the container with the engine (so it gets the runtime spec, the
confinement, the network — the default bridge with NAT, ``host`` or ``none`` — and the
/etc/hosts, /etc/resolv.conf files of any container), attaches to its output through conmon
before it starts (nothing is missed), yields the output line by line while it runs, and records
its exit itself (holding the client lock, as an attached ``dockyard run`` does, so conmon's exit
command stands by).  The step's layer is then the diff of the container's snapshot
(:mod:`dockyard.build.layers`); the container is removed afterwards, also on failure or Ctrl-C.

:class:`RunSetup` turns the instruction into the container's argv and mounts: exec or shell
form (SHELL), heredocs as BuildKit runs them (``RUN <<EOF`` alone: the body through the shell, or
the file itself when it starts with ``#!``; a heredoc inside a command: the whole text to the
shell), and ``--mount`` (bind from the context, a stage or an image, read-only; cache directories
kept under ``<dataroot>/build/cache-mounts``; tmpfs).  What it mounts lives until the step ends.

Mount stubs: runc creates the mount points it needs (``/etc/resolv.conf``, ``/proc``, a
``VOLUME`` directory, ...) in the container's upper directory when the image lacks them.  They
are not the command's doing, so :func:`clean_mount_stubs` removes those that are still empty
before the diff is taken, as BuildKit's executor does — an image built here does not grow an
empty /etc/resolv.conf.
"""

from __future__ import annotations

import json
import os
import queue
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound

_DONE = object()


class _LineWriter:
    """A file-like sink for conmon's attach stream: complete lines go to the queue."""

    def __init__(self, q: queue.Queue, stream: str) -> None:
        self.q, self.stream, self.partial = q, stream, b""

    def write(self, data: bytes) -> int:
        buf = self.partial + bytes(data)
        *lines, self.partial = buf.split(b"\n")
        for line in lines:
            self.q.put((self.stream, line.decode("utf-8", "replace").rstrip("\r")))
        return len(data)

    def flush(self) -> None:
        pass

    def close_partial(self) -> None:
        if self.partial:
            self.q.put((self.stream, self.partial.decode("utf-8", "replace").rstrip("\r")))
            self.partial = b""


class RunContainer:
    """One RUN's container: ``output()`` runs it; ``exit_code`` is set when that ends; ``remove()``."""

    def __init__(self, engine: Any, opts: Any) -> None:
        self.engine = engine
        self.opts = opts
        self.rec: Any = None
        self.exit_code: int | None = None

    @property
    def cid(self) -> str:
        return self.rec.id if self.rec is not None else ""

    def output(self) -> Iterator[tuple[str, str]]:
        """Create, attach, start; yield ``(stream, line)`` until the command exits."""
        import fcntl

        containers = self.engine.containers
        self.rec = containers.create(self.opts)
        rec = self.rec
        rt = containers.lifecycle.runtime
        q: queue.Queue = queue.Queue()
        out, err = _LineWriter(q, "stdout"), _LineWriter(q, "stderr")
        result: dict[str, Any] = {}
        attached, started = threading.Event(), threading.Event()

        def attach() -> None:
            def on_attached() -> None:
                attached.set()
                started.wait(30)  # conmon holds the output until the container has started

            try:
                rt.attach(rec.id, stdin=None, stdout=out, stderr=err, tty=False, on_attached=on_attached)
            except BaseException as exc:  # noqa: BLE001 - reported below
                result["error"] = exc
                attached.set()
            finally:
                out.close_partial()
                err.close_partial()
                q.put(_DONE)

        t = threading.Thread(target=attach, name="build-run-attach", daemon=True)

        def on_created(created: Any) -> None:
            result["generation"] = created.generation
            t.start()
            attached.wait(30)
            if "error" in result:
                raise result["error"]

        lock = containers.store.dir(rec.id) / "client.lock"
        fd = os.open(lock, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                containers.start(rec.id, on_created=on_created, client_lock=lock)
            finally:
                started.set()
            while True:
                item = q.get()
                if item is _DONE:
                    break
                yield item
            t.join()
            if "error" in result:
                raise result["error"]
            gen = result.get("generation") or containers.store.get(rec.id).generation
            self.exit_code = containers.lifecycle.attached_exit(rec.id, gen)
        finally:
            os.close(fd)

    def stop(self) -> None:
        """Kill a command that is still running (an interrupted build)."""
        if self.rec is None:
            return
        try:
            rec = self.engine.containers.get(self.rec.id)
            if rec.state in ("running", "paused"):
                self.engine.containers.lifecycle.runtime.kill(rec.id, 9, all_processes=True)
                self.engine.containers.lifecycle.wait_exit(rec, timeout=10)
                self.engine.containers.lifecycle.record_exit(rec.id, rec.generation)
        except DockyardError:
            pass

    def mount_points(self) -> list[str]:
        """The container's mount destinations (relative, outermost only): stub candidates."""
        try:
            config = json.loads((self.engine.containers.lifecycle.bundle(self.cid) / "config.json").read_text())
        except (OSError, ValueError):
            return []
        dests = sorted({os.path.normpath(m["destination"]).lstrip("/") for m in config.get("mounts") or []
                        if m.get("destination", "/") != "/"})
        top: list[str] = []
        for d in dests:
            if not any(d.startswith(t + "/") for t in top):
                top.append(d)
        return top

    def remove(self) -> None:
        if self.rec is None:
            return
        try:
            self.engine.containers.remove(self.rec.id, force=True, volumes=True)
        except DockyardError:
            pass


def clean_mount_stubs(upper: Path, lowers: list[Path], paths: list[str]) -> None:
    """Remove from ``upper`` the empty files and directories runc made for mounts (``paths``,
    relative) that the image did not have, and the directories copied up only to hold them."""
    parents: set[str] = set()
    for rel in sorted(paths, key=lambda p: -p.count("/")):
        p = upper / rel
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if _in_lowers(lowers, rel):
            continue
        try:
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(p)
            elif stat.S_ISDIR(st.st_mode) and not os.listdir(p):
                os.rmdir(p)
            else:
                continue
        except OSError:
            continue
        while "/" in rel:
            rel = rel.rsplit("/", 1)[0]
            parents.add(rel)
    for rel in sorted(parents, key=lambda p: -p.count("/")):
        p = upper / rel
        try:
            st = os.lstat(p)
            if not stat.S_ISDIR(st.st_mode) or os.listdir(p):
                continue
            if _opaque(p):
                continue
        except OSError:
            continue
        lower = _lower_stat(lowers, rel)
        # made by runc only to hold a stub (not in the image), or copied up only to hold one
        if lower is None or (stat.S_ISDIR(lower.st_mode) and (lower.st_mode, lower.st_uid, lower.st_gid) == (
                st.st_mode, st.st_uid, st.st_gid)):
            try:
                os.rmdir(p)
            except OSError:
                pass


def _opaque(p: Path) -> bool:
    try:
        return os.getxattr(p, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lower_stat(lowers: list[Path], rel: str) -> os.stat_result | None:
    for lower in lowers:
        try:
            st = os.lstat(lower / rel)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None  # a whiteout: deleted in that layer
        return st
    return None


def _in_lowers(lowers: list[Path], rel: str) -> bool:
    return _lower_stat(lowers, rel) is not None


class RunSetup:
    """A RUN's argv and mounts (see the module docstring); a context manager that releases the
    views and files it made.  ``image_of(ref)`` gives the image ID of a stage name/index or image."""

    def __init__(self, work: Path, ctx: Any, images: Any, image_of: Callable[[str], str | None]) -> None:
        self.work, self.ctx, self.images, self.image_of = work, ctx, images, image_of
        self.stack = ExitStack()

    def __enter__(self) -> RunSetup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def prepare(self, x: Any, shell: list[str]) -> tuple[list[str], list, list]:
        """(argv, mounts, cache-key parts of the mounts) of the expanded RUN instruction ``x``."""
        from dockyard.build.instructions import shell_form

        mounts: list[Any] = []
        keys: list[Any] = []
        if x.heredocs and not x.json:
            body = x.value[0]
            first = x.heredocs[0]
            alone = body.strip().lstrip("0123456789")
            if alone.startswith("<<") and len(x.heredocs) == 1 and alone.lstrip("<-").strip("'\"") == first.name:
                data = first.content
                if data.startswith("#!"):
                    from dockyard.containers.model import MountSpec

                    path = self._scratch_file(data.encode(), 0o755)
                    mounts.append(MountSpec(type="bind", target=f"/dev/pipes/{first.name}", source=str(path),
                                            readonly=True))
                    args = [f"/dev/pipes/{first.name}"]
                else:
                    args = [*shell, data]
            else:
                full = body
                for h in x.heredocs:
                    full += "\n" + h.content + h.name
                args = [*shell, full]
        else:
            args = shell_form(x, shell)
        for spec in x.flag_values("mount"):
            mount, part = self._mount(spec)
            mounts.append(mount)
            keys.append([spec, part])
        return args, mounts, keys

    def _scratch_file(self, data: bytes, mode: int) -> Path:
        d = self.work / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="heredoc-", dir=d)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(name, mode)
        self.stack.callback(os.unlink, name)
        return Path(name)

    def _mount(self, spec: str) -> tuple[Any, Any]:
        import csv

        from dockyard.build.cache import cache_key
        from dockyard.containers.fsview import FSView
        from dockyard.containers.model import MountSpec

        fields: dict[str, str] = {}
        for item in next(csv.reader([spec]), []):
            k, sep, v = item.partition("=")
            fields[k.strip().lower()] = v if sep else "true"
        kind = fields.get("type", "bind")
        target = fields.get("target") or fields.get("dst") or fields.get("destination") or ""
        if not target:
            raise InvalidArgument(f"mount {spec}: target is required")
        if kind == "tmpfs":
            return MountSpec(type="tmpfs", target=target), ""
        if kind == "cache":
            d = self.work / "cache-mounts" / cache_key(fields.get("id") or target).removeprefix("sha256:")[:32]
            if not d.exists():
                d.mkdir(parents=True, exist_ok=True)
                os.chmod(d, int(fields.get("mode", "755"), 8))
                os.chown(d, int(fields.get("uid", "0")), int(fields.get("gid", "0")))
            return MountSpec(type="bind", target=target, source=str(d), readonly=False), ""
        if kind != "bind":
            raise InvalidArgument(f"RUN --mount=type={kind} is not supported by dockyard's builder")
        if fields.get("rw", fields.get("readwrite", "false")) == "true":
            raise InvalidArgument("RUN --mount=type=bind,rw is not supported by dockyard's builder")
        source = fields.get("source") or fields.get("src") or ""
        ref = fields.get("from", "")
        part: Any = ""
        if ref:
            part = self.image_of(ref)
            root = self.stack.enter_context(self.images.view(part))
        elif self.ctx.root is None:
            raise NotFound(f'failed to compute cache key: "/{source.lstrip("/")}": not found')
        else:
            root = self.ctx.root
        node = FSView(root, host=True).resolve("/" + source, follow=True)
        node.close()
        if node.st is None:
            raise NotFound(f'failed to compute cache key: "/{source.lstrip("/")}": not found')
        if not ref:
            entry = self.ctx.lookup("/".join(node.real))
            part = self.ctx.digest([entry]) if entry is not None else ""
        return MountSpec(type="bind", target=target, source=str(root.joinpath(*node.real)), readonly=True), part
