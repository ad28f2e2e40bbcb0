"""Reading a logical slot: peek through a server-side cursor, decode, number, batch.

Positions. Every row change in the slot's stream (an insert, update or
delete of any published table, and each table of a TRUNCATE) takes the next
position, in commit order: ``_pos`` is gap-free and a re-read from the same
transaction boundary gives the same positions. A *boundary* is (the end LSN of
a transaction, the last position it took); the capture keeps the boundaries of
what it read and checkpoints the newest one whose position is durable, and the
slot is advanced to that LSN and no further (capture/pg_logical.py). A peek
always starts at the slot's confirmed position, so transactions read before
(whose commit starts below ``read_end``) are skipped, not numbered again.

Memory. The peek's result is read ``FETCH`` rows at a time from a cursor and a
page ends at ``max_bytes`` of messages, in the middle of a transaction if need
be (the cursor stays open for the next page): a million-row UPDATE streams
through the writer, it is never held whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from edge_agent.bronze.schema import BatchSchema, Envelope, batch_schema
from edge_agent.capture import pgoutput as po
from edge_agent.capture.pages import ChangeBatch
from edge_agent.capture.pg_slot import HEARTBEAT_PREFIX, Slot
from edge_agent.capture.pg_values import Convert, convert_row, relation_key, relation_spec
from edge_agent.config_sources import SourceConfig
from edge_agent.errors import SourceError
from edge_agent.sources.postgres import Con, map_error

FETCH = 2000
_STILL_READ = (b"C", b"R")  # in a transaction read before: its end, and table descriptions
_OPS = {po.Insert: "c", po.Update: "u", po.Delete: "d"}


@dataclass
class RelInfo:
    name: str
    schema: BatchSchema | None  # None: a published table this source does not capture
    converters: tuple[Convert, ...]
    columns: tuple[tuple[str, int, int], ...]  # (name, type oid, typmod) as the log sent them
    key: tuple[int, ...]  # indexes of the key columns

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self.columns)


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
    bytes_read: int = 0
    done: bool = False  # the peek is exhausted: nothing more now


class Stream:
    """One pass over the slot from ``read_end`` with positions from ``pos``."""

    def __init__(
        self, cfg: SourceConfig, slot: Slot, peek: Con, catalog: Con, read_end: int, pos: int
    ) -> None:
        self.cfg, self.slot, self.peek, self.catalog = cfg, slot, peek, catalog
        self.read_end = read_end
        self.pos = pos
        self.boundaries: list[tuple[int, int]] = []  # (end LSN, last position), in order
        self.relations: dict[int, RelInfo] = {}
        self.reread = 0  # messages of this peek that were read before (skipped)
        self._tx: _Tx | None = None
        self._cursor: psycopg.Cursor[tuple[Any, ...]] | None = None
        self._buffers: list[tuple[BatchSchema, list[tuple[object, ...]]]] = []

    # -- the cursor ---------------------------------------------------------
    def _open(self) -> psycopg.Cursor[tuple[Any, ...]]:
        if self._cursor is None:
            self.reread = 0
            self._cursor = self.peek.cursor(name="edge_agent_peek")
            self._cursor.execute(self.slot.peek_sql())
        return self._cursor

    def close(self) -> None:
        """End the peek (its transaction); a transaction half read is read again."""
        cur, self._cursor = self._cursor, None
        if cur is None:
            return
        try:
            cur.close()
            self.peek.rollback()
        except psycopg.Error:
            self.peek.close()  # a lost connection: the cursor closes with it
            cur.close()

    def _messages(self, max_bytes: int, page: StreamPage) -> Iterator[bytes]:
        try:
            cur = self._open()
            while page.bytes_read < max_bytes:
                rows = cur.fetchmany(FETCH)
                if not rows:
                    page.done = True
                    self.close()
                    return
                for (data,) in rows:
                    raw = bytes(data)
                    page.bytes_read += len(raw)
                    yield raw
        except psycopg.Error as exc:
            self.close()
            raise map_error(exc, self.slot.where) from exc

    # -- reading --------------------------------------------------------------
    def read(self, max_bytes: int, sealed: dict[str, int], env: Envelope) -> StreamPage:
        page = StreamPage()
        for raw in self._messages(max_bytes, page):
            if self._tx is not None and self._tx.skip and raw[:1] not in _STILL_READ:
                self.reread += 1  # read before: not decoded again
                continue
            self._take(po.decode(raw), sealed, page)
        page.batches = [ChangeBatch.of(s, rows, env) for s, rows in self._buffers if rows]
        self._buffers = []
        return page

    def _take(self, msg: po.Decoded, sealed: dict[str, int], page: StreamPage) -> None:
        if isinstance(msg, po.Begin):
            skip = msg.final_lsn < self.read_end
            self._tx = _Tx(msg.xid, msg.final_lsn, po.unix_ms(msg.commit_ts_us), skip)
            return
        tx = self._tx
        if tx is None:
            raise SourceError(
                f"slot {self.slot.name!r}: a {type(msg).__name__} outside a transaction"
            )
        if tx.skip:
            if isinstance(msg, po.Commit):
                self._tx = None
            elif isinstance(msg, po.Relation):
                self._relation(msg)  # sent once per peek: a later transaction relies on it
            return
        if isinstance(msg, po.Commit):
            self.read_end = msg.end_lsn
            self.boundaries.append((msg.end_lsn, self.pos))
            self._tx = None
        elif isinstance(msg, po.Relation):
            self._relation(msg)
        elif isinstance(msg, po.Update) and self._moved(msg):
            # A key change is the old key's delete, then the new row (as trigger mode
            # logs it): two positions, decided by the message alone, so a re-read
            # numbers it the same whatever the config captures.
            self.pos += 1
            self._change(po.Delete(msg.relation, msg.old_kind, msg.old or ()), tx, sealed)
            self.pos += 1
            page.changes_read += 2
            self._change(msg, tx, sealed)
        elif isinstance(msg, (po.Insert, po.Update, po.Delete)):
            self.pos += 1
            page.changes_read += 1
            self._change(msg, tx, sealed)
        elif isinstance(msg, po.Truncate):
            for oid in msg.relations:
                self.pos += 1
                page.changes_read += 1
                self._truncate(oid, tx, sealed)
        elif isinstance(msg, po.Message) and msg.prefix != HEARTBEAT_PREFIX:
            pass  # another application's logical message: not a row change

    def _relation(self, rel: po.Relation) -> None:
        """A table's description, sent before its first change in each transaction. A
        changed column list or type gives a new schema: the writer rotates the file."""
        name = f"{rel.namespace or 'pg_catalog'}.{rel.name}"
        columns = tuple((c.name, c.type_oid, c.typmod) for c in rel.columns)
        known = self.relations.get(rel.oid)
        if known is not None and known.name == name and known.columns == columns:
            return
        key = relation_key(self.catalog, rel)
        index = tuple(i for i, c in enumerate(columns) if c[0] in key)
        if name not in self.cfg.tables:
            self.relations[rel.oid] = RelInfo(name, None, (), columns, index)
            return
        spec, converters = relation_spec(self.catalog, rel, name, key)
        schema = batch_schema(spec, tx=True, before=self.cfg.before_image, logical=True)
        self.relations[rel.oid] = RelInfo(name, schema, converters, columns, index)

    def _moved(self, msg: po.Update) -> bool:
        rel = self.relations.get(msg.relation)
        if msg.old is None or rel is None:
            return False
        return any(msg.old[i] != msg.new[i] for i in rel.key if msg.new[i] is not po.UNCHANGED)

    def _rel(self, oid: int, sealed: dict[str, int]) -> tuple[RelInfo, BatchSchema] | None:
        rel = self.relations.get(oid)
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

    def _change(
        self, msg: po.Insert | po.Update | po.Delete, tx: _Tx, sealed: dict[str, int]
    ) -> None:
        found = self._rel(msg.relation, sealed)
        if found is None:
            return
        rel, schema = found
        sent = None if isinstance(msg, po.Insert) else msg.old
        old = convert_row(sent, rel.converters) if sent is not None else None
        if isinstance(msg, po.Delete):
            values, unchanged = old or [None] * len(rel.names), None
        else:
            values, unchanged = _fill(convert_row(msg.new, rel.converters), old, rel.names)
        row: list[object] = [self.pos, tx.xid, _OPS[type(msg)], tx.ts_ms, *values]
        if schema.before:
            keep = isinstance(msg, po.Update) and old is not None
            row.append(_before(rel.names, old) if keep else None)
        row += [tx.commit_lsn, unchanged]
        self._rows(schema).append(tuple(row))

    def _truncate(self, oid: int, tx: _Tx, sealed: dict[str, int]) -> None:
        found = self._rel(oid, sealed)
        if found is None:
            return
        rel, schema = found
        row: list[object] = [self.pos, tx.xid, "t", tx.ts_ms, *([None] * len(rel.names))]
        if schema.before:
            row.append(None)
        row += [tx.commit_lsn, None]
        self._rows(schema).append(tuple(row))

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None


def _before(names: tuple[str, ...], old: list[object] | None) -> str:
    """The old row as JSON (REPLICA IDENTITY FULL: all columns; otherwise the key)."""
    values = {n: (None if v is po.UNCHANGED else v) for n, v in zip(names, old or [], strict=False)}
    return json.dumps(values, default=str, ensure_ascii=False)


def _fill(
    new: list[object], old: list[object] | None, names: tuple[str, ...]
) -> tuple[list[object], list[str] | None]:
    """An unchanged TOASTed value (not sent) comes from the old row when the log has it
    (REPLICA IDENTITY FULL); otherwise it is NULL and named in ``_unchanged``."""
    missing = [i for i, v in enumerate(new) if v is po.UNCHANGED]
    if not missing:
        return new, None
    unchanged: list[str] = []
    for i in missing:
        if old is not None and old[i] is not po.UNCHANGED:
            new[i] = old[i]
        else:
            new[i] = None
            unchanged.append(names[i])
    return new, unchanged or None
