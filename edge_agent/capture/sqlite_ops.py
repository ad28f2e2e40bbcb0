"""The source-level operations of a SQLite source: backlog, trigger commands, snapshots."""

from __future__ import annotations

import sqlite3
from typing import Any

from edge_agent.capture import snapshot as snapshots
from edge_agent.capture.registry import TriggerRequest
from edge_agent.capture.snapshot import SNAPSHOTS
from edge_agent.capture.triggers import LOG, ChangeLog
from edge_agent.config_sources import SourceConfig
from edge_agent.sources.sqlite import connect, table_shape


class SqliteOps:
    def backlog(self, source: SourceConfig, after: int) -> tuple[int | str, dict[str, Any]]:
        path = source.path
        if not path.exists():
            return "database missing", {}
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
            try:
                row = con.execute(
                    f"SELECT count(*) FROM {LOG} WHERE seq > ? AND tid != 0", (after,)
                ).fetchone()
                progress = _snapshots(con)
            finally:
                con.close()
        except sqlite3.Error as exc:
            return f"unreadable: {exc}", {}
        return int(row[0]), progress

    def triggers(self, source: SourceConfig, req: TriggerRequest) -> tuple[list[str], bool]:
        con = connect(source.path, source.busy_timeout)
        try:
            return _trigger_action(ChangeLog(con, source.path), source, req)
        finally:
            con.close()

    def request_snapshot(self, source: SourceConfig, tables: list[str], now_ms: int) -> None:
        con = connect(source.path, source.busy_timeout)
        try:
            snapshots.request(ChangeLog(con, source.path), tables, now_ms)
        finally:
            con.close()


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


def _trigger_action(
    log: ChangeLog, source: SourceConfig, req: TriggerRequest
) -> tuple[list[str], bool]:
    tables = source.tables
    if req.action == "verify":
        problems = log.verify(tables)
        return (
            [str(p) for p in problems] or [f"ok: {len(tables)} table(s) captured"],
            not problems,
        )
    if req.action == "install":
        for table in tables:
            table_shape(log.con, table)  # refuse the whole install on an unknown table
        changed = log.install(
            tables,
            req.durable,
            req.now_ms,
            snapshot_new=source.snapshot == "initial",
            captured_before=set(req.captured),
        )
        return [f"installed: {', '.join(changed) or 'nothing to change'}"], True
    waiting = log.pending(req.durable)
    if req.drop_log and waiting and not req.force:
        return [
            f"refused: {waiting} change(s) are still waiting in the change log; run "
            "`edge-agent flush` first, or add --force to drop them"
        ], False
    removed = log.uninstall(None, req.drop_log)
    return [
        f"uninstalled: {', '.join(removed) or 'nothing installed'}"
        + (" (change log dropped)" if req.drop_log else "")
    ], True
