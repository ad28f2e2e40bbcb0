"""A timestamp-mode page, as Python rows or as Arrow, and the change batch it makes.

Both kinds give the cursor state (capture/cursor.py) what it reads of a page —
a few cursor values and the (key, cursor) pairs of some slices — and turn the
rows it accepted into a bronze batch. The Arrow page does that without a
Python object per row: the accepted rows are slices of the page, the envelope
columns are built whole (docs/bronze-format.md gives their order).
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from edge_agent.bronze.schema import BatchSchema, Envelope
from edge_agent.capture.cursor import Accepted, Key, ListPage, SortedPage
from edge_agent.capture.pages import ChangeBatch

FALSY = (None, 0, "", "0", b"")  # a soft-delete flag that says "not deleted"


@dataclass(frozen=True)
class OpRule:
    """Which op a row gets: "d" when its soft-delete flag is set, "r" while a snapshot
    re-reads it (cursor up to ``snapshot_until``), else "u"."""

    flag: str = ""
    snapshot_until: int | None = None

    def op(self, flag_value: object, cursor: int) -> str:
        if flag_value not in FALSY:
            return "d"
        return "r" if self.snapshot_until is not None and cursor <= self.snapshot_until else "u"


def key_indexes(schema: BatchSchema) -> list[int]:
    """The positions of the key columns among the table's columns."""
    names = [c.name for c in schema.shape.columns]
    return [names.index(k) for k in schema.shape.key]


class RowsPage:
    """Rows from sqlite3 or psycopg: the table's columns, then the cursor value."""

    def __init__(self, rows: list[tuple[Any, ...]], schema: BatchSchema) -> None:
        self.rows = rows
        self.key_index = key_indexes(schema)

    def __len__(self) -> int:
        return len(self.rows)

    def cursor(self, index: int) -> int:
        return int(self.rows[index][-1])

    def pairs(self, start: int, stop: int) -> list[tuple[Key, int]]:
        ki = self.key_index
        return [(tuple(r[i] for i in ki), int(r[-1])) for r in self.rows[start:stop]]

    def narrow(self) -> SortedPage:
        return ListPage([(key, cursor, None) for key, cursor in self.pairs(0, len(self.rows))])

    def resume(self) -> tuple[Any, ...]:
        last = self.rows[-1]
        return (last[-1], *(last[i] for i in self.key_index))

    def changes(
        self, schema: BatchSchema, accepted: Accepted, rule: OpRule, scale: int, env: Envelope
    ) -> ChangeBatch:
        flag = [c.name for c in schema.shape.columns].index(rule.flag) if rule.flag else None
        out = []
        for offset in range(accepted.count):
            pos = accepted.first_pos + offset
            row = self.rows[accepted.index_of(pos)]
            cursor = int(row[-1])
            op = rule.op(row[flag] if flag is not None else None, cursor)
            out.append((pos, 0, op, cursor // scale, *row[:-1]))
        return ChangeBatch.of(schema, out, env)


class ArrowPairs:
    """The keys and cursor values of a page read into Arrow."""

    def __init__(self, keys: list[pa.Array], cursors: pa.Array) -> None:
        self.keys = keys
        self.cursors = cursors

    def __len__(self) -> int:
        return len(self.cursors)

    def narrow(self) -> SortedPage:
        # Copies: a column of a batch imported from the driver keeps the whole batch's
        # memory alive; concatenation allocates buffers of its own.
        def own(a: pa.Array) -> pa.Array:
            return pa.concat_arrays([a, a.slice(0, 0)])

        return ArrowPairs([own(k) for k in self.keys], own(self.cursors))

    def cursor(self, index: int) -> int:
        cursor: int = self.cursors[index].as_py()
        return cursor

    def pairs(self, start: int, stop: int) -> list[tuple[Key, int]]:
        n = stop - start
        keys = zip(*(k.slice(start, n).to_pylist() for k in self.keys), strict=True)
        return list(zip(keys, self.cursors.slice(start, n).to_pylist(), strict=True))


class ArrowPage(ArrowPairs):
    """A page read into Arrow: the table's columns in their bronze types, then the
    cursor (UTC epoch milliseconds, int64). Every value fits its column."""

    def __init__(self, batch: pa.RecordBatch, schema: BatchSchema) -> None:
        super().__init__(
            [batch.column(i) for i in key_indexes(schema)], batch.column(batch.num_columns - 1)
        )
        self.batch = batch

    def changes(
        self, schema: BatchSchema, accepted: Accepted, rule: OpRule, scale: int, env: Envelope
    ) -> ChangeBatch:
        if scale != 1:
            raise ValueError("an Arrow page holds cursor values in milliseconds")
        parts = [self.batch.slice(a, b - a) for a, b in accepted.runs()]
        rows = parts[0] if len(parts) == 1 else _concat(parts)
        n = rows.num_rows
        cursors = rows.column(rows.num_columns - 1)
        string = pa.string()
        arrays = [
            _ops(rows, rule, cursors, _flag_index(schema, rule)),
            _positions(accepted.first_pos, n),
            cursors,
            pa.repeat(pa.scalar(env.captured_ms, pa.int64()), n),
            pa.repeat(pa.scalar(env.device, string), n),
            pa.repeat(pa.scalar(env.source, string), n),
            pa.repeat(pa.scalar(schema.shape.name, string), n),
            *(rows.column(i) for i in range(rows.num_columns - 1)),
            pa.nulls(n, string),  # _unfit: every value fits (capture/sqlite_arrow.py)
        ]
        batch = pa.RecordBatch.from_arrays(arrays, schema=schema.schema)
        return ChangeBatch(schema, batch)


def _positions(first: int, n: int) -> pa.Array:
    """first, first + 1, ...: built in C (array.array), not from n Python ints."""
    values = array.array("q", range(first, first + n))
    return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(values)])


def _concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]


def _flag_index(schema: BatchSchema, rule: OpRule) -> int | None:
    """The soft-delete column's position (by name it could clash with the read's extras)."""
    return [c.name for c in schema.shape.columns].index(rule.flag) if rule.flag else None


def _ops(rows: pa.RecordBatch, rule: OpRule, cursors: pa.Array, flag: int | None) -> pa.Array:
    n = rows.num_rows
    if flag is None and rule.snapshot_until is None:
        return pa.repeat(pa.scalar("u", pa.string()), n)
    flags = rows.column(flag).to_pylist() if flag is not None else [None] * n
    ops = [rule.op(f, c) for f, c in zip(flags, cursors.to_pylist(), strict=True)]
    return pa.array(ops, pa.string())
