"""Parsing of human sizes ("16MiB") and durations ("30s") used in the config."""

from __future__ import annotations

import math
import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: object) -> int:
    """Bytes from an int or a string such as "16MiB"; ValueError when it is neither."""
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative size")
        return value
    match = _NUMBER_UNIT.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError("not a size")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as "200ms", "30s", "5m", "1h"."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int | float):
        return _sane_seconds(float(value))
    match = _NUMBER_UNIT.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError("not a duration")
    return _sane_seconds(float(match.group(1)) * _DURATION_UNITS[unit])


MAX_DURATION = 30 * 86400.0  # longer waits overflow select() and mean a typo anyway


def _sane_seconds(seconds: float) -> float:
    """Refuse NaN, infinity (TOML allows both), negatives and absurd lengths."""
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION:
        raise ValueError("duration out of range")
    return seconds


def format_size(n: int) -> str:
    """Short human form, for messages and status."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{n}B"
