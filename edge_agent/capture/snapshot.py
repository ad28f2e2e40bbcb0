"""Initial and on-demand snapshots through the change log.

A snapshot copies a table's existing rows into the change log as op ``r``,
one page per short write transaction, in key order:

    INSERT INTO _edge_cdc_log (...) SELECT tid, 'r', now, <columns> FROM <table>
    WHERE (<key>) > (<last key>) ORDER BY <key> LIMIT <page>

The page and its progress row commit together, so a snapshot resumes exactly
where a crash left it, and it needs no memory beyond one page. The table's
triggers are installed before the first page, so a change made while the
snapshot runs has its own change-log row; replaying all rows in position order
gives the table's state (an ``r`` row carries the row as of its page, a later
change comes after it). Reading the pages into Parquet is the normal capture
path, with its memory budget and durability.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_agent.sources.sqlite import quote

if TYPE_CHECKING:
    from edge_agent.capture.triggers import Capture, ChangeLog

SNAPSHOTS = "_edge_cdc_snapshots"


@dataclass(frozen=True)
class Job:
    table: str
    tid: int
    after: list[Any] | None
    rows_done: int
    rows_total: int
    done_ms: int | None

    @property
    def progress(self) -> float:
        return 1.0 if self.done_ms else min(1.0, self.rows_done / max(1, self.rows_total))


def encode_key(values: list[Any]) -> str:
    def one(v: Any) -> list[Any]:
        if isinstance(v, bytes):
            return ["b", base64.b64encode(v).decode()]
        return ["v", v]

    return json.dumps([one(v) for v in values])


def decode_key(text: str | None) -> list[Any] | None:
    if text is None:
        return None
    return [base64.b64decode(v) if t == "b" else v for t, v in json.loads(text)]


def ensure_table(log: ChangeLog) -> None:
    log._run(
        f"CREATE TABLE IF NOT EXISTS {SNAPSHOTS} (name TEXT PRIMARY KEY, tid INTEGER NOT NULL, "
        "after TEXT, rows_done INTEGER NOT NULL, rows_total INTEGER NOT NULL, "
        "started_ms INTEGER NOT NULL, done_ms INTEGER)"
    )


def start(log: ChangeLog, cap: Capture, now_ms: int) -> None:
    """(Re)start a snapshot of a table from its first key (inside the transaction that
    installs its triggers). An empty table's snapshot is finished at once: every row it
    gets from now on has its own change."""
    total = int(log._run(f"SELECT count(*) FROM {quote(cap.table)}").fetchone()[0])
    log._run(
        f"INSERT INTO {SNAPSHOTS} (name, tid, after, rows_done, rows_total, started_ms, done_ms) "
        "VALUES (?, ?, NULL, 0, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET tid = excluded.tid,"
        " after = NULL, rows_done = 0, rows_total = excluded.rows_total, "
        "started_ms = excluded.started_ms, done_ms = excluded.done_ms",
        (cap.table, cap.tid, total, now_ms, None if total else now_ms),
    )


def jobs(log: ChangeLog) -> list[Job]:
    if not log.has_table(SNAPSHOTS):
        return []
    rows = log._run(
        f"SELECT name, tid, after, rows_done, rows_total, done_ms FROM {SNAPSHOTS} ORDER BY name"
    ).fetchall()
    return [Job(n, t, decode_key(a), d, total, done) for n, t, a, d, total, done in rows]


def pending(log: ChangeLog) -> list[Job]:
    return [j for j in jobs(log) if j.done_ms is None]


def step(log: ChangeLog, job: Job, cap: Capture, page_rows: int, now_ms: int) -> int:
    """Copy the next page of ``job`` into the change log; returns rows copied."""
    key = cap.shape.key
    cols = cap.shape.columns
    key_expr = ", ".join(quote(k) for k in key)
    where = ""
    params: list[Any] = []
    if job.after is not None:
        where = f"WHERE ({key_expr}) > ({', '.join('?' * len(key))})"
        params = list(job.after)
    targets = ", ".join(f"c{i}" for i in range(len(cols)))
    values = ", ".join(quote(c.name) for c in cols)
    with log.transaction():
        cur = log._run(
            f"INSERT INTO _edge_cdc_log (tid, op, ts_ms, {targets}) SELECT ?, 'r', ?, {values} "
            f"FROM {quote(cap.table)} {where} ORDER BY {key_expr} LIMIT ?",
            [cap.tid, now_ms, *params, page_rows],
        )
        copied = cur.rowcount
        last = job.after
        if copied:
            index = [i for i, c in enumerate(cols) if c.name in key]
            ordered = sorted(index, key=lambda i: cols[i].pk)
            picks = ", ".join(f"c{i}" for i in ordered)
            row = log._run(f"SELECT {picks} FROM _edge_cdc_log WHERE seq = last_insert_rowid()")
            last = list(row.fetchone())
        done = now_ms if copied < page_rows else None
        log._run(
            f"UPDATE {SNAPSHOTS} SET after = ?, rows_done = rows_done + ?, done_ms = ? "
            "WHERE name = ?",
            (None if last is None else encode_key(last), copied, done, job.table),
        )
    return int(copied)


def request(log: ChangeLog, tables: list[str], now_ms: int) -> list[str]:
    """Start on-demand snapshots of captured tables; refuses tables without triggers."""
    from edge_agent.errors import SourceError

    active = log.active()
    missing = [t for t in tables if t not in active]
    if missing:
        raise SourceError(
            f"tables {missing} have no capture triggers: run "
            "`edge-agent triggers install` (or start the daemon) first"
        )
    with log.transaction():
        ensure_table(log)
        for table in tables:
            start(log, active[table], now_ms)
    return tables
