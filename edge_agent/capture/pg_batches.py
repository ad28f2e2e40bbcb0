"""Reading the PostgreSQL change log in commit order: ticks, batches, positions, pruning.

A sequence number is taken when a row changes, not when its transaction
commits, so ``seq > cursor`` skips a transaction that took a lower number and
committed later. Transaction ids are not commit order either. So the log is
read in batches, as PgQ does: a *tick* records ``pg_current_snapshot()``; the
batch of tick k is the changes of the transactions that committed between
tick k-1 and tick k (visible in k's snapshot, not in k-1's). Batches follow
each other in commit order; inside a batch, changes are ordered by sequence,
which for one key is commit order (the row lock orders its writers).

Positions: tick k stores ``base`` (where the batch starts) and ``rows`` (how
many changes it holds, counted in the same statement that took its
snapshot, when all of them are committed). The i-th change of the batch in
sequence order has position ``base + i``. Ticks are rows in the database, so
after a crash the same batch is read again with the same positions: ``_pos``
in the lake is unique, increasing in commit order and stable across re-reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from edge_agent.capture.pg_log import PgCapture, PgChangeLog
from edge_agent.errors import SourceError
from edge_agent.sources.postgres import map_error

PRUNE_CHUNK = 5000
_BATCH = (
    "txid >= pg_snapshot_xmin(%(prev)s::pg_snapshot)"
    " AND txid < pg_snapshot_xmax(%(cur)s::pg_snapshot)"
    " AND pg_visible_in_snapshot(txid, %(cur)s::pg_snapshot)"
    " AND NOT pg_visible_in_snapshot(txid, %(prev)s::pg_snapshot)"
)
_NEW_TICK = """
WITH prev AS (SELECT snap, base, rows FROM edge_cdc.ticks ORDER BY id DESC LIMIT 1),
cur AS (SELECT pg_current_snapshot() AS snap),
batch AS (
    SELECT count(*) AS rows, min(l.seq) AS first_seq, max(l.seq) AS last_seq
    FROM edge_cdc.log l, prev, cur
    WHERE l.txid >= pg_snapshot_xmin(prev.snap) AND l.txid < pg_snapshot_xmax(cur.snap)
      AND pg_visible_in_snapshot(l.txid, cur.snap)
      AND NOT pg_visible_in_snapshot(l.txid, prev.snap))
INSERT INTO edge_cdc.ticks (snap, base, rows, first_seq, last_seq)
SELECT cur.snap, greatest(prev.base + prev.rows, %(seed)s), batch.rows, batch.first_seq,
       batch.last_seq
FROM prev, cur, batch WHERE batch.rows > 0"""
_FIND_TICK = """
SELECT t.id, t.base, t.rows, t.snap::text,
       (SELECT p.snap::text FROM edge_cdc.ticks p WHERE p.id < t.id ORDER BY p.id DESC LIMIT 1),
       t.first_seq, t.last_seq
FROM edge_cdc.ticks t WHERE t.base + t.rows > %s AND t.rows > 0 ORDER BY t.id LIMIT 1"""


@dataclass(frozen=True)
class Tick:
    id: int
    base: int
    rows: int
    snap: str
    prev: str
    first_seq: int  # the batch's changes lie between these sequence numbers
    last_seq: int

    @property
    def end(self) -> int:
        return self.base + self.rows

    def params(self, **more: object) -> dict[str, object]:
        return {"prev": self.prev, "cur": self.snap, "last_seq": self.last_seq, **more}


Ref = tuple[int, int, int]
"""One change of a page: its position, its sequence number and its capture id."""


class Batches:
    def __init__(self, log: PgChangeLog, seed: int) -> None:
        self.log = log
        self.seed = seed
        self._at: tuple[int, int, int] | None = None  # tick id, position, seq last read
        self._window: tuple[Tick, int, int] | None = None  # the last page: seq low < s <= high

    def page(self, after: int, max_rows: int, max_bytes: int) -> list[Ref]:
        """The next changes after position ``after``, inside one batch.

        Read in windows of sequence numbers (a batch's changes may be spread among
        other batches'): every change of the batch inside a window comes back, in
        order, so the i-th one read is the next position. One window costs
        O(max_rows) on the server, however large the batch."""
        tick = self._tick_after(after)
        if tick is None:
            return []
        start = max(after, tick.base)
        low = max(self._seq_at(tick, start), tick.first_seq - 1)
        rows: list[tuple[int, int, int]] = []
        while not rows and low < tick.last_seq:
            high = min(low + max_rows, tick.last_seq)
            rows = self.log.run(
                f"SELECT seq, tid, coalesce(pg_column_size(data), 0) FROM edge_cdc.log"
                f" WHERE {_BATCH} AND seq > %(low)s AND seq <= %(high)s ORDER BY seq",
                tick.params(low=low, high=high),
            ).fetchall()
            low = high
        if not rows:
            raise SourceError(
                f"postgres {self.log.where!r}: changes {start + 1}..{tick.end} of batch {tick.id}"
                " are missing from edge_cdc.log (deleted by hand?): the lake would have a gap;"
                " run `edge-agent snapshot` after checking who prunes edge_cdc.log"
            )
        refs: list[Ref] = []
        size = 0
        pos = start
        for seq, tid, nbytes in rows:
            pos += 1
            refs.append((pos, seq, tid))
            size += 64 + nbytes
            if size >= max_bytes or pos == tick.end:
                break
        self._at = (tick.id, refs[-1][0], refs[-1][1])
        self._window = (tick, refs[0][1] - 1, refs[-1][1])
        return refs

    def _tick_after(self, after: int) -> Tick | None:
        found = self._find(after)
        if found is None:
            self.log.run(_NEW_TICK, {"seed": self.seed})
            found = self._find(after)
        return found

    def _find(self, after: int) -> Tick | None:
        row = self.log.run(_FIND_TICK, (after,)).fetchone()
        if row is None:
            return None
        tick_id, base, rows, snap, prev, first_seq, last_seq = row
        return Tick(tick_id, base, rows, snap, prev, first_seq, last_seq)

    def _seq_at(self, tick: Tick, pos: int) -> int:
        """The sequence number of the change at ``pos`` (0: before the batch)."""
        if pos <= tick.base:
            return 0
        if self._at is not None and self._at[:2] == (tick.id, pos):
            return self._at[2]
        row = self.log.run(
            f"SELECT seq FROM edge_cdc.log WHERE {_BATCH} ORDER BY seq OFFSET %(k)s LIMIT 1",
            tick.params(k=pos - tick.base - 1),
        ).fetchone()
        if row is None:
            raise SourceError(
                f"postgres {self.log.where!r}: change {pos} of batch {tick.id} is missing from "
                "edge_cdc.log (deleted by hand?): positions cannot be given again; run "
                "`edge-agent snapshot` after checking who prunes edge_cdc.log"
            )
        return int(str(row[0]))

    def fetch(self, cap: PgCapture, before: bool = False) -> list[tuple[Any, ...]]:
        """The changes of one capture in the last page, decoded with its frozen column
        types: rows ``(seq, txid, op, ts_ms, value...[, old row as JSON text])`` in
        sequence order."""
        if self._window is None:
            return []
        tick, low, high = self._window
        params = tick.params(tid=cap.tid, low=low, high=high)
        columns = cap.spec.columns
        exprs = [select_expr(c.name, c.arrow) for c in columns]
        if before:
            exprs.append(sql.SQL("l.old::text"))
        temporal = [i for i, c in enumerate(columns) if _FINITE.get(c.arrow.id)]
        if temporal:
            exprs.append(not_finite([columns[i].name for i in temporal]))
        typed = sql.SQL(
            "SELECT l.seq, l.txid::text::bigint, l.op::text, l.ts_ms, {} FROM edge_cdc.log l"
            " LEFT JOIN LATERAL jsonb_populate_record(NULL::{}, l.data) r ON true"
            " WHERE l.tid = %(tid)s AND l.seq > %(low)s AND l.seq <= %(high)s AND "
            + _BATCH.replace("txid", "l.txid")
            + " ORDER BY l.seq"
        ).format(sql.SQL(", ").join(exprs), sql.Identifier(*cap.shape_type.split(".")))
        try:
            rows = self.log.con.execute(typed, params).fetchall()
        except psycopg.DataError:
            # A value the frozen column type cannot hold (the column's type changed
            # before the capture was regenerated): every value of this page as its JSON
            # text, which bronze keeps exactly in _unfit.
            return self.log.run(_as_text(cap, before), params).fetchall()
        except psycopg.Error as exc:
            raise map_error(exc, self.log.where) from exc
        return with_not_finite(rows, [4 + i for i in temporal]) if temporal else rows

    def prune(self, durable: int, chunk: int = PRUNE_CHUNK) -> int:
        """Delete the changes of every batch wholly at or below ``durable``, in chunks (each
        its own short transaction), and the ticks before the newest such batch's tick."""
        row = self.log.run(
            "SELECT id, snap::text FROM edge_cdc.ticks WHERE base + rows <= %s"
            " ORDER BY id DESC LIMIT 1",
            (durable,),
        ).fetchone()
        if row is None:
            return 0
        tick_id, snap = row
        total = 0
        while True:
            deleted = self.log.run(
                "DELETE FROM edge_cdc.log WHERE seq IN (SELECT seq FROM edge_cdc.log"
                " WHERE txid < pg_snapshot_xmax(%(s)s::pg_snapshot)"
                " AND pg_visible_in_snapshot(txid, %(s)s::pg_snapshot) LIMIT %(n)s)",
                {"s": snap, "n": chunk},
            ).rowcount
            total += deleted
            if deleted < chunk:
                break
        self.log.run("DELETE FROM edge_cdc.ticks WHERE id < %s", (tick_id,))
        return total

    def backlog(self, after: int) -> int:
        """Changes not yet durable: in batches beyond ``after``, and committed since the
        last tick."""
        if not self.log.exists():
            return 0
        row = self.log.run(
            "SELECT coalesce(sum(base + rows - greatest(base, %(a)s)), 0) FROM edge_cdc.ticks"
            " WHERE base + rows > %(a)s",
            {"a": after},
        ).fetchone()
        unticked = self.log.run(
            "SELECT count(*) FROM edge_cdc.log l, (SELECT snap FROM edge_cdc.ticks"
            " ORDER BY id DESC LIMIT 1) t WHERE NOT pg_visible_in_snapshot(l.txid, t.snap)"
        ).fetchone()
        return int(str(row[0] if row else 0)) + int(str(unticked[0] if unticked else 0))


# Dates and times travel as integers in the Arrow type's unit (psycopg's datetime
# objects cost ~3 µs a value to make and as much again for pyarrow to read).
_FINITE: dict[int, str] = {
    pa.timestamp("us").id: "(extract(epoch FROM {c}) * 1000000)::bigint",
    pa.date32().id: "{c} - DATE '1970-01-01'",
}
_TIME = "(extract(epoch FROM {c}) * 1000000)::bigint"


def _as_text(cap: PgCapture, before: bool) -> sql.Composed:
    values: list[sql.Composable] = [
        sql.SQL("l.data ->> {}").format(sql.Literal(c.name)) for c in cap.spec.columns
    ]
    if before:
        values.append(sql.SQL("l.old::text"))
    return sql.SQL(
        "SELECT l.seq, l.txid::text::bigint, l.op::text, l.ts_ms, {} FROM edge_cdc.log l"
        " WHERE l.tid = %(tid)s AND l.seq > %(low)s AND l.seq <= %(high)s AND "
        + _BATCH.replace("txid", "l.txid")
        + " ORDER BY l.seq"
    ).format(sql.SQL(", ").join(values))


def select_expr(name: str, arrow: pa.DataType, alias: str = "r") -> sql.Composable:
    """How a column is selected so that psycopg hands over what its Arrow type takes:
    text for every string-mapped type (uuid, json, enum, interval, unconstrained
    numeric...); dates and times as integers (``infinity`` as NULL here, its text
    beside, see ``fetch``)."""
    col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name))
    if arrow == pa.string():
        return sql.SQL("{}::text").format(col)
    if pa.types.is_list(arrow) and arrow.value_type == pa.string():
        return sql.SQL("{}::text[]").format(col)
    finite = _FINITE.get(arrow.id)
    if finite:
        return sql.SQL("CASE WHEN isfinite({c}) THEN " + finite + " END").format(c=col)
    if pa.types.is_time(arrow):
        return sql.SQL(_TIME).format(c=col)
    return col


def not_finite(names: list[str]) -> sql.Composable:
    """One extra column: NULL, or the texts of the row's non-finite dates and times."""
    cols = [sql.SQL("r.{}").format(sql.Identifier(n)) for n in names]
    return sql.SQL("CASE WHEN NOT ({all}) THEN ARRAY[{texts}] END").format(
        all=sql.SQL(" AND ").join(sql.SQL("coalesce(isfinite({}), true)").format(c) for c in cols),
        texts=sql.SQL(", ").join(
            sql.SQL("CASE WHEN NOT isfinite({c}) THEN {c}::text END").format(c=c) for c in cols
        ),
    )


def with_not_finite(rows: list[tuple[Any, ...]], indexes: list[int]) -> list[tuple[Any, ...]]:
    """Put ``infinity`` and ``-infinity`` (selected as text in the extra last column) in
    their columns: bronze keeps such a value exactly in ``_unfit``."""
    out = []
    for row in rows:
        texts = row[-1]
        if texts is None:
            out.append(row[:-1])
            continue
        values = list(row[:-1])
        for i, text in zip(indexes, texts, strict=True):
            if text is not None:
                values[i] = text
        out.append(tuple(values))
    return out
