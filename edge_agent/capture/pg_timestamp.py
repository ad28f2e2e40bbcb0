"""Timestamp capture of one PostgreSQL table: poll ``(cursor, key)`` in order.

The same semantics as SQLite's (capture/timestamp.py, capture/cursor.py):
a compound ``(cursor, key)`` watermark, a lag window re-read every poll,
soft deletes, and nothing but SELECT on the table. The cursor column must be
``timestamptz``, ``timestamp`` (read as UTC) or ``date``; its values travel
as integer microseconds since the epoch (``cursor_per_ms = 1000``), so
comparisons are exact. Every condition and the order are on the raw column
and the key, so an index on the cursor column (or on ``(cursor, key)``)
serves each page: ``WHERE c >= low AND (c, key) > after ORDER BY c, key``.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from edge_agent.bronze.schema import BatchSchema, batch_schema
from edge_agent.capture.pg_batches import select_expr
from edge_agent.capture.pg_trigger import open_connection
from edge_agent.capture.timestamp import Polled, check_columns
from edge_agent.config_sources import SourceConfig, TimestampTable
from edge_agent.errors import SourceError
from edge_agent.records import ColumnSpec
from edge_agent.sources.postgres import Con, map_error, regclass, table_spec

CURSOR_TYPES = {"timestamp with time zone", "timestamp without time zone", "date"}
_EPOCH = {
    "timestamp with time zone": "TIMESTAMPTZ 'epoch'",
    "timestamp without time zone": "TIMESTAMP 'epoch'",
    "date": "TIMESTAMP 'epoch'",
}
_SIGNATURE = (
    "SELECT to_regclass(%(t)s)::oid, (SELECT array_agg(a.attname::text || ' ' ||"
    " format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a"
    " WHERE a.attrelid = to_regclass(%(t)s) AND a.attnum > 0 AND NOT a.attisdropped)"
)


def _as_column(column: ColumnSpec, name: str) -> sql.Composable:
    """A key value as selected (dates and times as integers, others as text or their
    Python value) back in the column's own type, for the (cursor, key) comparison."""
    value = sql.Placeholder(name)
    if column.arrow == pa.date32():
        return sql.SQL("(DATE '1970-01-01' + {}::int)").format(value)
    if pa.types.is_timestamp(column.arrow):
        epoch = "TIMESTAMPTZ 'epoch'" if column.arrow.tz else "TIMESTAMP 'epoch'"
        return sql.SQL(epoch + " + {} * INTERVAL '1 microsecond'").format(value)
    if pa.types.is_time(column.arrow):
        return sql.SQL("TIME '00:00' + {} * INTERVAL '1 microsecond'").format(value)
    return sql.SQL("CAST({} AS {})").format(value, sql.SQL(column.source_type))


class PgTimestampCapture:
    cursor_per_ms = 1000  # cursor values are microseconds

    def __init__(self, source: SourceConfig, table: TimestampTable) -> None:
        self.source = source
        self.table = table
        self.con: Con | None = None
        self.schema: BatchSchema | None = None
        self._signature: object = None
        self._cursor_type = ""

    @property
    def name(self) -> str:
        return self.source.name

    def open(self) -> None:
        self.refresh_schema()

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
        self.con = None

    def _con(self) -> Con:
        if self.con is None or self.con.closed or self.con.broken:
            self.close()
            self.con = open_connection(self.source)
        return self.con

    def _run(self, query: str | sql.Composed, params: Any = None) -> list[tuple[Any, ...]]:
        try:
            return self._con().execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise map_error(exc, self.source.dsn) from exc

    def refresh_schema(self) -> BatchSchema:
        spec = table_spec(self._con(), self.table.name, self.table.key)
        columns = {c.name: c for c in spec.columns}
        check_columns(self.table, spec.name, list(columns))
        kind = columns[self.table.cursor].source_type
        if kind not in CURSOR_TYPES:
            raise SourceError(
                f"table {spec.name!r}: cursor column {self.table.cursor!r} is {kind}: "
                "PostgreSQL timestamp mode needs timestamptz, timestamp or date "
                "(e.g. ALTER TABLE ... ADD COLUMN updated_at timestamptz DEFAULT now(), "
                "set by the application on every write)"
            )
        self._cursor_type = kind
        self.schema = batch_schema(spec)
        self._signature = self._run(_SIGNATURE, {"t": regclass(self.table.name)})
        return self.schema

    def schema_changed(self) -> bool:
        return self._run(_SIGNATURE, {"t": regclass(self.table.name)}) != self._signature

    def poll(self, low: int | None, after: tuple[Any, ...] | None, limit: int) -> Polled:
        """Rows with cursor >= ``low`` (all when None) and (cursor, key) > ``after``,
        in (cursor, key) order, at most ``limit``; cursors in microseconds."""
        query, params = self.poll_query(low, after, limit)
        rows = self._run(query, params)
        return Polled(rows, len(rows) == limit)

    def prefetch(self, low: int | None, after: tuple[Any, ...] | None, limit: int) -> None:
        """Nothing is read ahead from PostgreSQL (the SQLite capture reads the next page
        while the pipeline writes this one)."""

    def unread_cursor(self) -> object | None:
        """A typed PostgreSQL cursor column holds no value the poll cannot read."""
        return None

    def drop_ahead(self) -> None:
        """Nothing is read ahead from PostgreSQL."""

    def poll_query(
        self, low: int | None, after: tuple[Any, ...] | None, limit: int
    ) -> tuple[sql.Composed, dict[str, Any]]:
        if self.schema is None:
            raise SourceError(f"source {self.name!r} is not open")
        spec = self.schema.shape
        cursor = sql.SQL("t.{}").format(sql.Identifier(self.table.cursor))
        order = sql.SQL(", ").join(
            [cursor, *(sql.SQL("t.{}").format(sql.Identifier(k)) for k in spec.key)]
        )
        # A row whose cursor is infinity is never selected (documented): it has no
        # place in the order and would stall the table.
        where: list[sql.Composable] = [sql.SQL("isfinite({})").format(cursor)]
        params: dict[str, Any] = {"limit": limit}
        if low is not None:
            # A date cursor is a whole day: the bound is rounded up, so a day before it
            # (already emitted, and forgotten) is not read again.
            up = 86_400_000_000 - 1 if self._cursor_type == "date" else 0
            where.append(sql.SQL("{} >= {}").format(cursor, self._from_us("low")))
            params["low"] = low + up
        if after is not None:
            where.append(sql.SQL("{} >= {}").format(cursor, self._from_us("a0")))
            names = [f"a{i}" for i in range(len(after))]
            keys = {c.name: c for c in spec.columns}
            values = [self._from_us("a0")]
            values += [_as_column(keys[k], n) for k, n in zip(spec.key, names[1:], strict=True)]
            where.append(sql.SQL("({}) > ({})").format(order, sql.SQL(", ").join(values)))
            params.update(zip(names, after, strict=True))
        columns = [select_expr(c.name, c.arrow, "t") for c in spec.columns]
        query = sql.SQL(
            "SELECT {}, (extract(epoch FROM {}) * 1000000)::bigint FROM {} t WHERE {}"
            " ORDER BY {} LIMIT %(limit)s"
        ).format(
            sql.SQL(", ").join(columns),
            cursor,
            sql.SQL(regclass(spec.name)),
            sql.SQL(" AND ").join(where),
            order,
        )
        return query, params

    def _from_us(self, name: str) -> sql.Composable:
        """A cursor value (microseconds) as the column's own type, exactly."""
        value = sql.SQL("{} + {} * INTERVAL '1 microsecond'").format(
            sql.SQL(_EPOCH[self._cursor_type]), sql.Placeholder(name)
        )
        if self._cursor_type == "date":
            return sql.SQL("({})::date").format(value)
        return value
