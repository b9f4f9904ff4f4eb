"""Images out of build steps: a step's snapshot (or only a config change) becomes an image.

Every step commits an image whose parent is the step's input image, as Docker's classic builder
does; the build cache maps the step's key to it.  Two kinds:

- :meth:`StepImages.commit_config`: a metadata step (ENV, CMD, ...), a step whose diff is empty
  (``RUN echo hi``, a WORKDIR that exists): the parent's layers, a new config, a history entry
  marked ``empty_layer`` — as BuildKit drops empty layers.
- :meth:`StepImages.commit_snapshot`: RUN, COPY, ADD, WORKDIR that creates its directory: the
  active snapshot's upper directory is written as a gzip layer blob (its diff ID is the digest of
  the tar), then *the snapshot itself* is committed under the new chain ID, so the layer is never
  unpacked again: the image store finds it in place (:meth:`ImageStore.add_image` skips layers
  whose chain already exists).  All under one lease, so a concurrent ``rmi``/``prune`` cannot
  collect the blob or the snapshot before the image refers to them.

Snapshots of COPY/ADD/WORKDIR steps are prepared here (:meth:`StepImages.prepare`) under
``build-<random>`` keys and mounted below ``<dataroot>/build/mnt``; RUN uses its container's.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

from dockyard.errors import AlreadyExists, DockyardError, NotFound
from dockyard.images.store import ImageStore, NewImage, chain_ids
from dockyard.snapshots.mount import Mount, mount_all, unmount


def rfc3339(ts: float) -> str:
    from datetime import datetime

    dt = datetime.fromtimestamp(ts, UTC)
    frac = f"{ts % 1:.9f}"[2:].rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ("." + frac if frac else "") + "Z"


def scratch_config(platform: str = "") -> dict[str, Any]:
    import platform as host

    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x"}.get(host.machine(), host.machine())
    os_name = "linux"
    if platform:
        parts = platform.split("/")
        os_name, arch = parts[0] or os_name, (parts[1] if len(parts) > 1 else arch)
    return {"architecture": arch, "os": os_name, "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
            "history": []}


def upper_and_lowers(mounts: list[Mount]) -> tuple[Path, list[Path]]:
    """The writable directory and the layer directories (topmost first) of an active snapshot."""
    m = mounts[0]
    if m.type == "bind":
        return Path(m.source), []
    upper, lowers = "", []
    for opt in m.options:
        if opt.startswith("upperdir="):
            upper = opt.split("=", 1)[1]
        elif opt.startswith("lowerdir="):
            lowers = [Path(p) for p in opt.split("=", 1)[1].split(":") if p]
    return Path(upper), lowers


class StepImages:
    def __init__(self, store: ImageStore, work: Path) -> None:
        self.store = store
        self.snapshots = store.snapshots
        self.work = work

    def config(self, image_id: str | None, platform: str = "") -> dict[str, Any]:
        if not image_id:
            return scratch_config(platform)
        return json.loads(self.store.config_bytes(image_id))

    def _layers(self, image_id: str | None) -> list:
        if not image_id:
            return []
        row = self.store.db.image(image_id)
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        return self.store.layers(row)

    def _finish_config(self, base: dict[str, Any], inner: dict[str, Any], history: dict[str, Any],
                       diff_ids: list[str]) -> bytes:
        now = time.time()
        history = {"created": rfc3339(now), **history, "comment": "buildkit.dockerfile.v0"}
        cfg = dict(base)
        cfg["created"] = rfc3339(now)
        cfg["config"] = {k: v for k, v in inner.items() if v not in (None, [], {}) or k in ("Env",)}
        cfg["history"] = [*(base.get("history") or []), history]
        cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        cfg.pop("container", None)
        cfg.pop("container_config", None)
        return json.dumps(cfg, separators=(",", ":")).encode()

    def commit_config(self, parent: str | None, base: dict[str, Any], inner: dict[str, Any],
                      created_by: str, *, empty_layer: bool = True) -> str:
        """An image with the parent's layers and a changed config (``empty_layer`` history)."""
        layers = self._layers(parent)
        raw = self._finish_config(base, inner, {"created_by": created_by, "empty_layer": True},
                                  list((base.get("rootfs") or {}).get("diff_ids") or []))
        with self.store.db.lease() as lease:
            image_id, _ = self.store.add_image(NewImage(config=raw, layers=layers, parent=parent or ""), lease)
        return image_id

    def commit_snapshot(self, key: str, parent: str | None, base: dict[str, Any], inner: dict[str, Any],
                        created_by: str) -> str:
        """The active snapshot ``key`` (unmounted) as a new top layer on ``parent``; an empty diff
        makes an empty_layer image instead.  ``key`` is consumed or left for the caller to remove."""
        upper, _ = upper_and_lowers(self.snapshots.mounts(key))
        if not any(True for _ in os.scandir(upper)):
            return self.commit_config(parent, base, inner, created_by)
        layers = self._layers(parent)
        diff_ids = list((base.get("rootfs") or {}).get("diff_ids") or [])
        with self.store.db.lease() as lease:
            created: list[str] = []
            try:
                layer = self.store.write_layer(lambda out: self.snapshots.diff(key, out), lease)
                chain = chain_ids([*diff_ids, layer.diff_id])[-1]
                lease.add("snapshot", chain)
                try:
                    self.snapshots.commit(chain, key)
                except AlreadyExists:
                    pass  # the same layer already exists (another build made it): it is used
                raw = self._finish_config(base, inner, {"created_by": created_by}, [*diff_ids, layer.diff_id])
                image_id, _ = self.store.add_image(
                    NewImage(config=raw, layers=[*layers, layer], parent=parent or ""), lease, created)
                return image_id
            except BaseException:
                self.store.rollback(created, lease)
                raise

    @contextmanager
    def prepare(self, parent: str | None) -> Iterator[tuple[str, Path, list[Mount]]]:
        """A fresh active snapshot on ``parent``'s top layer, mounted: ``(key, rootfs, mounts)``.

        On exit it is unmounted; the snapshot is removed unless the block committed it."""
        key = "build-" + secrets.token_hex(12)
        chain = self.store.top_snapshot(parent) if parent else None
        mounts = self.snapshots.prepare(key, chain)
        target = self.work / "mnt" / key
        target.mkdir(parents=True, exist_ok=True)
        mounted = False
        try:
            mount_all(mounts, target)
            mounted = True
            yield key, target, mounts
        finally:
            if mounted:
                try:
                    unmount(target)
                except DockyardError:
                    unmount(target, lazy=True)
            shutil.rmtree(target, ignore_errors=True)

    def discard(self, key: str) -> None:
        try:
            self.snapshots.remove(key)
        except (NotFound, DockyardError):
            pass

    @contextmanager
    def view(self, image_id: str | None) -> Iterator[Path]:
        """An image's filesystem mounted read-only for the block (COPY --from)."""
        target = self.work / "mnt" / ("view-" + secrets.token_hex(12))
        target.mkdir(parents=True, exist_ok=True)
        chain = self.store.top_snapshot(image_id) if image_id else None
        if chain is None:  # scratch: an empty directory
            try:
                yield target
            finally:
                shutil.rmtree(target, ignore_errors=True)
            return
        key = target.name
        mounts = self.snapshots.view(key, chain)
        try:
            mount_all(mounts, target)
            try:
                yield target
            finally:
                unmount(target)
        finally:
            self.discard(key)
            shutil.rmtree(target, ignore_errors=True)
