"""Trigger capture of one SQLite source: open, keep triggers current, read pages.

Turns change-log rows into per-table groups ready for the bronze writer. It
knows nothing about files or shipping; positions are kept by the runtime.
"""

from __future__ import annotations

import sqlite3
from itertools import groupby
from operator import itemgetter

from edge_agent.bronze.schema import BatchSchema, Envelope, batch_schema
from edge_agent.capture import snapshot
from edge_agent.capture.pages import ChangeBatch, Page
from edge_agent.capture.trigger_commands import sync_capture
from edge_agent.capture.triggers import SEED_OP, Capture, ChangeLog
from edge_agent.config_sources import SourceConfig
from edge_agent.errors import SourceError
from edge_agent.sources.sqlite import connect
from edge_agent.sqlite_cache import limit_page_cache


class TriggerCapture:
    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.con: sqlite3.Connection | None = None
        self.log: ChangeLog | None = None
        self.captures: dict[int, Capture] = {}
        self.schemas: dict[int, BatchSchema] = {}
        self.table_errors: dict[str, str] = {}
        self._schema_version = -1
        self.captured_before: set[str] = set()  # tables with sealed files (agent state)
        self.actions: dict[str, str] = {}

    @property
    def name(self) -> str:
        return self.cfg.name

    def open(self, seed: int, now_ms: int) -> list[str]:
        """Connect and install triggers; returns the tables whose triggers changed."""
        self.con = connect(self.cfg.path, self.cfg.busy_timeout)
        limit_page_cache(self.con)
        self.log = ChangeLog(self.con, self.cfg.path, self.cfg.key_only_deletes)
        return self.sync_triggers(seed, now_ms)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
        self.con = None
        self.log = None

    def _changelog(self) -> ChangeLog:
        if self.log is None:
            raise SourceError(f"source {self.name!r} is not open")
        return self.log

    def sync_triggers(self, seed: int, now_ms: int) -> list[str]:
        """Install or regenerate triggers for every configured table that exists."""
        log = self._changelog()
        synced = sync_capture(log, self.cfg, seed, now_ms, self.captured_before)
        self.table_errors, self.actions = synced.table_errors, synced.actions
        self._schema_version = log.schema_version()
        self._load_captures()
        return synced.changed

    def schema_changed(self) -> bool:
        return self._changelog().schema_version() != self._schema_version

    def _load_captures(self) -> None:
        self.captures = self._changelog().captures()
        self.schemas = {
            tid: self.schemas.get(tid) or batch_schema(cap.shape.spec())
            for tid, cap in self.captures.items()
        }

    def read(self, after: int, max_bytes: int, sealed: dict[str, int], env: Envelope) -> Page:
        """The next page of changes after ``after``, one batch per capture.

        Rows of a table at or below its sealed position are already in a sealed
        file (a restart re-reads from the source-wide durable position) and are
        skipped, so nothing is written twice.
        """
        rows = self._changelog().read_page(after, self.cfg.page_rows, max_bytes)
        if not rows:
            return Page([], after, 0, 0)
        groups: dict[int, list[tuple[object, ...]]] = {}
        ignored = 0
        # Rows come in runs of one table (a transaction's statements): decide per run.
        for tid, run in groupby(rows, key=itemgetter(1)):
            kept, skipped = self._run_rows(tid, list(run), sealed)
            ignored += skipped
            if kept:
                groups.setdefault(tid, []).extend(kept)
        last = rows[-1][0]
        batches = [ChangeBatch.of(self.schemas[tid], group, env) for tid, group in groups.items()]
        return Page(batches, int(last) if isinstance(last, int) else after, len(rows), ignored)

    def _run_rows(
        self, tid: object, run: list[tuple[object, ...]], sealed: dict[str, int]
    ) -> tuple[list[tuple[object, ...]], int]:
        """The rows of one run of a table to write, and how many were ignored (a table
        not configured or unknown). Seed markers (tid 0) are dropped; rows of a table at
        or below its sealed position are already in a sealed file."""
        if isinstance(tid, int) and tid and tid not in self.captures:
            self._load_captures()
        cap = self.captures.get(tid) if isinstance(tid, int) else None
        if cap is None or cap.table not in self.cfg.tables:
            real = [r for r in run if r[2] != SEED_OP]
            return [], len(real)
        done = sealed.get(cap.table, -1)
        if _seq(run[0]) > done:
            return run, 0  # the common case: positions increase, nothing to drop
        return [r for r in run if r[2] != SEED_OP and _seq(r) > done], 0

    def snapshot_step(self, now_ms: int) -> int:
        """Copy one page of a pending snapshot into the change log; 0 when none is due.

        Jobs that turn out to have nothing left are finished on the way.
        """
        log = self._changelog()
        for job in snapshot.pending(log):
            if job.table not in self.cfg.tables:
                continue
            if job.tid not in self.captures:
                self._load_captures()
            cap = self.captures.get(job.tid)
            copied = snapshot.step(log, job, cap, self.cfg.page_rows, now_ms) if cap else 0
            if copied:
                return copied
        return 0

    def snapshot_jobs(self) -> list[snapshot.Job]:
        return snapshot.jobs(self._changelog())

    def prune(self, durable: int) -> int:
        return self._changelog().prune(durable)

    def pending(self, after: int) -> int:
        return self._changelog().pending(after)


def _seq(row: tuple[object, ...]) -> int:
    seq = row[0]
    return seq if isinstance(seq, int) else -1
