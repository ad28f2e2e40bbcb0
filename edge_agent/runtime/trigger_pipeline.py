"""The trigger-mode pipeline of one source: change log -> sealed, recorded files.

Any ``LogCapture`` (SQLite or PostgreSQL triggers) drives it.

Position rules (ARCHITECTURE invariant 1):
- ``read_pos``: the last change-log position read into the writer (memory).
- ``sealed[table]``: the last position of the table's last sealed file (state DB).
- ``durable``: every change at or below it is in a sealed, recorded file. It is
  ``min(read_pos, first position of each open file - 1)`` and is what the
  change log is pruned to and what capture restarts from after a crash.
"""

from __future__ import annotations

from edge_agent.capture.pages import LogCapture
from edge_agent.runtime.pipeline import PageResult, Parts, StreamPipeline


class TriggerPipeline(StreamPipeline):
    def __init__(self, capture: LogCapture, parts: Parts) -> None:
        super().__init__(capture.name, parts)
        self.capture = capture
        self.pruned_to = -1

    @property
    def key(self) -> str:
        return self.source

    def table_errors(self) -> dict[str, str]:
        return self.capture.table_errors

    def actions(self) -> dict[str, str]:
        return self.capture.actions

    def owns(self, table: str) -> bool:
        return table in self.capture.cfg.tables

    def rewind(self) -> None:
        """Forget unsealed work after a failure: it is read again from the log."""
        self.abort_open()
        self.read_pos = self.durable

    def prepare(self, now_ms: int) -> dict[str, str]:
        """Regenerate triggers after a schema change; returns what was done per table."""
        if not self.capture.schema_changed():
            return {}
        self.capture.sync_triggers(self.durable, now_ms)
        return self.capture.actions

    def idle_work(self, now_ms: int) -> int:
        """Once the log is drained: one snapshot page, if one is due."""
        return self.capture.snapshot_step(now_ms)

    def capture_page(self, max_bytes: int) -> PageResult:
        page = self.capture.read(self.read_pos, max_bytes, self.sealed, self.envelope())
        result = PageResult(rows=page.rows_read, caught_up=page.rows_read == 0)
        if page.rows_read:
            result.sealed = sum(self.write_batch(b) for b in page.batches)
            result.changes = sum(b.batch.num_rows for b in page.batches)
            self.read_pos = page.last_seq
        return result

    def advance(self) -> int:
        """Persist the durable position when it moved, then prune the change log."""
        durable = self.durable_now()
        if durable > self.durable:
            self.state.set_durable(self.source, durable)
            self.durable = durable
        pruned = 0
        if self.durable > self.pruned_to:
            pruned = self.capture.prune(self.durable)
            self.pruned_to = self.durable
        return pruned

    def close(self) -> None:
        self.capture.close()
