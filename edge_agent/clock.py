"""Injected time, and the rule that keeps an unsynced clock out of date partitions.

Gateways often boot without a real-time clock and start at 1970 until NTP syncs.
A timestamp before ``clock.min_valid`` is treated as "clock not synced"; see
docs/clock.md for how partitions are chosen then.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

UNSYNCED_PARTITION = "unsynced"
DAY_MS = 86_400_000


class Clock(Protocol):
    def wall_ms(self) -> int:
        """Milliseconds since the epoch by the device's wall clock (may be wrong)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never jumps. Used for ages and deadlines."""
        ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, wall_ms: int, monotonic: float = 0.0) -> None:
        self.now_ms = wall_ms
        self.mono = monotonic

    def wall_ms(self) -> int:
        return self.now_ms

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)
        self.mono += seconds


def partition_for(change_ms: int, captured_ms: int, min_valid_ms: int) -> str:
    """The date partition of a change: its own time if plausible, else capture time.

    Never returns a date before ``min_valid_ms``: when neither time is plausible
    the partition is ``unsynced`` (documented, and flagged in the manifest).
    """
    for candidate in (change_ms, captured_ms):
        if candidate >= min_valid_ms:
            return datetime.fromtimestamp(candidate / 1000, tz=UTC).strftime("%Y-%m-%d")
    return UNSYNCED_PARTITION


def day_of(ts: object, min_valid_ms: int) -> int:
    """The UTC day number of a change time; -1 when it is not a plausible time."""
    return ts // DAY_MS if isinstance(ts, int) and ts >= min_valid_ms else -1


def split_by_day(change_ms: Sequence[object], min_valid_ms: int) -> list[tuple[int, int]]:
    """Index ranges [start, end) of changes whose change time falls on one UTC day.

    Changes with an implausible change time (clock not synced) form their own runs,
    so the caller can partition them by capture time instead.
    """

    def day(ts: object) -> int:
        return day_of(ts, min_valid_ms)

    if not change_ms:
        return []
    runs: list[tuple[int, int]] = []
    start = 0
    current = day(change_ms[0])
    for i in range(1, len(change_ms)):
        d = day(change_ms[i])
        if d != current:
            runs.append((start, i))
            start, current = i, d
    runs.append((start, len(change_ms)))
    return runs
