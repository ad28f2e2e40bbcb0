"""Building blocks of the config loader: a section reader that collects errors, and
converters that raise ValueError for a bad value (the reader turns that into a
ConfigError naming the field, the value and the fix)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.errors import ConfigError
from edge_agent.units import parse_duration, parse_size

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
NAME_FIX = "use 1-64 characters from A-Z a-z 0-9 . _ -"
T = TypeVar("T")
SIZE_FIX = 'use a byte count or a number with a unit, e.g. "16MiB", "512KiB", "1GiB"'
DURATION_FIX = (
    'use a number of seconds or a number with a unit, e.g. "200ms", "30s", "5m" (at most 30 days)'
)


class Section:
    """Reads one TOML table, collecting errors instead of stopping at the first."""

    def __init__(self, data: object, prefix: str, errors: list[ConfigError]) -> None:
        self.prefix = prefix
        self.errors = errors
        self.data: dict[str, Any] = {}
        if isinstance(data, dict):
            self.data = dict(data)
        elif data is not None:
            errors.append(ConfigError(prefix, data, "must be a table ([section])"))

    def get(self, key: str, default: T, convert: Callable[[Any], T], fix: str) -> T:
        if key not in self.data:
            return default
        raw = self.data.pop(key)
        try:
            return convert(raw)
        except (ValueError, TypeError):
            self.errors.append(ConfigError(f"{self.prefix}.{key}", raw, fix))
            return default

    def finish(self, known: str) -> None:
        for key, value in self.data.items():
            fix = f"unknown key; known keys here: {known}"
            self.errors.append(ConfigError(f"{self.prefix}.{key}", value, fix))


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(raw: Any) -> str:
        if raw not in options:
            raise ValueError(raw)
        return str(raw)

    return convert


def name_of(raw: Any) -> str:
    if not isinstance(raw, str) or not NAME_RE.match(raw):
        raise ValueError(raw)
    return raw


def device(raw: Any) -> str:
    return "" if raw == "" else name_of(raw)


def string(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise ValueError(raw)
    return raw


def path(raw: Any) -> Path:
    return Path(string(raw)).expanduser()


def integer(low: int, high: int) -> Callable[[Any], int]:
    def convert(raw: Any) -> int:
        value = int(raw) if isinstance(raw, str) and raw.strip().isdigit() else raw
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(raw)
        return value

    return convert


def positive_duration(raw: Any) -> float:
    value = parse_duration(raw)
    if value <= 0:
        raise ValueError(raw)
    return value


def positive_size(raw: Any) -> int:
    value = parse_size(raw)
    if value <= 0:
        raise ValueError(raw)
    return value


def iso_date(raw: Any) -> date:
    if isinstance(raw, date):
        return raw
    return date.fromisoformat(str(raw))


def has_error(errors: list[ConfigError], field: str) -> bool:
    return any(e.field == field for e in errors)


def text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(raw)
    return raw
