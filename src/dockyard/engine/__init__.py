"""The engine facade: one object per data root that every face (CLI, Engine API, compose) calls.

Parts are built lazily, so ``dockyard --help`` and ``dockyard version`` touch nothing on disk."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

DEFAULT_ROOT = Path("/var/lib/dockyard")


def default_root() -> Path:
    return Path(os.environ.get("DOCKYARD_ROOT") or DEFAULT_ROOT)


class Engine:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root else default_root()

    @cached_property
    def content(self):
        from dockyard.content.store import ContentStore

        return ContentStore(self.root / "content")

    @cached_property
    def db(self):
        from dockyard.metadata.db import MetadataDB

        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        return MetadataDB(self.root / "dockyard.db")

    @cached_property
    def snapshotter(self):
        from dockyard.snapshots.overlay import OverlaySnapshotter

        return OverlaySnapshotter(self.root / "snapshots")

    @cached_property
    def image_store(self):
        from dockyard.images.store import ImageStore

        return ImageStore(self.content, self.db, self.snapshotter)

    @cached_property
    def images(self):
        from dockyard.engine.images import ImageEngine

        return ImageEngine(self.image_store, events=self.events)

    @cached_property
    def system(self):
        from dockyard.engine.system import SystemEngine

        return SystemEngine(self)

    @cached_property
    def containers(self):
        from dockyard.engine.containers import ContainerEngine

        return ContainerEngine(self)

    @cached_property
    def volumes(self):
        from dockyard.engine.volumes import VolumeEngine

        return VolumeEngine(self)

    @cached_property
    def networks(self):
        from dockyard.engine.networks import NetworkEngine

        return NetworkEngine(self)

    @cached_property
    def build(self):
        from dockyard.engine.build import BuildEngine

        return BuildEngine(self)

    @cached_property
    def events(self):
        from dockyard.engine.events import EventLog

        self.root.mkdir(parents=True, exist_ok=True)
        return EventLog(self.root / "events.log")

    @cached_property
    def remote(self):
        from dockyard.engine.remote import RemoteEngine

        return RemoteEngine(self.image_store, self.root, events=self.events)
