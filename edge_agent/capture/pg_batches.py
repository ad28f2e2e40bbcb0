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

import pyarrow as pa
from psycopg import sql

from edge_agent.capture.pg_log import PgCapture, PgChangeLog
from edge_agent.errors import SourceError

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
    SELECT count(*) AS rows FROM edge_cdc.log l, prev, cur
    WHERE l.txid >= pg_snapshot_xmin(prev.snap) AND l.txid < pg_snapshot_xmax(cur.snap)
      AND pg_visible_in_snapshot(l.txid, cur.snap)
      AND NOT pg_visible_in_snapshot(l.txid, prev.snap))
INSERT INTO edge_cdc.ticks (snap, base, rows)
SELECT cur.snap, greatest(prev.base + prev.rows, %(seed)s), batch.rows FROM prev, cur, batch
WHERE batch.rows > 0"""
_FIND_TICK = """
SELECT t.id, t.base, t.rows, t.snap::text,
       (SELECT p.snap::text FROM edge_cdc.ticks p WHERE p.id < t.id ORDER BY p.id DESC LIMIT 1)
FROM edge_cdc.ticks t WHERE t.base + t.rows > %s AND t.rows > 0 ORDER BY t.id LIMIT 1"""


@dataclass(frozen=True)
class Tick:
    id: int
    base: int
    rows: int
    snap: str
    prev: str

    @property
    def end(self) -> int:
        return self.base + self.rows

    def params(self, **more: object) -> dict[str, object]:
        return {"prev": self.prev, "cur": self.snap, **more}


@dataclass(frozen=True)
class Ref:
    """One change of a page: its position, its sequence number and its capture."""

    pos: int
    seq: int
    tid: int


class Batches:
    def __init__(self, log: PgChangeLog, seed: int) -> None:
        self.log = log
        self.seed = seed
        self._at: tuple[int, int, int] | None = None  # tick id, position, seq last read

    def page(self, after: int, max_rows: int, max_bytes: int) -> list[Ref]:
        """The next changes after position ``after``, inside one batch."""
        tick = self._tick_after(after)
        if tick is None:
            return []
        start = max(after, tick.base)
        seq = self._seq_at(tick, start)
        rows = self.log.run(
            f"SELECT seq, tid, coalesce(pg_column_size(data), 0) FROM edge_cdc.log WHERE {_BATCH}"
            " AND seq > %(seq)s ORDER BY seq LIMIT %(n)s",
            tick.params(seq=seq, n=min(max_rows, tick.end - start)),
        ).fetchall()
        if not rows:
            raise SourceError(
                f"postgres {self.log.where!r}: changes {start + 1}..{tick.end} of batch {tick.id}"
                " are missing from edge_cdc.log (deleted by hand?): the lake would have a gap;"
                " run `edge-agent snapshot` after checking who prunes edge_cdc.log"
            )
        refs: list[Ref] = []
        size = 0
        for seq_, tid, nbytes in rows:
            refs.append(Ref(start + len(refs) + 1, int(str(seq_)), int(str(tid))))
            size += 64 + int(str(nbytes))
            if size >= max_bytes:
                break
        self._at = (tick.id, refs[-1].pos, refs[-1].seq)
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
        tick_id, base, rows, snap, prev = row
        return Tick(int(str(tick_id)), int(str(base)), int(str(rows)), str(snap), str(prev))

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
        return int(str(row[0])) if row else 0

    def fetch(self, cap: PgCapture, seqs: list[int]) -> list[tuple[Any, ...]]:
        """The changes ``seqs`` of one capture, decoded with its frozen column types:
        rows ``(seq, txid, op, ts_ms, value...)`` in sequence order."""
        columns = sql.SQL(", ").join(select_expr(c.name, c.arrow) for c in cap.spec.columns)
        query = sql.SQL(
            "SELECT l.seq, l.txid::text::bigint, l.op::text, l.ts_ms, {} FROM edge_cdc.log l"
            " LEFT JOIN LATERAL jsonb_populate_record(NULL::{}, l.data) r ON true"
            " WHERE l.seq = ANY(%s) ORDER BY l.seq"
        ).format(columns, sql.Identifier(*cap.shape_type.split(".")))
        return self.log.run(query, (seqs,)).fetchall()

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


def select_expr(name: str, arrow: pa.DataType) -> sql.Composable:
    """How a column is selected so that psycopg hands over what its Arrow type takes:
    text for every string-mapped type (uuid, json, enum, interval, unconstrained
    numeric...)."""
    col = sql.SQL("r.{}").format(sql.Identifier(name))
    if arrow == pa.string():
        return sql.SQL("{}::text").format(col)
    if pa.types.is_list(arrow) and arrow.value_type == pa.string():
        return sql.SQL("{}::text[]").format(col)
    return col
