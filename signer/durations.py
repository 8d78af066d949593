"""Durations in configuration: ``"45s"``, ``"10m"``, ``"12h"``, ``"30d"`` or integer seconds."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration(value: object) -> int:
    """Return ``value`` as whole seconds; raise ``ValueError`` naming the accepted forms."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (match := _PATTERN.match(value)):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration like '30s', '10m', '12h', '30d', got {value!r}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds
