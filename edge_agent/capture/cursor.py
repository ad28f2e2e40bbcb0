"""The compound (cursor, key) watermark of timestamp capture, as pure logic.

Rows are polled with ``cursor >= watermark - lag`` in (cursor, key) order. A
row is emitted once per (key, cursor value): the window holds what was emitted
inside the lag window (only that: memory does not grow with a backlog), so
rows with equal cursor values split across polls, and late commits landing
inside the window, are neither lost nor emitted twice. Only what is in sealed
files counts for the durable state (:meth:`CursorState.sealed_up_to`); after a
crash the window is read again and whatever was emitted but not sealed comes
out again.

Cursor values are UTC epoch milliseconds (the SQL side normalises ISO text,
epoch numbers and Julian days; see capture/timestamp.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class SortedPage(Protocol):
    """One poll page, in (cursor, key) order: cursor values never decrease."""

    def __len__(self) -> int: ...

    def cursor(self, index: int) -> int:
        """The cursor value of one row (cheap: called a few times per page)."""
        ...

    def pairs(self, start: int, stop: int) -> list[tuple[Key, int]]:
        """The (key, cursor) pairs of rows ``start`` to ``stop`` (a slice, read at once)."""
        ...

    def narrow(self) -> SortedPage:
        """The same page holding only its keys and cursor values, in memory of its own:
        what the state keeps of the newest page (the rest is the writer's, counted)."""
        ...


@dataclass(frozen=True)
class Accepted:
    """What a page brings that was not emitted before: the rows ``kept`` (indexes into
    the page, in order) and every row from ``fresh_from`` on; positions from
    ``first_pos``, in that order."""

    kept: list[int]
    fresh_from: int
    size: int
    first_pos: int

    @property
    def count(self) -> int:
        return len(self.kept) + self.size - self.fresh_from

    @property
    def last_pos(self) -> int:
        return self.first_pos + self.count - 1

    def index_of(self, pos: int) -> int:
        """The page row that got position ``pos``."""
        offset = pos - self.first_pos
        if offset < len(self.kept):
            return self.kept[offset]
        return self.fresh_from + offset - len(self.kept)

    def runs(self) -> list[tuple[int, int]]:
        """The emitted rows as [start, stop) ranges of the page, in position order."""
        out: list[tuple[int, int]] = []
        for i in self.kept:
            if out and out[-1][1] == i:
                out[-1] = (out[-1][0], i + 1)
            else:
                out.append((i, i + 1))
        if self.fresh_from < self.size:
            if out and out[-1][1] == self.fresh_from:
                out[-1] = (out[-1][0], self.size)
            else:
                out.append((self.fresh_from, self.size))
        return out


def first_above(page: SortedPage, bound: int | None, strict: bool) -> int:
    """The first row whose cursor is above ``bound`` (``strict``) or at least ``bound``:
    a binary search, the page being in cursor order."""
    if bound is None:
        return 0
    lo, hi = 0, len(page)
    while lo < hi:
        mid = (lo + hi) // 2
        c = page.cursor(mid)
        if c > bound or (not strict and c == bound):
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class _Latest:
    """The newest page, kept as the capture read it until the next one comes: a seal
    inside it needs its cursor values, and only its tail joins the window."""

    page: SortedPage
    accepted: Accepted
    top_before: int | None


@dataclass
class CursorState:
    """The emitted (key, cursor) pairs that still matter, and the positions given out.

    Memory is the lag window, not the backlog: ``window`` holds the pairs with a
    cursor at least ``top - lag`` (what a poll reads again), the newest page stays
    as the capture's own arrays until the next page. A file is sealed inside the
    newest page or at its start (the writer seals while the page is written, or
    later with everything written), which is all :meth:`checkpoint_for` needs.
    """

    lag_ms: int
    durable: Checkpoint
    window: dict[tuple[Key, int], int] = field(default_factory=dict)  # -> position
    next_pos: int = 0

    top: int | None = None  # the largest cursor emitted or sealed (kept, not recomputed)
    snapshot_end: int | None = None  # a snapshot's re-read reached the end at this position
    latest: _Latest | None = None

    def __post_init__(self) -> None:
        self.rewind()

    def low_bound(self) -> int | None:
        """Poll rows with cursor >= this (None: from the beginning)."""
        return self.top - self.lag_ms if self.top is not None else None

    def accept_page(self, page: SortedPage) -> Accepted:
        """A poll page (cursor >= :meth:`low_bound`, in (cursor, key) order): which rows
        are new, with their positions. Only rows at or below the current top can have
        been emitted before; they are looked up, the rest is new as a whole."""
        self._settle()
        top0 = self.top
        split = first_above(page, top0, strict=True)
        head = page.pairs(0, split) if split else []
        kept = [i for i, pair in enumerate(head) if pair not in self.window]
        accepted = Accepted(kept, split, len(page), self.next_pos)
        for offset, i in enumerate(kept):
            self.window[head[i]] = accepted.first_pos + offset
        self.next_pos += accepted.count
        if split < len(page):
            self.top = page.cursor(len(page) - 1)
        if accepted.count:
            self.latest = _Latest(page.narrow(), accepted, top0)
        return accepted

    def accept(self, rows: Iterable[tuple[Key, int, Any]]) -> list[tuple[int, Key, int, Any]]:
        """Rows (key, cursor, payload) of a poll; returns the new ones with positions."""
        page = ListPage(list(rows))
        accepted = self.accept_page(page)
        out = []
        for offset in range(accepted.count):
            key, cursor, payload = page.rows[accepted.index_of(accepted.first_pos + offset)]
            out.append((accepted.first_pos + offset, key, cursor, payload))
        return out

    def _settle(self) -> None:
        """The newest page's tail joins the window; pairs below it are forgotten."""
        if self.top is None:
            return
        floor = self.top - self.lag_ms
        latest, self.latest = self.latest, None
        if latest is not None:
            acc = latest.accepted
            start = max(acc.fresh_from, first_above(latest.page, floor, strict=False))
            pos = acc.first_pos + len(acc.kept) + start - acc.fresh_from
            for offset, pair in enumerate(latest.page.pairs(start, acc.size)):
                self.window[pair] = pos + offset
        if any(c < floor for _, c in self.window):
            self.window = {kc: p for kc, p in self.window.items() if kc[1] >= floor}

    def checkpoint_for(self, last_pos: int) -> Checkpoint:
        """The checkpoint once every position up to ``last_pos`` is in a sealed file.

        Pure: apply it with :meth:`commit` only after it is stored durably.
        """
        top, tail = self._sealed_top(last_pos)
        marks = [m for m in (top, self.durable.watermark) if m is not None]
        watermark = max(marks) if marks else None
        floor = watermark - self.lag_ms if watermark is not None else None
        pairs = [kc for kc, p in self.window.items() if p <= last_pos] + tail(floor)
        seen = frozenset(kc for kc in pairs if floor is None or kc[1] >= floor)
        return Checkpoint(watermark, seen, last_pos + 1, self._snapshot_after(last_pos))

    def _sealed_top(
        self, last_pos: int
    ) -> tuple[int | None, Callable[[int | None], list[tuple[Key, int]]]]:
        """The largest cursor at positions up to ``last_pos``, and the sealed pairs of
        the newest page above a floor."""
        latest = self.latest
        if latest is None or last_pos < latest.accepted.first_pos:
            start = latest.accepted.first_pos if latest else self.next_pos
            if last_pos < start - 1:
                raise ValueError(
                    f"cursor checkpoint asked for position {last_pos}, before the newest "
                    f"page (from {start}): only a seal inside or after it can be recorded"
                )
            return (latest.top_before if latest else self.top), lambda floor: []
        acc = latest.accepted
        last_index = acc.index_of(min(last_pos, acc.last_pos))
        top = latest.page.cursor(last_index)
        if latest.top_before is not None:
            top = max(top, latest.top_before)

        def tail(floor: int | None) -> list[tuple[Key, int]]:
            if last_index < acc.fresh_from:
                return []
            start = max(acc.fresh_from, first_above(latest.page, floor, strict=False))
            return latest.page.pairs(start, last_index + 1) if start <= last_index else []

        return top, tail

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

    def sealed_up_to(self, last_pos: int) -> Checkpoint:
        checkpoint = self.checkpoint_for(last_pos)
        self.commit(checkpoint)
        return checkpoint

    def rewind(self) -> None:
        """Forget unsealed emissions (after a failure they are read again)."""
        self.snapshot_end = None
        self.latest = None
        self.window = dict.fromkeys(self.durable.seen, 0)
        self.next_pos = self.durable.next_pos
        marks = [c for _, c in self.durable.seen]
        if self.durable.watermark is not None:
            marks.append(self.durable.watermark)
        self.top = max(marks) if marks else None


@dataclass
class ListPage:
    """A page of (key, cursor, payload) rows already in Python (the exact read)."""

    rows: list[tuple[Key, int, Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def cursor(self, index: int) -> int:
        return self.rows[index][1]

    def pairs(self, start: int, stop: int) -> list[tuple[Key, int]]:
        return [(k, c) for k, c, _ in self.rows[start:stop]]

    def narrow(self) -> SortedPage:
        return ListPage([(k, c, None) for k, c, _ in self.rows])
