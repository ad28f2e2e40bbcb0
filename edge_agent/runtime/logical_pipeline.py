"""The logical-mode pipeline of one source: slot -> sealed, recorded files -> advance.

Position rules (ARCHITECTURE invariant 1), as in trigger mode:
- ``read_pos``: the last position read into the writer (memory).
- ``sealed[table]``: the last position of the table's last sealed file (state DB).
- ``durable = min(read_pos, first position of each open file - 1)``.
and one more: the *checkpoint* (capture/pg_logical.py), the newest transaction
boundary at or below ``durable``, stored in the state database before the slot
is advanced to it. A snapshot is read at a boundary with the stream stopped;
its end seals every open file and stores the checkpoint the stream starts from.
"""

from __future__ import annotations

import time

from edge_agent.capture.pg_logical import REREAD_SEAL, PgLogicalCapture
from edge_agent.capture.pg_logical_ops import lag_warning
from edge_agent.capture.slot_checkpoint import CHECKPOINT, Checkpoint
from edge_agent.log import get_logger
from edge_agent.runtime.pipeline import PageResult, Parts, StreamPipeline
from edge_agent.spool.state import snapshot_request

log = get_logger("edge_agent.logical")
LAG_CHECK = 30.0  # seconds between looks at the slot's lag


class LogicalPipeline(StreamPipeline):
    def __init__(self, capture: PgLogicalCapture, parts: Parts) -> None:
        super().__init__(capture.name, parts)
        self.capture = capture
        self._last_heartbeat = time.monotonic()
        self._lag_checked = 0.0

    @staticmethod
    def saved(parts: Parts, source: str) -> Checkpoint | None:
        return Checkpoint.loads(parts.state.cursor(source, CHECKPOINT))

    def store(self, cp: Checkpoint) -> None:
        self.state.set_cursor(self.source, CHECKPOINT, cp.dumps())

    @property
    def key(self) -> str:
        return self.source

    def table_errors(self) -> dict[str, str]:
        errors = dict(self.capture.table_errors)
        if self.capture.gap:
            errors["*"] = self.capture.gap
        return errors

    def actions(self) -> dict[str, str]:
        return self.capture.actions

    def owns(self, table: str) -> bool:
        return table in self.capture.cfg.tables

    def prepare(self, now_ms: int) -> dict[str, str]:
        """`edge-agent snapshot` asked for tables: taken at the next transaction boundary
        (column changes need nothing here: they arrive in the stream)."""
        notes = self.state.notes()
        asked = [t for t in self.capture.cfg.tables if snapshot_request(self.source, t) in notes]
        if not asked or self.capture.busy():
            return {}
        self.seal_all()  # everything read so far durable: the checkpoint reaches it
        self.advance()
        cp = self.capture.plan_snapshot(asked, self.durable)
        if cp is None:
            return {}
        self.store(cp)
        for table in asked:
            self.state.set_note(snapshot_request(self.source, table), None, now_ms)
        return {t: "snapshot started" for t in asked}

    def rewind(self) -> None:
        self.abort_open()
        self.capture.rewind(self.floor())
        self.read_pos = self.durable

    def floor(self) -> int:
        """Above every recorded position: where a snapshot started over numbers from (a
        table's sealed files may reach past ``durable`` while another's file is open)."""
        return max([self.durable, *self.sealed.values()])

    def idle_work(self, now_ms: int) -> int:
        """Caught up: a heartbeat now and then, so the slot moves on an idle database."""
        if time.monotonic() - self._last_heartbeat >= self.capture.cfg.heartbeat:
            self.capture.heartbeat()
            self._last_heartbeat = time.monotonic()
        return 0

    def capture_page(self, max_bytes: int) -> PageResult:
        if self.capture.checkpoint is not None and self.capture.checkpoint.snapshot:
            return self._snapshot_page()
        page = self.capture.read(max_bytes, self.sealed, self.envelope())
        learned = self.capture.keys_learned()
        if learned is not None:
            self.store(learned)  # before any row numbered with those keys is written
        # An exhausted peek is caught up (to the WAL's end when it started), unless it
        # stopped at its change limit: the next one decodes again what is not confirmed.
        result = PageResult(rows=page.changes_read, caught_up=page.done and not page.more)
        result.sealed = sum(self.write_batch(b) for b in page.batches)
        result.changes = sum(b.batch.num_rows for b in page.batches)
        if page.done and page.more:
            # The next peek decodes only past the slot's confirmed position: seal, so
            # this turn's advance confirms what was read; reading on now would only
            # decode the same changes again.
            result.sealed += self.seal_all()
            result.turn_over = True
        stream = self.capture.stream
        if stream is not None:
            self.read_pos = stream.pos
            if stream.reread > REREAD_SEAL:
                # Each peek decodes again what is not yet confirmed: seal, so it can be.
                result.sealed += self.seal_all()
                stream.reread = 0
        return result

    def _snapshot_page(self) -> PageResult:
        batches = self.capture.snapshot_page(self.envelope())
        result = PageResult(caught_up=False)
        result.sealed = sum(self.write_batch(b) for b in batches)
        result.changes = result.rows = sum(b.batch.num_rows for b in batches)
        self.read_pos = self.capture.snapshot_pos
        if self.capture.snapshot_done:
            result.sealed += self.seal_all()
            cp = self.capture.finish_snapshot(self.read_pos)
            self.store(cp)
            self.durable = max(self.durable, self.read_pos)
            self.state.set_durable(self.source, self.durable)
        return result

    def advance(self) -> int:
        """Persist the durable position, then the checkpoint, then advance the slot."""
        self._watch_lag()
        durable = self.durable_now()
        if durable > self.durable:
            self.state.set_durable(self.source, durable)
            self.durable = durable
        cp = self.capture.boundary(self.durable)
        if cp is None:
            return 0
        self.store(cp)
        self.capture.confirm(cp)
        return 1

    def _watch_lag(self) -> None:
        """Every LAG_CHECK seconds: the WAL the slot holds; above max_slot_lag, a warning in
        the log and in the state database's notes (`status` shows it)."""
        now = time.monotonic()
        if now - self._lag_checked < LAG_CHECK:
            return
        self._lag_checked = now
        state = self.capture.lag()
        cfg = self.capture.cfg
        warning = None
        if state is not None and state.lag_bytes > cfg.max_slot_lag:
            warning = lag_warning(cfg, state.lag_bytes)
            log.warning("slot.lag", source=self.source, slot=cfg.slot, lag_bytes=state.lag_bytes)
        self.state.set_note(f"source.{self.source}.slot_lag", warning, self.clock.wall_ms())

    def close(self) -> None:
        self.capture.close()
