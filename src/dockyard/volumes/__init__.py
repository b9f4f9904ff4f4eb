"""Volumes: the VolumeDriver seam (the shape of Docker's volume plugin protocol) and its drivers.

Drivers are chosen by name through :func:`dockyard.volumes.registry.get_driver` ("local", "azureblob"
(alias "azurefile"), or a plugin found in /run/docker/plugins / /etc/docker/plugins /
/usr/lib/docker/plugins).  The volume service (metadata in SQLite, reference counting by container)
calls them; containers only ever see the host path returned by ``mount``.

Lifecycle: ``create(name, opts)`` once; ``mount(name, ref)`` before each container start that uses
it (``ref`` = container id; the driver counts refs and may mount/sync on the first one);
``unmount(name, ref)`` after the container stops (the last ref flushes/unmounts); ``remove(name)``
when no container uses it.  Errors: InvalidArgument (bad option, named in the message), NotFound,
Unavailable (the backend cannot be reached); messages never contain credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class Volume:
    """A volume as a driver reports it (Docker's volume inspect fields)."""

    name: str
    driver: str
    mountpoint: str                               # host path (may be empty until mounted, for plugins)
    options: dict[str, str] = field(default_factory=dict)   # as given (secrets masked when shown)
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    status: dict[str, object] = field(default_factory=dict)  # driver-specific, shown by inspect
    scope: str = "local"


class VolumeDriver(Protocol):
    name: str

    def create(self, name: str, opts: Mapping[str, str]) -> Volume: ...
    def mount(self, name: str, ref: str) -> Path: ...
    def unmount(self, name: str, ref: str) -> None: ...
    def remove(self, name: str) -> None: ...
    def path(self, name: str) -> Path | None: ...
    def get(self, name: str) -> Volume: ...
    def list(self) -> list[Volume]: ...
    def capabilities(self) -> dict[str, str]: ...  # {"Scope": "local"|"global"}
