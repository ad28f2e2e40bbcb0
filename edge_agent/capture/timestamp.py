"""Timestamp capture of one SQLite table: poll ``(cursor, key)`` in order.

For applications that cannot take triggers (vendor databases, read-only
mounts). Opens the database read-only. Each page is one short statement.

The cursor column may hold ISO-8601 text (with or without a UTC offset; no
offset means UTC), Unix epoch numbers (seconds, or milliseconds when the
integer is at least 10^11) or Julian day numbers (reals between 10^6 and
10^7); every row is normalised in SQL to UTC epoch milliseconds, so a column
that mixes formats still compares correctly. Text that is not a date gives
NULL and the row is never selected (docs/capture-modes.md).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from edge_agent.bronze.schema import BatchSchema, batch_schema
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


class TimestampCapture:
    cursor_per_ms = 1  # cursor values are milliseconds

    def __init__(self, source: SourceConfig, table: TimestampTable) -> None:
        self.source = source
        self.table = table
        self.con: sqlite3.Connection | None = None
        self.schema: BatchSchema | None = None
        self._schema_version = -1

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
        shape = self.schema.shape
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
        try:
            rows = self._con().execute(sql, [*params, limit]).fetchall()
        except sqlite3.Error as exc:
            raise map_error(exc, self.source.path) from exc
        return Polled(rows, len(rows) == limit)
