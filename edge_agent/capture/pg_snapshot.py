"""Initial and on-demand snapshots of PostgreSQL tables through the change log.

As on SQLite (capture/snapshot.py): a snapshot copies a table's rows into
``edge_cdc.log`` as op ``r``, one page per statement (its own short
transaction, so no transaction stays open for the whole table), in key order,
with its progress in ``edge_cdc.snapshots`` updated by the same statement: a
kill resumes exactly where it stopped.

Gap-free against the change stream: each page locks its rows ``FOR SHARE``
(between two keys found first; see ``_page_query``).
A writer that changed a row before the page reads it has committed first (the
lock waits for it), so its change has a lower sequence number and an earlier
or equal batch; a writer that changes it afterwards waits for the page's
commit and logs a higher one. Replaying in position order therefore never
lets an ``r`` row hide a newer change. (Locking needs UPDATE privilege on the
table, which trigger mode's owner has.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from edge_agent.sources.postgres import regclass

if TYPE_CHECKING:
    from edge_agent.capture.pg_log import PgCapture, PgChangeLog


@dataclass(frozen=True)
class Job:
    tid: int
    table: str
    rows_done: int
    rows_total: int
    done_ms: int | None


def start(log: PgChangeLog, cap: PgCapture, now_ms: int) -> None:
    """Begin (or begin again) a snapshot of one capture's table."""
    log.run(
        sql.SQL(
            # The planner's estimate, not count(*): this runs in the install transaction,
            # which may hold the table's lock (DROP TRIGGER); progress needs no exact total.
            "INSERT INTO edge_cdc.snapshots (tid, name, rows_total, started_ms)"
            " SELECT %(tid)s, %(name)s, greatest(0, (SELECT reltuples::bigint FROM pg_class"
            " WHERE oid = to_regclass({}))), %(ms)s"
            " ON CONFLICT (tid) DO UPDATE SET last_key = NULL, rows_done = 0,"
            " rows_total = EXCLUDED.rows_total, started_ms = EXCLUDED.started_ms, done_ms = NULL"
        ).format(sql.Literal(regclass(cap.table))),
        {"tid": cap.tid, "name": cap.table, "ms": now_ms},
    )


def jobs(log: PgChangeLog) -> list[Job]:
    if not log.exists():
        return []
    rows = log.run(
        "SELECT tid, name, rows_done, rows_total, done_ms FROM edge_cdc.snapshots ORDER BY tid"
    ).fetchall()
    return [
        Job(int(str(t)), str(n), int(str(d)), int(str(total)), None if ms is None else int(str(ms)))
        for t, n, d, total, ms in rows
    ]


def step(log: PgChangeLog, cap: PgCapture, page_rows: int, now_ms: int) -> int:
    """Copy the next page of a running snapshot; 0 once it is finished."""
    row = log.run(
        "SELECT last_key FROM edge_cdc.snapshots WHERE tid = %s AND done_ms IS NULL", (cap.tid,)
    ).fetchone()
    if row is None:
        return 0
    last = row[0]
    query = _page_query(cap, after=last is not None)
    params = {"tid": cap.tid, "n": page_rows, "ms": now_ms, "last": Jsonb(last)}
    done = log.run(query, params).fetchone()
    return int(str(done[0])) if done else 0


def _page_query(cap: PgCapture, after: bool) -> sql.Composed:
    """One page in key order after the last key copied, copied into the log with the
    job's progress.

    The page's upper key (the page_rows-th key after the last one) is found first,
    without locks; then the rows between the two keys are locked and copied. Locking
    rows in the ORDER BY ... LIMIT query itself is not enough: a row a writer moves
    to another key while the page waits for its lock comes back with its new key, out
    of order, and a last key taken from the page would skip the rows in between. A
    row moved out of the range is copied by the page of its new key (and its own
    changes are in the log anyway)."""
    key = [sql.Identifier(k) for k in cap.spec.key]

    def cols(alias: str, suffix: str = "") -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}{}").format(sql.Identifier(alias), k, sql.SQL(suffix)) for k in key
        )

    table = sql.SQL(regclass(cap.table))
    last_key = sql.SQL(", jsonb_populate_record(NULL::{}, %(last)s) k").format(table)
    from_k = last_key if after else sql.SQL("")
    after_k = sql.SQL("({}) > ({}) AND ").format(cols("t"), cols("k")) if after else sql.SQL("")
    bound_json = sql.SQL(", ").join(
        sql.SQL("{}, b.{}").format(sql.Literal(k), sql.Identifier(k)) for k in cap.spec.key
    )
    return sql.SQL(
        """
WITH bound AS (
    SELECT {b_key} FROM (
        SELECT {t_key} FROM {table} t{from_k} WHERE {after_k}true ORDER BY {t_key} LIMIT %(n)s
    ) b ORDER BY {b_desc} LIMIT 1),
page AS (
    SELECT t.* FROM {table} t, bound b{from_k}
    WHERE {after_k}({t_key}) <= ({b_key}) FOR SHARE OF t),
ins AS (
    INSERT INTO edge_cdc.log (tid, op, ts_ms, data)
    SELECT %(tid)s, 'r', %(ms)s, to_jsonb(page) FROM page),
done AS (SELECT count(*) AS n, EXISTS (SELECT FROM bound) AS more FROM page),
upd AS (
    UPDATE edge_cdc.snapshots s SET rows_done = s.rows_done + done.n,
        last_key = coalesce((SELECT jsonb_build_object({bound_json}) FROM bound b), s.last_key),
        done_ms = CASE WHEN done.more THEN NULL ELSE %(ms)s END
    FROM done WHERE s.tid = %(tid)s AND s.done_ms IS NULL)
SELECT CASE WHEN more THEN greatest(n, 1) ELSE 0 END FROM done"""
    ).format(
        table=table,
        from_k=from_k,
        after_k=after_k,
        t_key=cols("t"),
        b_key=cols("b"),
        b_desc=cols("b", " DESC"),
        bound_json=bound_json,
    )


def request(log: PgChangeLog, caps: list[PgCapture], now_ms: int) -> None:
    with log.con.transaction():
        for cap in caps:
            start(log, cap, now_ms)


def progress(log: PgChangeLog) -> dict[str, Any]:
    return {
        job.table: {
            "rows_done": job.rows_done,
            "rows_total": job.rows_total,
            "finished": job.done_ms is not None,
            # rows_total is the planner's estimate: never show 100 % before the end.
            "percent": 100
            if job.done_ms is not None
            else min(99, round(100 * job.rows_done / max(1, job.rows_total))),
        }
        for job in jobs(log)
    }
