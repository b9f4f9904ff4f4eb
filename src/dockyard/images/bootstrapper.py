"""``dockyard image bootstrap``: base images made on this machine, without a registry.

The root filesystems come from :mod:`dockyard.images.bootstrap` (busybox-static, debootstrap, apt);
this module turns them into images in the store:

- busybox:latest and debian:bookworm-slim: one directory -> one gzip layer -> config -> image.
- python:3.11-slim: layered on debian:bookworm-slim (bootstrapped first if missing) the way a
  Dockerfile would do it: an active overlay snapshot on the debian layer is mounted, Python is
  installed into it, and the snapshot's changes (the overlay upper dir) become the second layer.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable

from dockyard.errors import InvalidArgument
from dockyard.images import bootstrap as rootfs
from dockyard.images.store import ImageStore, NewImage
from dockyard.oci.reference import parse_normalized
from dockyard.snapshots.mount import mount_all, unmount
from dockyard.snapshots.tarfs import write_layer_from_dir

Log = Callable[[str], None]

KNOWN = {
    "busybox:latest": "busybox",
    "debian:bookworm-slim": "debian",
    "debian:12-slim": "debian",
    "python:3.11-slim": "python",
    "python:3.11-slim-bookworm": "python",
}


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Bootstrapper:
    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def bootstrap(self, name: str, log: Log) -> str:
        ref = parse_normalized(name).with_default_tag()
        kind = KNOWN.get(ref.familiar_string())
        if kind is None:
            raise InvalidArgument(
                f"cannot bootstrap {ref.familiar_string()}: known base images are busybox, "
                "debian:bookworm-slim and python:3.11-slim"
            )
        if kind == "python":
            return self._python(ref, log)
        builder = rootfs.build_busybox_rootfs if kind == "busybox" else rootfs.build_debian_rootfs
        return self._from_dir(ref, builder, log)

    def _config(self, spec: rootfs.BaseImageSpec, diff_ids: list[str], base: dict | None = None) -> bytes:
        created = _rfc3339(spec.source_date_epoch or time.time())
        cfg = dict(base or {})
        inner = dict(cfg.get("config") or {})
        env = {e.split("=", 1)[0]: e for e in inner.get("Env") or []}
        env.update({e.split("=", 1)[0]: e for e in spec.env})
        inner["Env"] = list(env.values())
        inner["Cmd"] = list(spec.cmd)
        inner["Labels"] = {**(inner.get("Labels") or {}), **spec.labels}
        history = list(cfg.get("history") or [])
        history.append({"created": created, "created_by": spec.history_comment})
        cfg.update({
            "architecture": cfg.get("architecture", "amd64"),
            "os": "linux",
            "created": created,
            "config": inner,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        })
        return json.dumps(cfg, separators=(",", ":")).encode()

    def _from_dir(self, ref, builder, log: Log) -> str:
        scratch = self.store.content.temp_dir()
        root = scratch / "rootfs"
        root.mkdir()
        try:
            spec = builder(root, log=log)
            log(f"writing layer for {ref.familiar_string()}")
            with self.store.db.lease() as lease:
                created: list[str] = []
                try:
                    layer = self.store.write_layer(lambda out: write_layer_from_dir(root, out), lease)
                    config = self._config(spec, [layer.diff_id])
                    image_id, _ = self.store.add_image(NewImage(config=config, layers=[layer], tags=[ref]),
                                                       lease, created)
                except BaseException:
                    self.store.rollback(created, lease)
                    raise
            log(f"tagged {ref.familiar_string()} ({image_id})")
            return image_id
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _python(self, ref, log: Log) -> str:
        base = self.store.lookup("debian:bookworm-slim")
        if base is None:
            log("debian:bookworm-slim is not here yet: bootstrapping it first")
            self.bootstrap("debian:bookworm-slim", log)
            base = self.store.resolve("debian:bookworm-slim")
        base_cfg = json.loads(self.store.config_bytes(base.id))
        base_layers = self.store.layers(base)
        with self.store.db.lease() as lease:
            self.store.unpack(base_layers, lease)
            parent = self.store.top_snapshot(base.id)
            key = f"bootstrap-{uuid.uuid4().hex}"
            lease.add("snapshot", key)
            scratch = self.store.content.temp_dir()
            target = scratch / "rootfs"
            target.mkdir()
            created: list[str] = []
            try:
                mounts = self.store.snapshots.prepare(key, parent)
                mount_all(mounts, target)
                try:
                    spec = rootfs.add_python(target, log=log)
                finally:
                    unmount(target)
                log(f"writing layer for {ref.familiar_string()}")
                layer = self.store.write_layer(lambda out: self.store.snapshots.diff(key, out), lease)
                diff_ids = [*base_cfg["rootfs"]["diff_ids"], layer.diff_id]
                config = self._config(spec, diff_ids, base_cfg)
                image_id, _ = self.store.add_image(
                    NewImage(config=config, layers=[*base_layers, layer], tags=[ref]), lease, created
                )
            except BaseException:
                self.store.rollback(created, lease)
                raise
            finally:
                try:
                    self.store.snapshots.remove(key)
                except Exception:  # noqa: BLE001 - already gone
                    pass
                if not os.path.ismount(target):  # never delete through a mount that failed to go
                    shutil.rmtree(scratch, ignore_errors=True)
        log(f"tagged {ref.familiar_string()} ({image_id})")
        return image_id
