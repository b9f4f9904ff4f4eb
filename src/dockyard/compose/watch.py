"""``compose watch``: follow the ``develop.watch`` rules of the services while the project runs.

No inotify: the watched paths are polled (mtime and size of every file, every ``interval`` s), which
works on every filesystem and needs nothing installed.  Per change batch and rule::

    sync           copy the changed files into every running container of the service, at
                   ``target`` + the path relative to the rule's ``path`` (deleted files are deleted)
    sync+restart   sync, then restart the service's containers
    restart        restart the service's containers
    rebuild        build the service's image and recreate its containers (``up --build`` of it)

``ignore`` patterns (gitignore-style globs, relative to ``path``) and ``include`` (only those) filter
the changes; .dockerignore of the build context is not consulted.
"""

from __future__ import annotations

import fnmatch
import io
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.compose.model import WatchRule
from dockyard.compose.project import ComposeProject, UpOptions
from dockyard.errors import DockyardError, InvalidArgument

Snapshot = dict[str, tuple[float, int]]


def scan(root: str) -> Snapshot:
    """``{path: (mtime, size)}`` of every file under ``root`` (or ``root`` itself)."""
    out: Snapshot = {}
    p = Path(root)
    if p.is_file():
        st = p.stat()
        return {str(p): (st.st_mtime, st.st_size)}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__")]
        for f in filenames:
            fp = os.path.join(dirpath, f)
            try:
                st = os.stat(fp)
            except OSError:
                continue
            out[fp] = (st.st_mtime, st.st_size)
    return out


def changes(before: Snapshot, after: Snapshot) -> tuple[list[str], list[str]]:
    """(changed or new files, deleted files)."""
    changed = sorted(p for p, v in after.items() if before.get(p) != v)
    deleted = sorted(p for p in before if p not in after)
    return changed, deleted


def matches(rule: WatchRule, path: str) -> bool:
    rel = os.path.relpath(path, rule.path) if path != rule.path else os.path.basename(path)
    parts = rel.split(os.sep)

    def hit(pattern: str) -> bool:
        pattern = pattern.rstrip("/")
        return (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(os.path.basename(rel), pattern)
                or any(fnmatch.fnmatch(part, pattern) for part in parts[:-1]))

    if rule.include and not any(hit(p) for p in rule.include):
        return False
    return not any(hit(p) for p in rule.ignore)


@dataclass
class Watcher:
    compose: ComposeProject
    services: list[str]
    interval: float = 0.5
    log: Callable[[str], None] = print

    def rules(self) -> list[tuple[str, WatchRule]]:
        out = [(s, r) for s in self.services for r in self.compose.project.service(s).watch]
        if not out:
            raise InvalidArgument("none of the selected services is configured for watch, consider setting a "
                                  "'develop' section")
        return out

    def sync(self, service: str, rule: WatchRule, changed: list[str], deleted: list[str]) -> None:
        if not rule.target:
            raise InvalidArgument(f"service {service}: a sync rule needs a target")
        engine = self.compose.engine
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in changed:
                rel = os.path.relpath(path, rule.path) if path != rule.path else os.path.basename(path)
                try:
                    tar.add(path, arcname=rel, recursive=False)
                except OSError:
                    continue
        for r in self.compose.containers([service], stopped=False):
            if changed:
                base = rule.target if os.path.isdir(rule.path) else os.path.dirname(rule.target) or "/"
                buf.seek(0)
                engine.containers.io.copy_to(r.id, base, buf)
            for path in deleted:
                rel = os.path.relpath(path, rule.path)
                engine.containers.io.exec(r.id, ["rm", "-rf", f"{rule.target.rstrip('/')}/{rel}"])
            self.log(f"Syncing service {service!r} after {len(changed) + len(deleted)} changes were detected "
                     f"({r.name})")

    def apply(self, service: str, rule: WatchRule, changed: list[str], deleted: list[str]) -> None:
        if rule.action in ("sync", "sync+restart", "sync+exec"):
            self.sync(service, rule, changed, deleted)
        if rule.action in ("restart", "sync+restart"):
            self.log(f"Restarting service {service!r}")
            self.compose.restart([service])
        if rule.action == "rebuild":
            self.log(f"Rebuilding service {service!r} after changes were detected")
            self.compose.up(UpOptions(services=[service], build=True, no_deps=True))
            self.log(f"service {service!r} successfully built and recreated")

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        """Poll and apply until ``until()`` is true (the CLI runs until Ctrl-C)."""
        rules = self.rules()
        snaps = {i: scan(r.path) for i, (_, r) in enumerate(rules)}
        self.log("Watch enabled")
        while not until():
            time.sleep(self.interval)
            for i, (service, rule) in enumerate(rules):
                now = scan(rule.path)
                changed, deleted = changes(snaps[i], now)
                snaps[i] = now
                changed = [p for p in changed if matches(rule, p)]
                deleted = [p for p in deleted if matches(rule, p)]
                if not changed and not deleted:
                    continue
                try:
                    self.apply(service, rule, changed, deleted)
                except DockyardError as exc:
                    self.log(f"watch: {service}: {exc}")
