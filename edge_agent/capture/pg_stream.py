"""Reading a logical slot: decode, number, batch (the peek itself: capture/pg_peek.py).

Positions. Every row change in the slot's stream (an insert, update or
delete of any published table, and each table of a TRUNCATE) takes the next
position, in commit order; an update that moved its key takes two (a delete
of the old key, then the row). ``_pos`` is gap-free, and a re-read from the
same transaction boundary gives the same positions. A *boundary* is (the end
LSN of a transaction, the last position it took); the capture checkpoints the
newest one whose position is durable, and the slot is advanced to that LSN and
no further (capture/pg_logical.py). A peek always starts at the slot's
confirmed position, so transactions read before (whose commit starts below
``read_end``) are skipped by their first byte, not decoded or numbered again.

Memory. A page ends at ``max_bytes`` of messages, in the middle of a
transaction if need be (the peek's cursor stays open for the next page): a
million-row UPDATE streams through the writer, it is never held whole.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from edge_agent.bronze.schema import BatchSchema, Envelope
from edge_agent.capture import pgoutput as po
from edge_agent.capture.pages import ChangeBatch
from edge_agent.capture.pg_peek import Peek
from edge_agent.capture.pg_rows import OPS, KeyBook, Relations, RelInfo, change_row, truncate_row
from edge_agent.capture.pg_slot import Slot
from edge_agent.config_sources import SourceConfig
from edge_agent.errors import SourceError
from edge_agent.sources.postgres import Con

_STILL_READ = (b"C", b"R")  # in a transaction read before: its end, and table descriptions


@dataclass
class _Tx:
    xid: int
    commit_lsn: int
    ts_ms: int
    skip: bool


@dataclass
class StreamPage:
    batches: list[ChangeBatch] = field(default_factory=list)
    changes_read: int = 0  # positions taken (captured or not)
    done: bool = False  # the peek is exhausted
    more: bool = False  # ... but it stopped at its change limit: more may wait


class Stream:
    """One pass over the slot from ``read_end`` with positions from ``pos``."""

    def __init__(
        self,
        cfg: SourceConfig,
        slot: Slot,
        peek: Con,
        catalog: Con,
        start: tuple[int, int],
        keys: KeyBook,
    ) -> None:
        self.cfg, self.slot = cfg, slot
        self.read_end, self.pos = start
        self.peek = Peek(slot, peek)
        self.peek.confirmed = self.read_end
        self.relations = Relations(cfg, catalog, keys)
        self.boundaries: deque[tuple[int, int]] = deque()  # (end LSN, last position)
        self.reread = 0  # messages read before and skipped, since the slot last moved
        self._tx: _Tx | None = None
        self._buffers: list[tuple[BatchSchema, list[tuple[object, ...]]]] = []

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    def close(self) -> None:
        self.peek.close()

    def read(self, max_bytes: int, sealed: dict[str, int], env: Envelope) -> StreamPage:
        page = StreamPage()
        for raw in self.peek.messages(max_bytes):
            if self._tx is not None and self._tx.skip and raw[:1] not in _STILL_READ:
                self.reread += 1  # read before: not decoded again
                continue
            try:
                msg = po.decode(raw)
            except po.ProtocolError as exc:
                raise SourceError(f"slot {self.slot.name!r}: undecodable message: {exc}") from exc
            self._take(msg, sealed, page)
        page.done = not self.peek.open
        page.more = page.done and self.peek.exhausted_full
        page.batches = [ChangeBatch.of(s, rows, env) for s, rows in self._buffers if rows]
        self._buffers = []
        return page

    def _take(self, msg: po.Decoded, sealed: dict[str, int], page: StreamPage) -> None:
        if isinstance(msg, po.Begin):
            skip = msg.final_lsn < self.read_end
            self._tx = _Tx(msg.xid, msg.final_lsn, po.unix_ms(msg.commit_ts_us), skip)
            return
        if isinstance(msg, po.Relation):
            self.relations.learn(msg)  # sent once per peek: later transactions rely on it
            return
        tx = self._tx
        if tx is None:
            if isinstance(msg, po.Message):
                return  # non-transactional: another application's, not a row change
            raise SourceError(
                f"slot {self.slot.name!r}: a {type(msg).__name__} outside a transaction"
            )
        if tx.skip:
            if isinstance(msg, po.Commit):
                self._tx = None
            return
        if isinstance(msg, po.Commit):
            self._commit(msg)
        elif isinstance(msg, po.Update) and self.relations.moved(msg):
            self._number(po.Delete(msg.relation, msg.old_kind, msg.old or ()), tx, sealed, page)
            self._number(msg, tx, sealed, page)
        elif isinstance(msg, (po.Insert, po.Update, po.Delete)):
            self._number(msg, tx, sealed, page)
        elif isinstance(msg, po.Truncate):
            for oid in msg.relations:
                self.pos += 1
                page.changes_read += 1
                found = self._rel(oid, sealed)
                if found is not None:
                    head: list[object] = [self.pos, tx.xid, "t", tx.ts_ms]
                    self._rows(found[1]).append(truncate_row(*found, head, tx.commit_lsn))

    def _commit(self, msg: po.Commit) -> None:
        self.read_end = msg.end_lsn
        if self.boundaries and self.boundaries[-1][1] == self.pos:
            self.boundaries.pop()  # no change since: the later boundary says as much
        self.boundaries.append((msg.end_lsn, self.pos))
        self._tx = None

    def _number(
        self,
        msg: po.Insert | po.Update | po.Delete,
        tx: _Tx,
        sealed: dict[str, int],
        page: StreamPage,
    ) -> None:
        self.pos += 1
        page.changes_read += 1
        found = self._rel(msg.relation, sealed)
        if found is None:
            return
        head: list[object] = [self.pos, tx.xid, OPS[type(msg)], tx.ts_ms]
        try:
            row = change_row(*found, msg, head, tx.commit_lsn)
        except (ValueError, TypeError) as exc:
            raise SourceError(
                f"slot {self.slot.name!r}: a value of {found[0].name} could not be read ({exc})"
            ) from exc
        self._rows(found[1]).append(row)

    def _rel(self, oid: int, sealed: dict[str, int]) -> tuple[RelInfo, BatchSchema] | None:
        rel = self.relations.known.get(oid)
        if rel is None:
            raise SourceError(
                f"slot {self.slot.name!r}: a change of relation {oid} before its description"
            )
        if rel.schema is None or self.pos <= sealed.get(rel.name, -1):
            return None  # not configured, or already in a sealed file
        return rel, rel.schema

    def _rows(self, schema: BatchSchema) -> list[tuple[object, ...]]:
        if self._buffers and self._buffers[-1][0] is schema:
            return self._buffers[-1][1]
        for s, rows in self._buffers:
            if s is schema:
                return rows
        fresh: list[tuple[object, ...]] = []
        self._buffers.append((schema, fresh))
        return fresh
