"""Volume drivers by name: the one place a driver name becomes a driver object.

- ``local``: :class:`~dockyard.volumes.local.LocalDriver` over ``<dataroot>/volumes``;
- ``azureblob`` (alias ``azurefile``, the name Docker users meet in tutorials): the built-in Azure
  Blob driver, imported only when asked for (the SDK is heavy), with its state in
  ``<dataroot>/volumes-azure``;
- anything else: a Docker volume plugin found by :func:`dockyard.volumes.plugin.find_plugin`.

Drivers are cached per process and data root, so a plugin is activated once per command.  An
unknown name raises InvalidArgument with Docker's words:
``error looking up volume plugin NAME: plugin "NAME" not found``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from dockyard.errors import InvalidArgument
from dockyard.volumes import VolumeDriver

BUILTIN = ("local", "azureblob", "azurefile")
AZURE_ALIASES = ("azureblob", "azurefile")

_cache: dict[tuple[str, str], VolumeDriver] = {}
_lock = threading.Lock()


def canonical(name: str) -> str:
    """The driver a name selects ("azurefile" is "azureblob"); plugin names are kept as given."""
    name = name or "local"
    return "azureblob" if name in AZURE_ALIASES else name


def get_driver(name: str, root: Path | str) -> VolumeDriver:
    """The driver called ``name`` for the data root ``root`` (see the module docstring)."""
    key = (canonical(name), str(root))
    with _lock:
        drv = _cache.get(key)
        if drv is None:
            drv = _make(key[0], Path(root))
            _cache[key] = drv
        return drv


def forget(root: Path | str | None = None) -> None:
    """Drop cached drivers (tests that restart a plugin, or a data root going away)."""
    with _lock:
        for key in [k for k in _cache if root is None or k[1] == str(root)]:
            del _cache[key]


def _make(name: str, root: Path) -> VolumeDriver:
    if name == "local":
        from dockyard.volumes.local import LocalDriver

        return LocalDriver(root / "volumes")
    if name == "azureblob":
        from dockyard.volumes import azureblob

        return azureblob.AzureBlobDriver(root / "volumes-azure")
    from dockyard.volumes.plugin import PluginDriver, find_plugin

    address = find_plugin(name)
    if address is None:
        raise InvalidArgument(f'error looking up volume plugin {name}: plugin "{name}" not found')
    return PluginDriver.activate(name, address)
