"""One peek of a logical slot, read through a server-side cursor a bounded page at a time.

A peek returns whole transactions up to ``PEEK_CHANGES`` changes (the server
checks the count only at transaction ends: one huge transaction still comes
whole, which the cursor then streams). A page ends at ``max_bytes`` of
messages, checked per message; what was fetched beyond it waits for the next
page. Before each peek the slot's confirmed position is compared with the
agent's checkpoint: a slot that moved beyond it (dropped and recreated, or
advanced by another consumer while the agent runs) is a gap, raised as a
``SourceError`` so the source is opened again and says so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import psycopg

from edge_agent.capture.pg_slot import Slot, lsn_text
from edge_agent.errors import SourceError
from edge_agent.sources.postgres import Con, map_error

FETCH = 2000
PEEK_CHANGES = 100_000


class Peek:
    def __init__(self, slot: Slot, con: Con) -> None:
        self.slot, self.con = slot, con
        self.confirmed = 0  # the checkpoint's LSN: the slot must not be beyond it
        self.exhausted_full = False  # the last peek hit PEEK_CHANGES: more may wait
        self._cursor: psycopg.Cursor[tuple[Any, ...]] | None = None
        self._rows: deque[bytes] = deque()
        self._messages = 0

    @property
    def open(self) -> bool:
        return self._cursor is not None

    def _start(self) -> psycopg.Cursor[tuple[Any, ...]]:
        state = self.slot.state()
        if state is None or state.confirmed > self.confirmed:
            where = "is gone" if state is None else f"moved to {lsn_text(state.confirmed)}"
            raise SourceError(
                f"slot {self.slot.name!r} {where} while the agent runs (its checkpoint is "
                f"{lsn_text(self.confirmed)}): dropped and created again, or read by another "
                "consumer; the source is opened again, which reports the gap and re-snapshots"
            )
        cursor = self.con.cursor(name="edge_agent_peek")
        self._cursor = cursor
        self._messages = 0
        cursor.execute(self.slot.peek_sql(PEEK_CHANGES))
        return cursor

    def messages(self, max_bytes: int) -> Iterator[bytes]:
        """Messages until ``max_bytes`` (at least one) or the end of the peek (then
        ``open`` is False)."""
        taken = 0
        try:
            cursor = self._cursor or self._start()
            while taken < max_bytes:
                if not self._rows:
                    fetched = cursor.fetchmany(FETCH)
                    if not fetched:
                        self.exhausted_full = self._messages >= PEEK_CHANGES
                        self.close()
                        return
                    self._rows.extend(bytes(r[0]) for r in fetched)
                raw = self._rows.popleft()
                taken += len(raw)
                self._messages += 1
                yield raw
        except psycopg.Error as exc:
            self.close()
            raise map_error(exc, self.slot.where) from exc

    def close(self) -> None:
        """End the peek (its transaction): a transaction half read is read again."""
        cur, self._cursor = self._cursor, None
        self._rows.clear()
        if cur is None:
            return
        try:
            cur.close()
            self.con.rollback()
        except psycopg.Error:
            self.con.close()  # a lost connection: the cursor closes with it
            cur.close()
