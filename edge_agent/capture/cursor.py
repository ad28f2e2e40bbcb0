"""The compound (cursor, key) watermark of timestamp capture, as pure logic.

Rows are polled with ``cursor >= watermark - lag`` in (cursor, key) order. A
row is emitted once per (key, cursor value): the ``seen`` set holds what was
emitted inside the lag window, so rows with equal cursor values split across
polls, and late commits landing inside the window, are neither lost nor
emitted twice. Only what is in sealed files counts for the durable state
(:meth:`CursorState.sealed_up_to`); after a crash the window is read again and
whatever was emitted but not sealed comes out again.

Cursor values are UTC epoch milliseconds (the SQL side normalises ISO text,
epoch numbers and Julian days; see capture/timestamp.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[Hashable, ...]


@dataclass(frozen=True)
class Checkpoint:
    """What is stored with each sealed file: enough to resume without loss or repeats."""

    watermark: int | None  # largest cursor value in sealed files (epoch ms)
    seen: frozenset[tuple[Key, int]]  # (key, cursor) sealed inside the lag window
    next_pos: int  # the next position to give out
    # A snapshot re-reads the table from the start: rows with a cursor up to this come
    # out as op "r"; None once the re-read has reached the end and is sealed.
    snapshot_until: int | None = None

    def to_json(self) -> str:
        # One json.dumps call: keys are lists; a bytes key value becomes {"b64": ...}.
        return json.dumps(
            {
                "watermark": self.watermark,
                "next_pos": self.next_pos,
                "seen": [[k, c] for k, c in self.seen],
                **({"snapshot_until": self.snapshot_until} if self.snapshot else {}),
            },
            default=_bytes_to_json,
        )

    @property
    def snapshot(self) -> bool:
        return self.snapshot_until is not None

    def restarted(self) -> Checkpoint:
        """The checkpoint of a snapshot: read from the start again, positions going on;
        what was captured so far (up to the highest cursor seen) comes out as op "r"."""
        marks = [c for _, c in self.seen] + ([self.watermark] if self.watermark else [])
        return Checkpoint(None, frozenset(), self.next_pos, max(marks) if marks else None)

    @staticmethod
    def from_json(text: str | None) -> Checkpoint:
        if not text:
            return Checkpoint(None, frozenset(), 1)
        data = json.loads(text, object_hook=_json_to_bytes)
        seen = frozenset((tuple(k), int(c)) for k, c in data["seen"])
        return Checkpoint(
            data["watermark"], seen, int(data["next_pos"]), data.get("snapshot_until")
        )


def _bytes_to_json(value: object) -> dict[str, str]:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    raise TypeError(f"cannot store {type(value).__name__} in a cursor checkpoint")


def _json_to_bytes(obj: dict[str, Any]) -> Any:
    return base64.b64decode(obj["b64"]) if set(obj) == {"b64"} else obj


@dataclass
class CursorState:
    lag_ms: int
    durable: Checkpoint
    emitted: dict[tuple[Key, int], int] = field(default_factory=dict)  # -> position
    next_pos: int = 0

    top: int | None = None  # the largest cursor emitted or sealed (kept, not recomputed)
    snapshot_end: int | None = None  # a snapshot's re-read reached the end at this position

    def __post_init__(self) -> None:
        self.rewind()

    def low_bound(self) -> int | None:
        """Poll rows with cursor >= this (None: from the beginning)."""
        return self.top - self.lag_ms if self.top is not None else None

    def accept(self, rows: Iterable[tuple[Key, int, Any]]) -> list[tuple[int, Key, int, Any]]:
        """Rows (key, cursor, payload) in a poll; returns the new ones with positions."""
        out = []
        for key, cursor, payload in rows:
            if (key, cursor) in self.emitted:
                continue
            self.emitted[(key, cursor)] = self.next_pos
            out.append((self.next_pos, key, cursor, payload))
            self.next_pos += 1
            if self.top is None or cursor > self.top:
                self.top = cursor
        return out

    def checkpoint_for(self, last_pos: int) -> Checkpoint:
        """The checkpoint once every position up to ``last_pos`` is in a sealed file.

        Pure: apply it with :meth:`commit` only after it is stored durably.
        """
        sealed = {kc: p for kc, p in self.emitted.items() if p <= last_pos}
        marks = [c for _, c in sealed]
        if self.durable.watermark is not None:
            marks.append(self.durable.watermark)
        watermark = max(marks) if marks else None
        floor = watermark - self.lag_ms if watermark is not None else None
        seen = frozenset(kc for kc in sealed if floor is None or kc[1] >= floor)
        return Checkpoint(watermark, seen, last_pos + 1, self._snapshot_after(last_pos))

    def _snapshot_after(self, last_pos: int) -> int | None:
        """The snapshot bound once ``last_pos`` is sealed: cleared when the re-read's end
        is in sealed files."""
        if self.snapshot_end is not None and last_pos >= self.snapshot_end:
            return None
        return self.durable.snapshot_until

    def snapshot_finished(self) -> Checkpoint | None:
        """When a snapshot's end was sealed without a file after it: the checkpoint that
        says it is finished (to store), else None."""
        if not self.durable.snapshot or self.snapshot_end is None:
            return None
        if self.durable.next_pos - 1 < self.snapshot_end:
            return None
        return Checkpoint(self.durable.watermark, self.durable.seen, self.durable.next_pos)

    def commit(self, checkpoint: Checkpoint) -> None:
        self.durable = checkpoint
        if checkpoint.watermark is not None:
            self._forget(checkpoint.watermark - self.lag_ms)

    def sealed_up_to(self, last_pos: int) -> Checkpoint:
        checkpoint = self.checkpoint_for(last_pos)
        self.commit(checkpoint)
        return checkpoint

    def _forget(self, floor: int | None) -> None:
        """Drop entries below the window that are already sealed (memory stays bounded)."""
        if floor is None:
            return
        last = self.durable.next_pos - 1
        self.emitted = {kc: p for kc, p in self.emitted.items() if kc[1] >= floor or p > last}

    def rewind(self) -> None:
        """Forget unsealed emissions (after a failure they are read again)."""
        self.snapshot_end = None
        self.emitted = dict.fromkeys(self.durable.seen, 0)
        self.next_pos = self.durable.next_pos
        marks = [c for _, c in self.durable.seen]
        if self.durable.watermark is not None:
            marks.append(self.durable.watermark)
        self.top = max(marks) if marks else None
