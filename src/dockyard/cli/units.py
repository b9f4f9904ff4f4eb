"""Docker's human units (github.com/docker/go-units): sizes and durations as the docker CLI prints them."""

from __future__ import annotations

import re

from dockyard.errors import InvalidArgument

_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _go_g(value: float, precision: int) -> str:
    """Go's %.*g: like Python's, without the exponent form for the sizes we print."""
    s = f"{value:.{precision}g}"
    if "e" in s:
        s = f"{value:.0f}"
    return s


def human_size(size: float, precision: int = 3) -> str:
    """HumanSizeWithPrecision: 4261550 -> "4.26MB"."""
    i = 0
    while size >= 1000 and i < len(_DECIMAL) - 1:
        size /= 1000.0
        i += 1
    return f"{_go_g(size, precision)}{_DECIMAL[i]}"


def human_duration(seconds: float) -> str:
    """HumanDuration: how long ago, as "2 months", "About an hour", "Less than a second"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def ram_in_bytes(value: str) -> int:
    """RAMInBytes: "512m" -> 536870912 (binary units; b, k, m, g, t, p; optional trailing "b")."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", value.strip().lower())
    if not m:
        raise InvalidArgument(f"invalid size: '{value}'")
    number = float(m.group(1))
    unit = m.group(2)
    return int(number * (_BINARY[unit] if unit else 1))
