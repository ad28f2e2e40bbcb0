"""What a capture hands the pipeline, whatever the database: ``ChangeBatch``.

A change batch is the changes of one table in position order, as an Arrow
RecordBatch in the bronze schema (envelope + row columns + ``_unfit``), with
its position range. ``_pos`` is the change's position in the source (unique,
increasing in commit order), ``_tx`` the transaction id where the database
has one. A page of a change-log capture is a run of consecutive positions,
one batch per table, plus where the next read starts (the resume state).
No stage after capture knows which database a change came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from edge_agent.bronze.schema import BatchSchema, Envelope, to_batch
from edge_agent.clock import day_of, split_by_day
from edge_agent.config_sources import SourceConfig

POS, TS_MS, CAPTURED_MS = 1, 2, 3  # column indexes in every bronze batch (bronze/schema.py)


@dataclass(frozen=True)
class ChangeBatch:
    schema: BatchSchema
    batch: pa.RecordBatch
    ordered: bool = False  # ``_ts_ms`` never decreases (a timestamp-mode page)

    @property
    def table(self) -> str:
        return self.schema.shape.name

    @property
    def first_pos(self) -> int:
        return int(self.batch.column(POS)[0].as_py())

    @property
    def last_pos(self) -> int:
        return int(self.batch.column(POS)[-1].as_py())

    def day_runs(self, min_valid_ms: int) -> list[tuple[int, int]]:
        """Index ranges [start, end) of one UTC day each (clock.split_by_day); an
        ordered batch whose first and last change share a day is one range, unread."""
        ts = self.batch.column(TS_MS)
        n = self.batch.num_rows
        if self.ordered and n and ts.null_count == 0:
            first, last = ts[0].as_py(), ts[n - 1].as_py()
            if day_of(first, min_valid_ms) == day_of(last, min_valid_ms):
                return [(0, n)]
        return split_by_day(ts.to_pylist(), min_valid_ms)

    @staticmethod
    def of(schema: BatchSchema, rows: list[tuple[object, ...]], env: Envelope) -> ChangeBatch:
        """From change rows ``(pos, tx, op, ts_ms, value...)``: the capture's decoding."""
        return ChangeBatch(schema, to_batch(schema, rows, env))


@dataclass
class Page:
    batches: list[ChangeBatch]
    last_seq: int  # the last position the page covers (skipped rows included)
    rows_read: int
    ignored: int = 0


class LogCapture(Protocol):
    """A source whose capture objects write a change log: SQLite or PostgreSQL triggers.

    Positions are the source's own; the pipeline keeps which are durable and
    calls ``prune`` only up to those (ARCHITECTURE invariant 1).
    """

    cfg: SourceConfig
    table_errors: dict[str, str]
    actions: dict[str, str]

    @property
    def name(self) -> str: ...

    def schema_changed(self) -> bool:
        """Whether a captured table's columns (or its capture objects) changed. Cheap."""
        ...

    def sync_triggers(self, seed: int, now_ms: int) -> list[str]:
        """Install or regenerate capture objects; ``seed`` is the durable position, so a
        new change log starts above it. Returns the tables whose capture changed."""
        ...

    def read(self, after: int, max_bytes: int, sealed: dict[str, int], env: Envelope) -> Page:
        """The next page after position ``after``; rows of a table at or below
        ``sealed[table]`` are skipped (already in a sealed file). Holds no transaction.
        ``env``: the envelope's device, source and capture time."""
        ...

    def snapshot_step(self, now_ms: int) -> int:
        """Copy one page of a pending snapshot into the change log; 0 when none is due."""
        ...

    def prune(self, durable: int) -> int:
        """Delete consumed changes at or below ``durable`` (in bounded chunks)."""
        ...

    def close(self) -> None: ...
