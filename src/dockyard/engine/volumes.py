"""The volumes face of the engine: what ``dockyard volume ...``, ``system df``, the Engine API and
the container lifecycle call.  Thin over :class:`~dockyard.volumes.service.VolumeService`; it adds
the Options/Report values and Docker's JSON shapes (``volume inspect``, a container's ``Mounts``).
"""

from __future__ import annotations

import builtins
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.containers.model import ContainerSpec, MountSpec
from dockyard.engine.images import rfc3339
from dockyard.engine.options import Filters
from dockyard.volumes.service import VolumeRecord, VolumeService, VolumeUsage, mask_options

if TYPE_CHECKING:
    from dockyard.engine import Engine


@dataclass
class VolumeCreateOptions:
    name: str = ""                       # "" = a generated 64-hex name
    driver: str = "local"
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class VolumePruneOptions:
    all: bool = False                    # also named volumes (else anonymous only, as Docker 23+)
    filters: Filters = field(default_factory=Filters)


@dataclass
class VolumePruneReport:
    deleted: list[str]
    reclaimed: int


class VolumeEngine:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @cached_property
    def service(self) -> VolumeService:
        return VolumeService(self.engine.db, self.engine.root)

    # -- volume commands -----------------------------------------------------------------------
    def create(self, opts: VolumeCreateOptions) -> VolumeRecord:
        rec = self.service.create(opts.name, opts.driver or "local", opts.driver_opts, opts.labels)
        self.engine.events.emit("volume", "create", rec.name, {"driver": rec.driver})
        return rec

    def list(self, filters: Filters | None = None) -> builtins.list[VolumeRecord]:
        return self.service.list((filters or Filters()).values)

    def inspect(self, name: str) -> VolumeRecord:
        return self.service.inspect(name)

    def remove(self, name: str, *, force: bool = False) -> None:
        self.service.remove(name, force=force)
        self.engine.events.emit("volume", "destroy", name)

    def prune(self, opts: VolumePruneOptions) -> VolumePruneReport:
        f = opts.filters
        f.check({"label", "label!", "all"})
        all_ = opts.all or any(v.lower() in ("1", "true") for v in f.get("all"))
        labels = [*f.get("label"), *("!" + v for v in f.get("label!"))]
        deleted, reclaimed = self.service.prune(all_=all_, labels=labels)
        for name in deleted:
            self.engine.events.emit("volume", "destroy", name)
        return VolumePruneReport(deleted, reclaimed)

    def sync(self, name: str) -> None:
        self.service.sync(name)

    def usage(self) -> builtins.list[VolumeUsage]:
        return self.service.usage()

    # -- containers ----------------------------------------------------------------------------
    def plan(self, mounts: Sequence[MountSpec], image_volumes: dict | None, tmpfs: Sequence[str] = ()
             ) -> builtins.list[MountSpec]:
        """Validate the user's mounts (Docker's daemon-side checks) and add anonymous volumes for
        the image's VOLUME paths no mount covers.  Pure but for bind-source existence."""
        from dockyard.volumes.mountspec import check_duplicates, validate
        from dockyard.volumes.mountspec import image_volumes as from_image

        out = []
        for m in mounts:
            validate(m, check_bind_source=True)
            out.append(m)
        check_duplicates(out, list(tmpfs))
        taken = {posixpath.normpath(m.target) for m in out} | {posixpath.normpath(t) for t in tmpfs}
        return out + from_image(image_volumes, taken)

    def attach(self, cid: str, mounts: Sequence[MountSpec], default_driver: str = "") -> builtins.list[MountSpec]:
        return self.service.attach(cid, mounts, default_driver)

    def detach(self, cid: str, spec: ContainerSpec, *, remove_anonymous: bool) -> None:
        remove = [m.name for m in spec.mounts if m.type == "volume" and m.anonymous] if remove_anonymous else []
        self.service.detach(cid, remove)

    def mount(self, cid: str, mounts: Sequence[MountSpec], rootfs: Path | None) -> builtins.list[MountSpec]:
        return self.service.mount_container(cid, mounts, rootfs)

    def unmount(self, cid: str) -> builtins.list[str]:
        return self.service.unmount_container(cid)

    def host_path(self, name: str) -> Path | None:
        return self.service.host_path(name)


def volume_view(rec: VolumeRecord) -> dict[str, Any]:
    """``docker volume inspect``'s shape (Engine API Volume): empty Labels/Options are null."""
    out: dict[str, Any] = {
        "CreatedAt": rfc3339(int(rec.created)),
        "Driver": rec.driver,
        "Labels": dict(rec.labels) or None,
        "Mountpoint": rec.mountpoint,
        "Name": rec.name,
        "Options": mask_options(rec.options) or None,
        "Scope": rec.scope,
    }
    if rec.status:
        out["Status"] = rec.status
    return out


def mounts_view(spec: ContainerSpec, host_path=None) -> list[dict[str, Any]]:
    """A container's ``Mounts`` as ``docker inspect`` shows them; ``host_path(name)`` gives a
    volume's host directory (None: unknown, e.g. a plugin volume not mounted)."""
    out = []
    for m in spec.mounts:
        readonly = m.readonly or "ro" in m.options
        if m.type == "volume":
            src = host_path(m.name) if host_path else None
            out.append({"Type": "volume", "Name": m.name, "Source": str(src) if src else "",
                        "Destination": m.target, "Driver": m.driver or "local",
                        "Mode": m.mode or ("" if m.from_image else "z"),
                        "RW": not readonly, "Propagation": ""})
        elif m.type == "bind":
            prop = next((o for o in m.options if o not in ("bind", "rbind")), "rprivate")
            out.append({"Type": "bind", "Source": m.source, "Destination": m.target, "Mode": m.mode,
                        "RW": not readonly, "Propagation": prop})
        else:
            out.append({"Type": m.type, "Source": "", "Destination": m.target, "Mode": "",
                        "RW": not readonly, "Propagation": ""})
    return out


def host_config_mounts(spec: ContainerSpec) -> tuple[list[str] | None, list[dict[str, Any]] | None]:
    """``HostConfig.Binds`` (the -v texts) and ``HostConfig.Mounts`` (the --mount values)."""
    binds = [m.raw for m in spec.mounts if m.raw] or None
    mounts = []
    for m in spec.mounts:
        if m.raw or m.from_image:
            continue
        d: dict[str, Any] = {"Type": m.type, "Source": m.name if m.type == "volume" else m.source,
                             "Target": m.target}
        if m.readonly:
            d["ReadOnly"] = True
        if m.type == "volume" and (m.driver_opts or m.labels or m.nocopy or m.driver):
            vo: dict[str, Any] = {}
            if m.nocopy:
                vo["NoCopy"] = True
            if m.labels:
                vo["Labels"] = m.labels
            if m.driver or m.driver_opts:
                vo["DriverConfig"] = {"Name": m.driver, **({"Options": m.driver_opts} if m.driver_opts else {})}
            d["VolumeOptions"] = vo
        elif m.type == "bind" and m.options:
            bo: dict[str, Any] = {}
            prop = next((o for o in m.options if o not in ("bind", "rbind")), "")
            if prop:
                bo["Propagation"] = prop
            if "bind" in m.options:
                bo["NonRecursive"] = True
            d["BindOptions"] = bo
        elif m.type == "tmpfs" and m.options:
            to: dict[str, Any] = {}
            for o in m.options:
                k, _, v = o.partition("=")
                if k == "size":
                    to["SizeBytes"] = _size_bytes(v)
                elif k == "mode":
                    to["Mode"] = int(v, 8)
            d["TmpfsOptions"] = to
        mounts.append(d)
    return binds, mounts or None


def _size_bytes(v: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(v[:-1]) * units[v[-1]] if v and v[-1] in units else int(v or 0)
