"""The source-level operations of a PostgreSQL source: backlog, trigger commands, snapshots."""

from __future__ import annotations

from typing import Any

from edge_agent.capture import pg_logical_ops, pg_snapshot
from edge_agent.capture.pg_batches import Batches
from edge_agent.capture.pg_log import PgChangeLog
from edge_agent.capture.pg_timestamp import PgTimestampCapture
from edge_agent.capture.pg_trigger import open_connection
from edge_agent.capture.registry import Backlog, TriggerRequest
from edge_agent.capture.trigger_commands import trigger_action
from edge_agent.config_sources import SourceConfig, TimestampTable
from edge_agent.errors import EdgeAgentError
from edge_agent.sources.postgres import table_problems


class PostgresOps:
    def backlog(self, source: SourceConfig, after: int) -> Backlog:
        if source.mode == "logical":
            return pg_logical_ops.backlog(source)
        try:
            con = open_connection(source)
        except EdgeAgentError as exc:
            return Backlog(f"unreachable: {exc}")
        try:
            log = PgChangeLog(con, source.dsn)
            return Backlog(
                Batches(log, after).backlog(after), pg_snapshot.progress(log), _details(log)
            )
        except EdgeAgentError as exc:
            return Backlog(f"unreadable: {exc}")
        finally:
            con.close()

    def triggers(self, source: SourceConfig, req: TriggerRequest) -> tuple[list[str], bool]:
        if source.mode == "logical":
            return pg_logical_ops.triggers(source, req)
        con = open_connection(source)
        try:
            return trigger_action(PgChangeLog(con, source.dsn, source.before_image), source, req)
        finally:
            con.close()

    def check(self, source: SourceConfig) -> list[str]:
        if source.mode == "logical":
            return pg_logical_ops.check(source)
        try:
            con = open_connection(source)
        except EdgeAgentError as exc:
            return [f"sources[{source.name}]: {exc}"]
        try:
            problems = table_problems(con, source.name, source.tables)
        finally:
            con.close()
        return problems + [p for t in source.timestamp_tables for p in _cursor_problems(source, t)]

    def request_snapshot(
        self, source: SourceConfig, tables: list[str], now_ms: int
    ) -> dict[str, str]:
        con = open_connection(source)
        try:
            log = PgChangeLog(con, source.dsn)
            active = log.active()
            refused = {
                t: f"table {t!r} has no capture triggers yet: run `edge-agent triggers install`"
                " (or start the daemon) first"
                for t in tables
                if t not in active
            }
            pg_snapshot.request(log, [active[t] for t in tables if t in active], now_ms)
            return refused
        finally:
            con.close()


def _cursor_problems(source: SourceConfig, table: TimestampTable) -> list[str]:
    capture = PgTimestampCapture(source, table)
    try:
        capture.refresh_schema()
    except EdgeAgentError as exc:
        return [f"sources[{source.name}]: {exc}"]
    finally:
        capture.close()
    return []


_OLDEST = """
SELECT pid, coalesce(application_name, ''), state,
       extract(epoch FROM now() - xact_start)::bigint
FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
ORDER BY xact_start LIMIT 1"""


def _details(log: PgChangeLog) -> dict[str, Any]:
    """The change log's size on disk, and the oldest open transaction in the database:
    the reader cannot pass a transaction that has not ended, so a long one looks like
    capture standing still."""
    size = log.run("SELECT pg_total_relation_size(to_regclass('edge_cdc.log'))").fetchone()
    oldest = log.run(_OLDEST).fetchone()
    waiting = log.run("SELECT min(ts_ms) FROM edge_cdc.log").fetchone()
    return {
        "change_log_bytes": int(str(size[0])) if size and size[0] is not None else 0,
        "oldest_waiting_ms": waiting[0] if waiting else None,
        "oldest_transaction": None
        if oldest is None
        else {
            "pid": oldest[0],
            "application": oldest[1],
            "state": oldest[2],
            "age_s": oldest[3],
        },
    }
