"""The snapshot of log-based capture: the tables' rows as op ``r``, read in one snapshot.

Which snapshot, and why. When the agent creates the slot it imports the
snapshot the slot exported (``CREATE_REPLICATION_SLOT ... (SNAPSHOT
'export')`` on a replication connection): the rows it reads are exactly the
state the slot's first change follows, so nothing is lost or doubled at the
hand-over. Every other snapshot (one interrupted by a kill or a lost
connection, a slot found moved or recreated, a table added to the source)
uses a new ``REPEATABLE READ`` snapshot taken now, at a stream position that
is not later than now: a change between that position and the snapshot is
then both in a snapshot row and after it in the stream, and replaying in
position order still ends at the right row. Such a re-snapshot starts its
table over with a ``t`` marker.

The snapshot is one read-only transaction on a connection of its own, held
while the tables are read ``page_rows`` rows at a time through a cursor
(memory-bounded); the stream waits until it is done. (A held snapshot keeps
VACUUM from removing rows newer than it: docs/postgres.md says so.)
"""

from __future__ import annotations

from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from edge_agent.bronze.schema import BatchSchema, Envelope, batch_schema
from edge_agent.capture.pages import ChangeBatch
from edge_agent.capture.pg_batches import not_finite, select_expr, with_not_finite
from edge_agent.config_sources import SourceConfig
from edge_agent.errors import SourceError
from edge_agent.sources.postgres import Con, map_error, split_name, table_spec


class SnapshotReader:
    """Reads ``tables`` in one snapshot; positions continue from ``pos``."""

    def __init__(
        self,
        cfg: SourceConfig,
        con: Con,
        tables: list[str],
        pos: int,
        lsn: int,
        exported: str | None,
        restart: bool,
    ) -> None:
        self.cfg, self.con, self.pos, self.lsn = cfg, con, pos, lsn
        self.pending = list(tables)
        self.restart = restart  # each table starts over with a "t" marker
        self.table_errors: dict[str, str] = {}
        self._cursor: psycopg.Cursor[tuple[Any, ...]] | None = None
        self._schema: BatchSchema | None = None
        self._temporal: list[int] = []
        try:
            con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if exported:
                con.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(exported)))
        except psycopg.Error as exc:
            con.close()
            raise map_error(exc, cfg.dsn) from exc

    @property
    def done(self) -> bool:
        return not self.pending

    def close(self) -> None:
        self.con.close()  # first: closing a cursor on a lost connection would raise
        if self._cursor is not None:
            self._cursor.close()
        self._cursor = None

    def page(self, env: Envelope) -> list[ChangeBatch]:
        """The next page of the current table (its ``t`` marker first, on a restart)."""
        if not self.pending:
            return []
        out: list[ChangeBatch] = []
        if self._cursor is None:
            marker = self._start(self.pending[0], env)
            if marker is None:  # the table is gone: reported, skipped
                self.pending.pop(0)
                return out
            if marker.batch.num_rows:
                out.append(marker)
        try:
            rows = self._cursor.fetchmany(self.cfg.page_rows) if self._cursor else []
        except psycopg.Error as exc:
            raise map_error(exc, self.cfg.dsn) from exc
        if self._temporal:
            rows = with_not_finite(rows, self._temporal)
        if rows and self._schema is not None:
            out.append(ChangeBatch.of(self._schema, self._rows(rows, "r", env), env))
        if len(rows) < self.cfg.page_rows:
            self._finish_table()
        return out

    def _start(self, table: str, env: Envelope) -> ChangeBatch | None:
        try:
            spec = table_spec(self.con, table)
        except SourceError as exc:
            self.table_errors[table] = str(exc)
            return None
        self._schema = batch_schema(spec, tx=True, before=self.cfg.before_image, logical=True)
        columns = spec.columns
        exprs = [select_expr(c.name, c.arrow) for c in columns]
        self._temporal = [
            i
            for i, c in enumerate(columns)
            if pa.types.is_timestamp(c.arrow) or c.arrow == pa.date32()
        ]
        if self._temporal:
            exprs.append(not_finite([columns[i].name for i in self._temporal]))
        query = sql.SQL("SELECT {} FROM {} r").format(
            sql.SQL(", ").join(exprs), sql.Identifier(*split_name(table))
        )
        self._cursor = self.con.cursor(name="edge_agent_snapshot")
        try:
            self._cursor.execute(query)
        except psycopg.Error as exc:
            raise map_error(exc, self.cfg.dsn) from exc
        if not self.restart:
            return ChangeBatch.of(self._schema, [], env)
        return ChangeBatch.of(self._schema, self._rows([(None,) * len(columns)], "t", env), env)

    def _rows(
        self, rows: list[tuple[Any, ...]], op: str, env: Envelope
    ) -> list[tuple[object, ...]]:
        ts = env.captured_ms
        out: list[tuple[object, ...]] = []
        extra: tuple[object, ...] = (None,) if self.cfg.before_image else ()
        for values in rows:
            self.pos += 1
            out.append((self.pos, None, op, ts, *values, *extra, self.lsn, None))
        return out

    def _finish_table(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
        self._cursor = None
        self.pending.pop(0)
