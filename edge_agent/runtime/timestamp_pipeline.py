"""The timestamp-mode pipeline of one table: poll the cursor, write, record the watermark.

Positions are given out by the agent per table (there is no change log); the
cursor checkpoint (watermark, the (key, cursor) pairs sealed inside the lag
window, the next position) is recorded in the same transaction as each sealed
file, so a crash re-reads exactly what was not sealed (capture/cursor.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_agent.capture.cursor import Checkpoint, CursorState
from edge_agent.capture.timestamp import TimestampCapture
from edge_agent.capture.ts_pages import ArrowPage, OpRule, RowsPage
from edge_agent.log import get_logger
from edge_agent.runtime.pipeline import FilePipeline, PageResult, Parts
from edge_agent.spool.state import FileRecord, snapshot_request

if TYPE_CHECKING:
    from edge_agent.capture.pg_timestamp import PgTimestampCapture

log = get_logger("edge_agent.timestamp")
CLOCK_MARGIN_S = 60  # a watermark this far (beyond the lag) ahead of the clock: a warning
UNREAD_CHECK_S = 300  # how often a declared cursor format looks for rows it cannot read


class TimestampPipeline(FilePipeline):
    def __init__(self, capture: TimestampCapture | PgTimestampCapture, parts: Parts) -> None:
        super().__init__(capture.name, parts)
        self.capture = capture
        self.table = capture.table
        self.scale = capture.cursor_per_ms  # cursor units per millisecond
        saved = parts.state.cursor(self.source, self.table.name)
        self.cursor = CursorState(
            int(self.table.lag * 1000 * self.scale), Checkpoint.from_json(saved)
        )
        self.after: tuple[Any, ...] | None = None  # paging inside one poll
        self.clock_warning: str | None = parts.state.notes().get(self.clock_note, (None, 0))[0]
        self.unread_warning: str | None = parts.state.notes().get(self.unread_note, (None, 0))[0]
        self.unread_checked: float | None = None  # monotonic time of the last look

    @property
    def key(self) -> str:
        return f"{self.source}/{self.table.name}"

    def owns(self, table: str) -> bool:
        return table == self.table.name

    def rewind(self) -> None:
        self.abort_open()
        self.cursor.rewind()
        self.after = None

    def prepare(self, now_ms: int) -> dict[str, str]:
        done: dict[str, str] = {}
        if self.state.notes().get(snapshot_request(self.source, self.table.name)):
            done[self.table.name] = self._start_snapshot(now_ms)
        if self.capture.schema_changed():
            self.capture.refresh_schema()
            done[self.table.name] = "schema refreshed"
        return done

    def _start_snapshot(self, now_ms: int) -> str:
        """`edge-agent snapshot` asked for this table: read it again from the start;
        what was captured before comes out as op "r" (read again: nothing unsealed is
        kept). The restart is stored before the request is cleared."""
        self.rewind()
        restart = self.cursor.durable.restarted()
        if restart.snapshot:
            self.state.set_cursor(self.source, self.table.name, restart.to_json())
            self.cursor = CursorState(self.cursor.lag_ms, restart)
        self.state.set_note(snapshot_request(self.source, self.table.name), None, now_ms)
        return "snapshot started" if restart.snapshot else "snapshot: nothing captured yet"

    def idle_work(self, now_ms: int) -> int:
        return 0

    def pause(self) -> None:
        self.capture.drop_ahead()

    def capture_page(self, max_bytes: int) -> PageResult:
        schema = self.capture.schema
        polled = self.capture.poll(
            self.cursor.low_bound(), self.after, self.capture.source.page_rows
        )
        if schema is None or not (len(polled) or polled.full):
            self.after = None
            self._end_of_table()
            return PageResult()
        page = ArrowPage(polled.arrow, schema) if polled.arrow else RowsPage(polled.rows, schema)
        accepted = self.cursor.accept_page(page)
        self.after = None
        if polled.full:  # the next page starts after this one's last row
            self.after = polled.resume or (page.resume() if isinstance(page, RowsPage) else None)
            self.capture.prefetch(
                self.cursor.low_bound(), self.after, self.capture.source.page_rows
            )
        sealed = 0
        if accepted.count:
            rule = OpRule(self.table.deleted_flag, self.cursor.durable.snapshot_until)
            changes = page.changes(schema, accepted, rule, self.scale, self.envelope())
            sealed = self.write_batch(changes)
        if not polled.full:
            self._end_of_table()
        return PageResult(
            rows=len(polled), changes=accepted.count, sealed=sealed, caught_up=not polled.full
        )

    @property
    def clock_note(self) -> str:
        return f"source.{self.key}.clock"

    def _check_clock(self) -> None:
        """A watermark ahead of the clock means the application's clock stepped back (or it
        writes future times): rows written now get cursor values below the watermark and
        are not captured. Never silent: a warning in the log and in `status`."""
        watermark = self.cursor.top  # the largest cursor captured (sealed or not)
        now_ms = self.clock.wall_ms()
        if watermark is None or now_ms < self.parts.min_valid_ms:
            return  # no watermark yet, or the device clock itself is not synced
        ahead_s = (watermark / self.scale - now_ms) / 1000
        warning = None
        if ahead_s > self.table.lag + CLOCK_MARGIN_S:
            warning = (
                f"table {self.table.name!r}: captured cursor values reach {ahead_s:.0f} s "
                "ahead of the clock: the application's clock stepped back (or it writes "
                "future times); rows written now sort below what was captured and are not "
                "captured until the clock passes it. Once the clock is right, run `edge-agent "
                f"snapshot --table {self.table.name}` to read the table again"
            )
        if warning != self.clock_warning:
            self.clock_warning = warning
            self.state.set_note(self.clock_note, warning, now_ms)
            if warning:
                log.warning("timestamp.clock_behind", source=self.source, ahead_s=round(ahead_s))

    @property
    def unread_note(self) -> str:
        return f"source.{self.key}.unread"

    def _check_unread(self) -> None:
        """A declared cursor format reads numbers only: rows whose cursor holds text are
        never captured. Looked for now and then (an index seek), and said in `status`."""
        now = self.clock.monotonic()
        if self.unread_checked is not None and now - self.unread_checked < UNREAD_CHECK_S:
            return
        self.unread_checked = now
        found = self.capture.unread_cursor()
        warning = None
        if found is not None:
            warning = (
                f"table {self.table.name!r}: cursor_format = {self.table.cursor_format!r} "
                f"reads numbers only, and column {self.table.cursor!r} holds {found!r}: such "
                'rows are never captured; use cursor_format = "auto" (any time format), or '
                "store the cursor as a number"
            )
        if warning != self.unread_warning:
            self.unread_warning = warning
            self.state.set_note(self.unread_note, warning, self.clock.wall_ms())
            if warning:
                log.warning("timestamp.unread_rows", source=self.source, table=self.table.name)

    def _end_of_table(self) -> None:
        """A poll reached the end: a running snapshot has read everything it must."""
        self._check_clock()
        self._check_unread()
        if self.cursor.durable.snapshot and self.cursor.snapshot_end is None:
            self.cursor.snapshot_end = self.cursor.next_pos - 1

    def record(self, rec: FileRecord) -> None:
        checkpoint = self.cursor.checkpoint_for(rec.last_pos)
        self.state.record_sealed(rec, 0, cursor=(self.table.name, checkpoint.to_json()))
        self.cursor.commit(checkpoint)  # only once it is on disk

    def advance(self) -> int:
        finished = self.cursor.snapshot_finished()
        if finished is not None:  # its end was sealed with no file after it
            self.state.set_cursor(self.source, self.table.name, finished.to_json())
            self.cursor.commit(finished)
        return 0

    def close(self) -> None:
        self.capture.close()
