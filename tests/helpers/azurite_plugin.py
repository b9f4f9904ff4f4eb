"""pytest plugin registering the session-scoped ``azurite`` fixture (listed in conftest's pytest_plugins)."""

from __future__ import annotations

from helpers.azurite import azurite

__all__ = ["azurite"]
