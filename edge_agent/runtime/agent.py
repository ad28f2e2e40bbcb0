"""The agent: composes sources, the bronze writer, the spool and the shipper.

``step(now)`` runs one cycle (capture what is new, seal what is due, ship what
is ready) and never sleeps, so tests drive it one step at a time. The run loop
(runtime/loop.py) decides when to call it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.bronze.writer import BronzeWriter
from edge_agent.clock import Clock
from edge_agent.config import Config
from edge_agent.errors import EdgeAgentError, SourceError, StateError, TransientError
from edge_agent.log import ErrorReporter, get_logger
from edge_agent.runtime.opening import Spec, open_pipeline, specs
from edge_agent.runtime.pipeline import Parts, Pipeline
from edge_agent.runtime.shipping import ShipStage
from edge_agent.shippers.base import Shipper
from edge_agent.spool.adopt import seed_from_lake
from edge_agent.spool.outbox import Recovery, Spool
from edge_agent.spool.quota import Quota
from edge_agent.spool.state import READY, StateDB
from edge_agent.spool.statedir import StateDir

log = get_logger("edge_agent.agent")
STEP_BUDGET = 1.0  # seconds of capture per step before sealing and shipping get a turn


@dataclass
class StepSummary:
    changes: int = 0
    sealed: int = 0
    shipped: int = 0
    pruned: int = 0
    dropped: int = 0
    blocked: bool = False
    caught_up: bool = True
    errors: list[str] = field(default_factory=list)

    def busy(self) -> bool:
        return bool(self.changes or self.sealed or self.shipped or self.pruned or self.dropped)


@dataclass
class FlushResult:
    pending_files: int
    pending_bytes: int
    errors: list[str]
    caught_up: bool = True  # False: the deadline came before capture reached the end

    @property
    def ok(self) -> bool:
        return self.pending_files == 0 and not self.errors and self.caught_up


class Agent:
    def __init__(
        self,
        cfg: Config,
        clock: Clock,
        shipper: Shipper,
        statedir: StateDir,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.sleep = sleep
        self.clock = clock
        self.statedir = statedir
        statedir.prepare()
        self.state, damaged = _open_state(statedir, clock.wall_ms())
        self.spool = Spool(statedir.spool, self.state)
        seeded = _seed_from_lake(cfg, self.state)
        self.recovery: Recovery = self.spool.recover(
            clock.wall_ms(), cfg.device_id, _stream_tables(cfg)
        )
        _say_rebuilt(self.state, self.recovery, damaged, seeded, clock.wall_ms())
        self.writer = BronzeWriter(self.spool.tmp, cfg.buffer)
        self.quota = Quota(cfg.buffer, self.state, self.spool, self.writer, clock)
        self.shipping = ShipStage(
            shipper,
            self.spool,
            self.state,
            clock,
            cfg.sink.retry_min,
            cfg.sink.retry_max,
            device=cfg.device_id,
            min_valid_ms=cfg.clock.min_valid_ms,
        )
        self.parts = Parts(
            self.writer, self.spool, self.state, clock, cfg.device_id, cfg.clock.min_valid_ms
        )
        self.pipelines: dict[str, Pipeline] = {}
        self.open_errors: dict[str, str] = {}
        # The last spool/state write failure (None once writes work again), kept in
        # memory too: when the state directory's disk is full the note cannot be
        # written to the state database.
        self.spool_error: str | None = None
        self.heartbeat: Callable[[], None] = lambda: None  # the daemon pings systemd here
        self.retry_open: dict[str, float] = {}
        self.reporter = ErrorReporter(log)
        self.page_bytes = max(64 * 1024, min(cfg.buffer.max_memory // 4, 4 * 1024**2))

    @property
    def spool_failed(self) -> bool:
        return self.spool_error is not None

    # -- sources ----------------------------------------------------------
    def _pipeline(self, spec: Spec, now: float) -> Pipeline | None:
        pipe = self.pipelines.get(spec.key)
        if pipe is not None or now < self.retry_open.get(spec.key, 0.0):
            return pipe
        try:
            pipe = open_pipeline(spec, self.parts, self.clock.wall_ms())
        except EdgeAgentError as exc:
            self._source_failed(spec.key, exc, now)
            return None
        self._report(pipe, pipe.actions(), "triggers.installed")
        self.pipelines[spec.key] = pipe
        return pipe

    def _report(self, pipe: Pipeline, done: dict[str, str], event: str) -> None:
        if done:
            log.info(event, source=pipe.source, actions=done)
        errors = pipe.table_errors()
        for table, error in errors.items():
            self.reporter.failed(f"table.{pipe.source}.{table}", error)
        note = "; ".join(errors.values()) or None
        self.state.set_note(f"source.{pipe.key}.tables", note, self.clock.wall_ms())

    def _source_failed(self, key: str, exc: Exception, now: float) -> None:
        self.open_errors[key] = str(exc)
        self.reporter.failed(f"source.{key}", str(exc))
        self.state.set_note(f"source.{key}.last_error", str(exc), self.clock.wall_ms())
        self.retry_open[key] = now + self.cfg.agent.poll_interval
        pipe = self.pipelines.pop(key, None)
        if pipe is not None:
            pipe.rewind()
            pipe.close()

    def _source_ok(self, key: str) -> None:
        self.open_errors.pop(key, None)
        self.reporter.ok(f"source.{key}")
        self.state.set_note(f"source.{key}.last_error", None, self.clock.wall_ms())

    # -- one cycle --------------------------------------------------------
    def step(self, now: float, drain_until: float | None = None) -> StepSummary:
        """One cycle. With ``drain_until``, capture until caught up or that deadline."""
        summary = StepSummary()
        for spec in specs(self.cfg):
            self._capture_source(spec, now, summary, drain_until)
        for pipe in list(self.pipelines.values()):
            self._guarded(pipe, now, summary, lambda p: self._seal_and_prune(p, now, summary))
        self._spool_recovered(summary)
        shipped = self.shipping.step(now)
        summary.shipped = shipped.shipped
        if shipped.error:
            self.reporter.failed("sink", shipped.error)
            summary.errors.append(shipped.error)
        elif shipped.shipped:
            self.reporter.ok("sink")
        if summary.busy():
            log.info("cycle", **self.cycle_fields(summary))
        return summary

    def _seal_and_prune(self, pipe: Pipeline, now: float, summary: StepSummary) -> None:
        pipe.drop_poisoned()
        summary.sealed += pipe.seal_due(now)
        summary.pruned += pipe.advance()

    def _capture_source(
        self, spec: Spec, now: float, summary: StepSummary, drain_until: float | None
    ) -> None:
        pipe = self._pipeline(spec, now)
        if pipe is None:
            summary.errors.append(self.open_errors.get(spec.key, f"source {spec.key} not open"))
            return
        until = drain_until if drain_until is not None else now + STEP_BUDGET
        try:
            self._guarded(pipe, now, summary, lambda p: self._capture_pages(p, summary, until))
        finally:
            pipe.pause()  # a page read ahead would sit outside the budget until the next turn

    def _capture_pages(self, pipe: Pipeline, summary: StepSummary, until: float) -> None:
        pipe.drop_poisoned()
        done = pipe.prepare(self.clock.wall_ms())
        if done:
            self._report(pipe, done, "schema.changed")
        while self.clock.monotonic() < until:
            self.heartbeat()
            room = self.quota.make_room(min(self.page_bytes, self.cfg.buffer.max_file_bytes))
            summary.dropped += room.dropped_files
            if not room.ok:
                summary.blocked = True
                summary.caught_up = False
                return
            page = pipe.capture_page(self.page_bytes)
            summary.changes += page.changes
            summary.sealed += page.sealed
            # A snapshot page is copied only once the log is drained: the backlog stays small.
            if page.caught_up and not pipe.idle_work(self.clock.wall_ms()):
                self._source_ok(pipe.key)
                return
            if page.turn_over:
                break
        summary.caught_up = False

    def _guarded(self, pipe: Pipeline, now: float, summary: StepSummary, action: Any) -> None:
        """Run a data-path action; on failure rewind that source and keep going."""
        try:
            action(pipe)
        except SourceError as exc:
            summary.errors.append(str(exc))
            self._source_failed(pipe.key, exc, now)
        except TransientError as exc:
            summary.errors.append(str(exc))
            self.reporter.failed(f"source.{pipe.key}", str(exc))
            pipe.rewind()
        except (OSError, sqlite3.Error) as exc:
            # Disk full or I/O errors in the spool (OSError) or the state database
            # (sqlite3.Error): nothing unsealed is kept; it is read again next time.
            where = "state database" if isinstance(exc, sqlite3.Error) else "spool write"
            message = f"{where} failed ({getattr(exc, 'strerror', None) or exc}): will retry"
            summary.errors.append(message)
            self.reporter.failed("spool", message)
            self.spool_error = message
            with contextlib.suppress(sqlite3.Error):
                self.state.set_note("spool.last_error", message, self.clock.wall_ms())
            pipe.rewind()

    def _spool_recovered(self, summary: StepSummary) -> None:
        if self.spool_failed and not any("failed (" in e for e in summary.errors):
            self.spool_error = None
            self.reporter.ok("spool")
            self.state.set_note("spool.last_error", None, self.clock.wall_ms())

    def cycle_fields(self, s: StepSummary) -> dict[str, Any]:
        return {
            "changes": s.changes,
            "sealed": s.sealed,
            "shipped": s.shipped,
            "pruned": s.pruned,
            "dropped": s.dropped,
            "blocked": s.blocked,
            "buffered_bytes": self.writer.buffered_bytes,
            "pending_files": len(self.state.files(READY)),
        }

    # -- flush and shutdown -----------------------------------------------
    def seal_all(self) -> int:
        count = 0
        for pipe in list(self.pipelines.values()):
            try:
                pipe.drop_poisoned()
                count += pipe.seal_all()
                pipe.advance()
            except (OSError, sqlite3.Error, EdgeAgentError) as exc:
                self.reporter.failed(f"source.{pipe.key}", str(exc))
                pipe.rewind()
        return count

    def flush(
        self,
        deadline: float,
        capture: bool = True,
        interrupted: Callable[[], str | None] = lambda: None,
    ) -> FlushResult:
        """Capture what is committed (unless told not to), seal it and ship it, until the
        deadline. The final flush on SIGTERM passes capture=False: it only seals and ships.
        ``interrupted`` is asked between shipping attempts (the daemon serves `status`
        there); a reason it returns ends the flush early with that reason as an error."""
        errors: list[str] = []
        summary = StepSummary()
        if capture:
            summary = self._drain(deadline, errors)
        self.seal_all()
        while True:
            now = self.clock.monotonic()
            self.heartbeat()
            result = self.shipping.step(now, force=True, budget=max(0.1, deadline - now))
            if not self.state.files(READY) or now >= deadline:
                break
            stop = interrupted()
            if stop:
                errors.append(stop)
                break
            if result.error:
                pause = min(self.cfg.sink.retry_min, deadline - now)
                if pause <= 0:
                    break
                self.sleep(pause)
        if result.error:
            errors.append(result.error)
        ready = self.state.files(READY)
        blocked = "spool full: capture paused" if summary.blocked else None
        return FlushResult(
            len(ready),
            sum(r.bytes for r in ready),
            errors + ([blocked] if blocked else []),
            caught_up=not capture or summary.caught_up or summary.blocked,
        )

    def _drain(self, deadline: float, errors: list[str]) -> StepSummary:
        """Cycles until every source is caught up (a cycle may end early to let a source
        advance: a logical slot between peeks), an error, or the deadline (then the
        summary says it is not caught up)."""
        while True:
            summary = self.step(self.clock.monotonic(), drain_until=deadline)
            errors.extend(summary.errors)
            if summary.caught_up or summary.errors or summary.blocked:
                return summary
            if self.clock.monotonic() >= deadline:
                return summary

    def next_deadline(self, now: float) -> float:
        """When the next step is needed without any wake-up (file age, retry)."""
        ages = [f.opened_at + self.cfg.buffer.max_file_age for f in self.writer.open.values()]
        candidates = [now + self.cfg.agent.poll_interval, *ages]
        if self.state.files(READY):
            candidates.append(max(now, self.shipping.next_attempt))
        return min(candidates)

    def close(self) -> None:
        for pipe in self.pipelines.values():
            pipe.close()
        self.writer.abort()
        self.shipping.shipper.close()
        self.state.close()


_DAMAGED = ("malformed", "not a database", "file is encrypted")


def _open_state(statedir: StateDir, now_ms: int) -> tuple[StateDB, str | None]:
    """The state database; a damaged one is moved aside and the ledger rebuilt from the
    spool (never for other failures, e.g. a full disk: those stop the agent)."""
    try:
        return StateDB(statedir.db_path), None
    except StateError as exc:
        if not any(word in str(exc) for word in _DAMAGED):
            raise
        moved = statedir.move_db_aside(now_ms)
        log.error("state.damaged", error=str(exc), moved_to=str(moved))
        return StateDB(statedir.db_path), f"the state database was damaged (kept as {moved})"


def _stream_tables(cfg: Config) -> Callable[[str, str], bool]:
    """Tables captured by a change log or a slot: their files can be adopted back."""
    tables = {(s.name, t) for s in cfg.sources for t in s.tables}
    return lambda source, table: (source, table) in tables


def _seed_from_lake(cfg: Config, state: StateDB) -> dict[str, int]:
    if cfg.sink.kind != "dir" or not cfg.sink.path.is_dir():
        return {}
    names = [s.name for s in cfg.sources if s.tables]
    return seed_from_lake(state, cfg.sink.path, cfg.device_id, names)


def _say_rebuilt(
    state: StateDB, rec: Recovery, damaged: str | None, seeded: dict[str, int], now_ms: int
) -> None:
    """Log and note (for `status`) what the start-up rebuilt, if anything."""
    parts = [damaged] if damaged else []
    if rec.older_ledger:
        parts.append("the state database was older than the spool (restored or emptied)")
    if rec.adopted:
        parts.append(f"{rec.adopted} spooled file(s) taken back into the ledger")
    if seeded:
        parts.append(
            "ordinals continued after the lake's newest files: "
            + ", ".join(f"{k} {v}" for k, v in sorted(seeded.items()))
        )
    if not (damaged or rec.older_ledger or seeded):
        if rec.adopted:  # the usual crash between a file's publication and its record
            log.info("state.adopted", files=rec.adopted)
        return
    text = "; ".join(parts)
    log.warning("state.rebuilt", what=text)
    state.set_note("state.rebuilt", text, now_ms)
