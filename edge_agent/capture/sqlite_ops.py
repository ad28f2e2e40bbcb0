"""The source-level operations of a SQLite source: backlog, trigger commands, snapshots."""

from __future__ import annotations

import sqlite3
from typing import Any

from edge_agent.capture import snapshot as snapshots
from edge_agent.capture.registry import Backlog, TriggerRequest
from edge_agent.capture.snapshot import SNAPSHOTS
from edge_agent.capture.timestamp import cursor_format_problems
from edge_agent.capture.trigger_commands import trigger_action
from edge_agent.capture.triggers import LOG, ChangeLog
from edge_agent.config_sources import SourceConfig
from edge_agent.errors import EdgeAgentError, SourceError
from edge_agent.sources.sqlite import connect, table_shape


class SqliteOps:
    def backlog(self, source: SourceConfig, after: int) -> Backlog:
        path = source.path
        if not path.exists():
            return Backlog("database missing")
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
            try:
                row = con.execute(
                    f"SELECT count(*), min(ts_ms) FROM {LOG} WHERE seq > ? AND tid != 0",
                    (after,),
                ).fetchone()
                progress = _snapshots(con)
                details = {"change_log_bytes": _log_bytes(con), "oldest_waiting_ms": row[1]}
            finally:
                con.close()
        except sqlite3.Error as exc:
            return Backlog(f"unreadable: {exc}")
        return Backlog(int(row[0]), progress, details)

    def triggers(self, source: SourceConfig, req: TriggerRequest) -> tuple[list[str], bool]:
        con = connect(source.path, source.busy_timeout)
        try:
            log = ChangeLog(con, source.path, source.key_only_deletes)
            return trigger_action(log, source, req)
        finally:
            con.close()

    def check(self, source: SourceConfig) -> list[str]:
        if not source.path.exists():
            return []  # only a warning: the application may create it later
        try:
            con = connect(source.path, source.busy_timeout, read_only=True)
        except EdgeAgentError as exc:
            return [str(exc)]
        try:
            return _table_problems(con, source)
        finally:
            con.close()

    def request_snapshot(
        self, source: SourceConfig, tables: list[str], now_ms: int
    ) -> dict[str, str]:
        con = connect(source.path, source.busy_timeout)
        try:
            log = ChangeLog(con, source.path)
            refused = _not_snapshottable(log, tables)
            wanted = [t for t in tables if t not in refused]
            if wanted:
                snapshots.request(log, wanted, now_ms)
            return refused
        finally:
            con.close()


def _table_problems(con: sqlite3.Connection, source: SourceConfig) -> list[str]:
    problems: list[str] = []
    for table in source.tables:
        try:
            table_shape(con, table)
        except SourceError as exc:
            problems.append(f"sources[{source.name}]: {exc}")
    for t in source.timestamp_tables:
        try:
            names = [c.name for c in table_shape(con, t.name, t.key or None).columns]
        except SourceError as exc:
            problems.append(f"sources[{source.name}]: {exc}")
            continue
        for role, column in (("cursor", t.cursor), ("deleted_flag", t.deleted_flag)):
            if column and column not in names:
                problems.append(
                    f"sources[{source.name}]: table {t.name!r} has no column {column!r} "
                    f"(sources.tables.{role}): use one of {', '.join(names)}"
                )
        if t.cursor in names:
            problems += [f"sources[{source.name}]: {p}" for p in cursor_format_problems(con, t)]
    return problems


def _not_snapshottable(log: ChangeLog, tables: list[str]) -> dict[str, str]:
    """Tables without capture triggers, each with the fix that applies to it: a table
    that cannot be captured at all says why, not "install the triggers"."""
    active = log.active()
    refused: dict[str, str] = {}
    for table in (t for t in tables if t not in active):
        try:
            table_shape(log.con, table)
        except SourceError as exc:
            refused[table] = str(exc)
            continue
        refused[table] = (
            f"table {table!r} has no capture triggers yet: run `edge-agent triggers "
            "install` (or start the daemon) first"
        )
    return refused


def _snapshots(con: sqlite3.Connection) -> dict[str, Any]:
    exists = con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (SNAPSHOTS,)).fetchone()
    if not exists:
        return {}
    rows = con.execute(f"SELECT name, rows_done, rows_total, done_ms FROM {SNAPSHOTS}")
    return {
        name: {
            "rows_done": done,
            "rows_total": total,
            "finished": bool(finished),
            "percent": 100 if finished else round(100 * done / max(1, total)),
        }
        for name, done, total, finished in rows
    }


def _log_bytes(con: sqlite3.Connection) -> int | None:
    """The change log's pages on disk (SQLite's dbstat table; None where it is missing)."""
    try:
        row = con.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name = ? AND aggregate = TRUE", (LOG,)
        ).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row and row[0] is not None else 0
