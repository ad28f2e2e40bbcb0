"""Trigger capture of one PostgreSQL source: connect, keep triggers current, read pages.

The PostgreSQL ``LogCapture`` (capture/pages.py): the runtime's trigger
pipeline drives it exactly as it drives SQLite's. A lost connection is a
``TransientError``; the next call connects again.
"""

from __future__ import annotations

from collections import defaultdict

from edge_agent.bronze.schema import BatchSchema, Envelope, batch_schema
from edge_agent.capture import pg_snapshot
from edge_agent.capture.pages import ChangeBatch, Page
from edge_agent.capture.pg_batches import Batches, Ref
from edge_agent.capture.pg_log import PgCapture, PgChangeLog
from edge_agent.capture.trigger_commands import sync_capture
from edge_agent.config_sources import SourceConfig
from edge_agent.errors import SourceError
from edge_agent.sources.postgres import (
    Con,
    connect,
    execute,
    regclass,
)

_SIGNATURE = """
SELECT n.name, to_regclass(n.name)::oid,
  (SELECT array_agg(a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod)
          ORDER BY a.attnum)
   FROM pg_attribute a WHERE a.attrelid = to_regclass(n.name) AND a.attnum > 0
     AND NOT a.attisdropped),
  (SELECT array_agg(t.tgname::text || t.tgenabled::text || encode(t.tgargs, 'hex')
          ORDER BY t.tgname)
   FROM pg_trigger t WHERE t.tgrelid = to_regclass(n.name) AND NOT t.tgisinternal)
FROM unnest(%s::text[]) AS n(name) ORDER BY n.name"""


def open_connection(cfg: SourceConfig) -> Con:
    con = connect(cfg.dsn, cfg.password or None, cfg.connect_timeout)
    try:
        execute(con, "SET IntervalStyle = 'iso_8601'")  # intervals land as ISO 8601 text
    except BaseException:
        con.close()
        raise
    return con


def take_reader_lock(con: Con, where: str) -> None:
    """One reader per change log: a second agent would tick the same batches again and
    prune what the first has not read. Held by the session; a dead session frees it."""
    row = execute(con, "SELECT pg_try_advisory_lock(hashtext('edge_cdc.reader'))")
    if not row or not row[0][0]:
        raise SourceError(
            f"postgres {where!r}: another agent captures this database (it holds the "
            "edge_cdc reader lock): capture each database from one source of one agent; "
            "see pg_locks (locktype = 'advisory') for its session"
        )


class PgTriggerCapture:
    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.con: Con | None = None
        self.captures: dict[int, PgCapture] = {}
        self.schemas: dict[int, BatchSchema] = {}
        self.table_errors: dict[str, str] = {}
        self.actions: dict[str, str] = {}
        self.captured_before: set[str] = set()
        self.seed = 0
        self._signature: object = None
        self._log: PgChangeLog | None = None
        self._batches: Batches | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    def open(self, seed: int, now_ms: int) -> list[str]:
        self.seed = seed
        return self.sync_triggers(seed, now_ms)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
        self.con = None

    def _changelog(self) -> PgChangeLog:
        if self.con is None or self.con.closed or self.con.broken:
            self.close()
            self.con = open_connection(self.cfg)
            take_reader_lock(self.con, self.cfg.dsn)
            self._log = PgChangeLog(self.con, self.cfg.dsn, self.cfg.before_image)
            self._batches = Batches(self._log, self.seed)
        if self._log is None:
            raise SourceError(f"source {self.name!r} is not open")
        return self._log

    def _batch_reader(self) -> Batches:
        self._changelog()
        if self._batches is None:
            raise SourceError(f"source {self.name!r} is not open")
        return self._batches

    def sync_triggers(self, seed: int, now_ms: int) -> list[str]:
        """Install or regenerate triggers for every configured table that exists."""
        log = self._changelog()
        log.ensure(seed)
        synced = sync_capture(log, self.cfg, seed, now_ms, self.captured_before)
        self.table_errors, self.actions = synced.table_errors, synced.actions
        self._signature = self._catalog_signature()
        self._load_captures()
        return synced.changed

    def _catalog_signature(self) -> object:
        names = [regclass(t) for t in self.cfg.tables]
        return self._changelog().run(_SIGNATURE, (names,)).fetchall()

    def schema_changed(self) -> bool:
        return self._catalog_signature() != self._signature

    def _load_captures(self) -> None:
        self.captures = self._changelog().captures()
        self.schemas = {
            tid: self.schemas.get(tid)
            or batch_schema(cap.spec, tx=True, before=self.cfg.before_image)
            for tid, cap in self.captures.items()
        }

    def read(self, after: int, max_bytes: int, sealed: dict[str, int], env: Envelope) -> Page:
        reader = self._batch_reader()
        refs = reader.page(after, self.cfg.page_rows, max_bytes)
        if not refs:
            return Page([], after, 0)
        by_tid: dict[int, list[Ref]] = defaultdict(list)
        for ref in refs:
            by_tid[ref[2]].append(ref)
        batches: list[ChangeBatch] = []
        ignored = 0
        for tid, mine in by_tid.items():
            cap = self._capture(tid)
            if cap is None or cap.table not in self.cfg.tables:
                ignored += len(mine)
                continue
            rows = self._rows(reader, cap, mine, sealed.get(cap.table, -1))
            if rows:
                batches.append(ChangeBatch.of(self.schemas[cap.tid], rows, env))
        return Page(batches, refs[-1][0], len(refs), ignored)

    def _capture(self, tid: int) -> PgCapture | None:
        if tid not in self.captures:
            self._load_captures()
        return self.captures.get(tid)

    def _rows(
        self, reader: Batches, cap: PgCapture, refs: list[Ref], sealed: int
    ) -> list[tuple[object, ...]]:
        """The changes of one capture in this page with their positions; those at or
        below the table's sealed position are already in a sealed file."""
        position = {seq: pos for pos, seq, _ in refs if pos > sealed}
        rows = reader.fetch(cap, self.cfg.before_image) if position else []
        return [(position[r[0]], *r[1:]) for r in rows if r[0] in position]

    def snapshot_step(self, now_ms: int) -> int:
        """Copy one page of a pending snapshot; 0 when none is due."""
        log = self._changelog()
        for job in pg_snapshot.jobs(log):
            if job.done_ms is not None or job.table not in self.cfg.tables:
                continue
            cap = self._capture(job.tid)
            if cap is None:
                continue
            copied = pg_snapshot.step(log, cap, self.cfg.page_rows, now_ms)
            if copied:
                return copied
        return 0

    def prune(self, durable: int) -> int:
        return self._batch_reader().prune(durable)
