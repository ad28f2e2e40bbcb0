"""Timestamp capture of one SQLite table: poll ``(cursor, key)`` in order.

For applications that cannot take triggers (vendor databases, read-only
mounts). Opens the database read-only. Each page is one short statement.

The cursor column may hold ISO-8601 text (with or without a UTC offset; no
offset means UTC), Unix epoch numbers (seconds, or milliseconds when the
integer is at least 10^11) or Julian day numbers (reals between 10^6 and
10^7); every row is normalised in SQL to UTC epoch milliseconds, so a column
that mixes formats still compares correctly. Text that is not a date gives
NULL and the row is never selected (docs/capture-modes.md). That
normalisation is what an index on the raw column cannot serve: every page is a
scan and a sort. A table that declares ``cursor_format`` (``epoch_ms``,
``epoch_s``) is read on the raw column instead, its conditions and order served
by an index on it; the declared normalisation never decreases in the raw
column's order, so the pages come in normalised cursor order all the same.
Those pages are read straight into Arrow where every value fits its column
(capture/sqlite_arrow.py), else through ``sqlite3``.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from edge_agent.bronze.schema import BatchSchema, batch_schema
from edge_agent.capture.sqlite_arrow import ArrowReader, arrow_select, fitted
from edge_agent.capture.ts_pages import key_indexes
from edge_agent.config_sources import SourceConfig, TimestampTable
from edge_agent.errors import SourceError
from edge_agent.sources.sqlite import connect, map_error, quote, table_shape


def cursor_ms_sql(column: str) -> str:
    c = quote(column)
    return (
        f"(CASE typeof({c}) "
        f"WHEN 'integer' THEN CASE WHEN abs({c}) < 100000000000 THEN {c} * 1000 ELSE {c} END "
        f"WHEN 'real' THEN CASE WHEN {c} BETWEEN 1000000.0 AND 10000000.0 "
        f"THEN CAST(round(({c} - 2440587.5) * 86400000.0) AS INTEGER) "
        f"ELSE CAST(round({c} * 1000.0) AS INTEGER) END "
        f"WHEN 'text' THEN CAST(round((julianday({c}) - 2440587.5) * 86400000.0) AS INTEGER) "
        "END)"
    )


# A declared format's normalisation of the raw value: never decreasing in the raw order.
_DECLARED_MS = {
    "epoch_ms": "(CASE typeof({c}) WHEN 'integer' THEN {c} ELSE CAST(round({c}) AS INTEGER) END)",
    "epoch_s": (
        "(CASE typeof({c}) WHEN 'integer' THEN {c} * 1000 "
        "ELSE CAST(round({c} * 1000.0) AS INTEGER) END)"
    ),
}


def declared_ms_sql(column: str, cursor_format: str) -> str:
    return _DECLARED_MS[cursor_format].format(c=quote(column))


def raw_bound(low_ms: int, cursor_format: str) -> float:
    """The raw value from which values normalise to ``low_ms`` or more (round half up):
    exact for integers; a real a rounding error off is dropped after the read."""
    return (low_ms - 0.5) / (1 if cursor_format == "epoch_ms" else 1000)


def cursor_format_problems(con: sqlite3.Connection, table: TimestampTable) -> list[str]:
    """What `config check` says about a declared cursor format and the values stored:
    rows it would never read (text), or a unit that looks wrong."""
    if table.cursor_format == "auto":
        return []
    c, t = quote(table.cursor), quote(table.name)
    where = f"{table.name!r}: cursor_format = {table.cursor_format!r} on column {table.cursor!r}"
    text = con.execute(f"SELECT {c} FROM {t} WHERE typeof({c}) IN ('text', 'blob') LIMIT 1")
    found = text.fetchone()
    if found is not None:
        return [
            f"table {where} reads numbers only, and it holds {found[0]!r}: such rows are "
            'never captured; use cursor_format = "auto" (any time format)'
        ]
    top = con.execute(f"SELECT max({c}) FROM {t} WHERE typeof({c}) IN ('integer', 'real')")
    largest = top.fetchone()[0]
    if largest is None or (largest >= 1e11) == (table.cursor_format == "epoch_ms"):
        return []
    other = "epoch_s" if table.cursor_format == "epoch_ms" else "epoch_ms"
    return [f"table {where}: its largest value {largest!r} looks like {other}; declare that"]


def check_columns(table: TimestampTable, name: str, columns: list[str]) -> None:
    """The cursor and soft-delete columns the config names must exist (any database)."""
    for role, column in (("cursor", table.cursor), ("deleted_flag", table.deleted_flag)):
        if column and column not in columns:
            raise SourceError(
                f"table {name!r} has no column {column!r} "
                f"(sources.tables.{role}): use one of {columns}"
            )


@dataclass
class Polled:
    rows: list[tuple[Any, ...]]  # table columns..., cursor_ms
    full: bool  # the page was full: more may follow
    arrow: pa.RecordBatch | None = None  # instead of rows: table columns, then _cursor
    resume: tuple[Any, ...] | None = None  # `after` of the next page (None: from the rows)

    def __len__(self) -> int:
        return self.arrow.num_rows if self.arrow is not None else len(self.rows)


class TimestampCapture:
    cursor_per_ms = 1  # cursor values are milliseconds

    def __init__(self, source: SourceConfig, table: TimestampTable) -> None:
        self.source = source
        self.table = table
        self.con: sqlite3.Connection | None = None
        self.schema: BatchSchema | None = None
        self._schema_version = -1
        self.arrow = ArrowReader(source.path)

    @property
    def name(self) -> str:
        return self.source.name

    def open(self) -> None:
        self.con = connect(self.source.path, self.source.busy_timeout, read_only=True)
        self.refresh_schema()

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
        self.con = None
        self.arrow.close()

    def _con(self) -> sqlite3.Connection:
        if self.con is None:
            raise SourceError(f"source {self.name!r} is not open")
        return self.con

    def refresh_schema(self) -> BatchSchema:
        con = self._con()
        shape = table_shape(con, self.table.name, self.table.key or None)
        check_columns(self.table, self.table.name, [c.name for c in shape.columns])
        self.schema = batch_schema(shape.spec())
        self._schema_version = int(con.execute("PRAGMA schema_version").fetchone()[0])
        return self.schema

    def schema_changed(self) -> bool:
        version = int(self._con().execute("PRAGMA schema_version").fetchone()[0])
        return version != self._schema_version

    def poll(self, low: int | None, after: tuple[Any, ...] | None, limit: int) -> Polled:
        """Rows with cursor >= ``low`` (all when None) and (cursor, key) > ``after``,
        in (cursor, key) order, at most ``limit``."""
        if self.schema is None:
            raise SourceError(f"source {self.name!r} is not open")
        if self.table.cursor_format == "auto":
            return self._poll_normalised(self.schema, low, after, limit)
        return self._poll_raw(self.schema, low, after, limit)

    def _poll_normalised(
        self, schema: BatchSchema, low: int | None, after: tuple[Any, ...] | None, limit: int
    ) -> Polled:
        shape = schema.shape
        cols = ", ".join(quote(c.name) for c in shape.columns)
        norm = cursor_ms_sql(self.table.cursor)
        order = ", ".join([norm, *(quote(k) for k in shape.key)])
        where = [f"{norm} IS NOT NULL"]
        params: list[Any] = []
        if low is not None:
            where.append(f"{norm} >= ?")
            params.append(low)
        if after is not None:
            where.append(f"({order}) > ({', '.join('?' * len(after))})")
            params.extend(after)
        sql = (
            f"SELECT {cols}, {norm} FROM {quote(shape.name)} WHERE {' AND '.join(where)} "
            f"ORDER BY {order} LIMIT ?"
        )
        rows = self._fetch(sql, [*params, limit])
        return Polled(rows, len(rows) == limit)

    def _poll_raw(
        self, schema: BatchSchema, low: int | None, after: tuple[Any, ...] | None, limit: int
    ) -> Polled:
        """A declared cursor format: conditions and order on the raw column (its index
        serves them), ``after`` holding the raw cursor value; rows below ``low`` once
        normalised (a rounding apart) are dropped here."""
        arrow_sql, exact_sql, params = self._raw_query(schema, low, after, limit)
        if arrow_sql is not None:
            batch = self.arrow.read(arrow_sql, params, limit)
            page = fitted(batch, schema, 2) if batch is not None else None
            if page is not None and page.column(-2).type == pa.int64():
                return _arrow_polled(page, key_indexes(schema), low, limit)
        rows = self._fetch(exact_sql, params)
        names = [c.name for c in schema.shape.columns]
        return _rows_polled(rows, names, schema.shape.key, low, limit)

    def prefetch(self, low: int | None, after: tuple[Any, ...] | None, limit: int) -> None:
        """Start reading the page a next ``poll`` with these arguments asks for (in a
        thread, while the caller writes this one)."""
        if self.schema is None or self.table.cursor_format == "auto":
            return
        arrow_sql, _, params = self._raw_query(self.schema, low, after, limit)
        if arrow_sql is not None:
            self.arrow.start(arrow_sql, params, limit)

    def unread_cursor(self) -> object | None:
        """With a declared format, a cursor value it never reads (text or a blob, which
        sort after every number: one index seek), else None."""
        if self.table.cursor_format == "auto":
            return None
        c, t = quote(self.table.cursor), quote(self.table.name)
        try:
            row = self._con().execute(f"SELECT {c} FROM {t} WHERE {c} >= '' LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise map_error(exc, self.source.path) from exc
        return None if row is None else row[0]

    def drop_ahead(self) -> None:
        """Let go of a page read ahead and not taken (waits for its read to end)."""
        self.arrow.discard()

    def _raw_query(
        self, schema: BatchSchema, low: int | None, after: tuple[Any, ...] | None, limit: int
    ) -> tuple[str | None, str, list[Any]]:
        """The page statement on the raw column: for the Arrow read (None when the table
        has a column it cannot read), for sqlite3, and their parameters."""
        shape = schema.shape
        raw = quote(self.table.cursor)
        order = ", ".join([raw, *(quote(k) for k in shape.key)])
        where = [f"{raw} < ''"]  # numbers only: they sort before any text and blob
        params: list[Any] = []
        if low is not None:
            where.append(f"{raw} >= ?")
            params.append(raw_bound(low, self.table.cursor_format))
        if after is not None:
            where.append(f"({order}) > ({', '.join('?' * len(after))})")
            params.extend(after)
        rest = f" FROM {quote(shape.name)} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        norm = f"{declared_ms_sql(self.table.cursor, self.table.cursor_format)} AS _cursor"
        cols = ", ".join(quote(c.name) for c in shape.columns)
        select = arrow_select(schema)
        arrow_sql = None
        if select is not None:
            # Epoch milliseconds: an integer is its own cursor value. A real in the column
            # makes the result column doubles, and that page is read through sqlite3.
            fast = f"{raw} AS _cursor" if self.table.cursor_format == "epoch_ms" else norm
            arrow_sql = "SELECT " + select.format(extra=f"{fast}, {raw} AS _raw") + rest
        return arrow_sql, f"SELECT {cols}, {norm}, {raw}{rest}", [*params, limit]

    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._con().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise map_error(exc, self.source.path) from exc


def _rows_polled(
    rows: list[tuple[Any, ...]], names: list[str], key: tuple[str, ...], low: int | None, limit: int
) -> Polled:
    """A raw-ordered page read by sqlite3 (rows: columns..., cursor_ms, raw cursor)."""
    resume = None
    if len(rows) == limit:
        last = rows[-1]
        resume = (last[-1], *(last[names.index(k)] for k in key))
    start = bisect_left(rows, low, key=lambda r: r[-2]) if low is not None else 0
    return Polled([r[:-1] for r in rows[start:]], len(rows) == limit, resume=resume)


def _arrow_polled(page: pa.RecordBatch, key: list[int], low: int | None, limit: int) -> Polled:
    """A raw-ordered page read into Arrow (columns..., _cursor, _raw); the key columns by
    position (a table may have columns named like the extras)."""
    n = page.num_rows
    resume = None
    if n == limit:
        resume = (page.column(-1)[n - 1].as_py(), *(page.column(k)[n - 1].as_py() for k in key))
    cursors = page.column(-2)
    start = bisect_left(range(n), low, key=lambda i: cursors[i].as_py()) if low is not None else 0
    body = page.slice(start).select(list(range(page.num_columns - 1)))
    return Polled([], n == limit, arrow=body, resume=resume)
