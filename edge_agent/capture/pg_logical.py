"""Log-based capture of one PostgreSQL source: peek → write and seal → record → advance.

The loop (ARCHITECTURE invariant 1). Changes are peeked from the slot, never
consumed; the runtime writes and seals them; the state database records the
files and, with them, a *checkpoint*: a transaction boundary (end LSN, last
position) whose changes are all durable. Only then is the slot advanced to that
LSN. After a kill anywhere, the next start reads the checkpoint, moves the slot
up to it if the kill came before the advance, and peeks from there with the
checkpoint's position: the same changes get the same positions, and those
already in sealed files are skipped by position (capture/pg_stream.py).

Gaps are said, never glossed over: a slot that is missing while a checkpoint
exists (dropped), or whose confirmed position is beyond the checkpoint
(recreated, or moved by someone else), is a gap in the stream. The agent
says so (log, ``status``), takes a new slot position, and snapshots every
table again, each starting over with a ``t`` marker.
"""

from __future__ import annotations

from dataclasses import replace

import psycopg

from edge_agent.bronze.schema import Envelope
from edge_agent.capture.pages import ChangeBatch
from edge_agent.capture.pg_logical_snapshot import SnapshotReader
from edge_agent.capture.pg_rows import KeyBook
from edge_agent.capture.pg_slot import Slot, SlotState, table_names
from edge_agent.capture.pg_stream import Stream, StreamPage
from edge_agent.capture.pg_values import SESSION
from edge_agent.capture.slot_checkpoint import Checkpoint
from edge_agent.config_sources import SourceConfig, dsn_parts
from edge_agent.errors import SourceError
from edge_agent.sources.postgres import Con, connect, execute, map_error

REREAD_SEAL = 50_000  # messages decoded again since the slot moved: then seal, to move it
_IDENTITY = """
SELECT n, c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
                                   AND i.indisprimary)
FROM unnest(%s::text[]) n JOIN pg_class c ON c.oid = to_regclass(n)"""


class PgLogicalCapture:
    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.table_errors: dict[str, str] = {}
        self.actions: dict[str, str] = {}
        self.gap: str | None = None  # why the stream had a gap, when it had one
        self.checkpoint: Checkpoint | None = None
        self.stream: Stream | None = None
        self.snapshot: SnapshotReader | None = None
        self._catalog: Con | None = None
        self._peek: Con | None = None
        self._slot: Slot | None = None
        self._exported: str | None = None
        self.keys = KeyBook()

    @property
    def name(self) -> str:
        return self.cfg.name

    # -- connections ----------------------------------------------------------
    def _connect(self) -> Con:
        con = connect(self.cfg.dsn, self.cfg.password or None, self.cfg.connect_timeout)
        try:
            for statement in SESSION:
                con.execute(statement)
        except psycopg.Error as exc:
            con.close()
            raise map_error(exc, self.cfg.dsn) from exc
        return con

    @property
    def slot(self) -> Slot:
        """The slot, on a live catalog connection (connected again after a server restart:
        a lost connection surfaced as a TransientError and the stream was rewound)."""
        if self._slot is None:
            raise SourceError(f"source {self.name!r} is not open")
        if self._catalog is None or self._catalog.closed or self._catalog.broken:
            if self._catalog is not None:
                self._catalog.close()
            self._catalog = self._connect()
            self._slot.con = self._catalog
        return self._slot

    def close(self) -> None:
        if self.snapshot is not None:
            self.snapshot.close()
        self.snapshot = None
        if self.stream is not None:
            self.stream.close()
        self.stream = None
        for con in (self._peek, self._catalog):
            if con is not None:
                con.close()
        self._peek = self._catalog = None
        if self._slot is not None:
            self._slot.release()

    # -- opening --------------------------------------------------------------
    def open(self, saved: Checkpoint | None, durable: int) -> Checkpoint:
        """Check the server, the publication and the slot; returns the checkpoint to
        store before reading (it may plan a snapshot)."""
        self.close()
        self._catalog = self._connect()
        self._slot = Slot(self._catalog, self.cfg.dsn, self.cfg.slot, self.cfg.publication)
        self.slot.check_server()
        present = self._present_tables()
        added = self.slot.ensure_publication(table_names(present))
        if added:
            self.actions.update({t: "added to the publication" for t in added})
        state = self.slot.state()
        if state is not None:
            self.slot.check_owned(state, dsn_parts(self.cfg.dsn).get("dbname", ""))
        cp = self._resume(saved, state, durable, present)
        cp = self._new_tables(cp, present)
        if not cp.snapshot:
            self.slot.release()  # no snapshot to import: the exporter must not linger
        self.keys = KeyBook({int(k): v for k, v in cp.keys.items()})
        self.checkpoint = cp
        return cp

    def _present_tables(self) -> list[str]:
        """The configured tables that exist and can be published: a table without a
        replica identity (no primary key, REPLICA IDENTITY DEFAULT or NOTHING) in a
        publication makes PostgreSQL refuse the application's UPDATE and DELETE on it."""
        found = {
            str(r[0]): (str(r[1]), bool(r[2]))
            for r in execute(
                self._catalog_con(),
                _IDENTITY,
                (list(self.cfg.tables),),
            )
        }
        self.table_errors = {}
        for t in self.cfg.tables:
            if t not in found:
                self.table_errors[t] = (
                    f"postgres table {t!r}: no such table: check sources.tables (bare name = "
                    "public.); a table created later is captured from the next start or reload"
                )
            elif found[t][0] == "n" or (found[t][0] == "d" and not found[t][1]):
                self.table_errors[t] = (
                    f"postgres table {t!r}: no replica identity (no primary key): published, "
                    "the application's UPDATE and DELETE on it would fail; add a primary key "
                    f"or run ALTER TABLE {t} REPLICA IDENTITY FULL"
                )
        return [t for t in self.cfg.tables if t in found and t not in self.table_errors]

    def _catalog_con(self) -> Con:
        return self.slot.con

    def _resume(
        self, saved: Checkpoint | None, state: SlotState | None, durable: int, present: list[str]
    ) -> Checkpoint:
        """``durable``: at least every sealed position (a snapshot started over numbers
        its rows above them)."""
        base = max(durable, saved.pos if saved else 0)
        if state is None:
            point, self._exported = self.slot.create(
                self.cfg.dsn, self.cfg.password or None, self.cfg.connect_timeout
            )
            if saved is not None:
                self._say_gap(f"slot {self.cfg.slot!r} was missing (dropped?)", "created it again")
            first = self.cfg.snapshot == "initial" or saved is not None
            return Checkpoint(point, base, present if first else [], saved is not None, present)
        if saved is None:
            # A slot from before this state database: where its stream stands against
            # the lake is unknown, so every table starts over from a snapshot.
            self._say_gap(f"slot {self.cfg.slot!r} exists but this agent has no record of it", "")
            return Checkpoint(state.confirmed, base, present, True, present)
        if state.confirmed > saved.lsn:
            self._say_gap(
                f"slot {self.cfg.slot!r} is at {state.confirmed:X}, beyond this agent's "
                f"checkpoint {saved.lsn:X} (recreated or advanced by someone else)",
                "",
            )
            return replace(
                saved, lsn=state.confirmed, pos=base, snapshot=present, restart=True, tables=present
            )
        if state.confirmed < saved.lsn:
            self.slot.advance(saved.lsn)  # the kill came between the checkpoint and the advance
        if saved.snapshot:  # interrupted: the exported snapshot is gone; start those over
            return replace(saved, pos=base, restart=True)
        return saved

    def _say_gap(self, what: str, done: str) -> None:
        self.gap = (
            f"{what}: changes may be missing from the stream; every table is snapshotted "
            "again (each starts over with a t marker)" + (f"; {done}" if done else "")
        )

    def _new_tables(self, cp: Checkpoint, present: list[str]) -> Checkpoint:
        """A table that is now captured and was not (new in the config, created since,
        or back after being removed) gets a snapshot that starts it over."""
        kept = [t for t in cp.tables if t in present]
        new = [t for t in present if t not in kept and t not in cp.snapshot]
        if not new:
            return replace(cp, tables=kept) if kept != cp.tables else cp
        self.actions.update({t: "snapshot (newly captured)" for t in new})
        restart = cp.restart or bool(kept)  # not the first snapshot: "t" markers first
        return replace(cp, snapshot=cp.snapshot + new, tables=kept + new, restart=restart)

    # -- reading --------------------------------------------------------------
    def snapshot_page(self, env: Envelope) -> list[ChangeBatch]:
        """The next page of a planned snapshot; [] and ``snapshot_done`` once finished."""
        cp = self._current()
        if self.snapshot is None:
            self.snapshot = SnapshotReader(
                self.cfg, self._connect(), cp.snapshot, cp.pos, cp.lsn, self._exported, cp.restart
            )
            self.slot.release()  # the exported snapshot is imported (or was not used)
            self._exported = None
        batches = self.snapshot.page(env)
        self.table_errors.update(self.snapshot.table_errors)
        return batches

    @property
    def snapshot_pos(self) -> int:
        return self.snapshot.pos if self.snapshot is not None else self._current().pos

    @property
    def snapshot_done(self) -> bool:
        return self.snapshot is not None and self.snapshot.done

    def finish_snapshot(self, pos: int) -> Checkpoint:
        """The snapshot is sealed and recorded up to ``pos``: the stream starts there."""
        if self.snapshot is not None:
            self.snapshot.close()
        self.snapshot = None
        cp = replace(self._current(), pos=pos, snapshot=[], restart=False)
        self.checkpoint = cp
        return cp

    def read(self, max_bytes: int, sealed: dict[str, int], env: Envelope) -> StreamPage:
        return self._stream().read(max_bytes, sealed, env)

    def _stream(self) -> Stream:
        if self.stream is None:
            cp = self._current()
            if self._peek is None or self._peek.closed or self._peek.broken:
                self._peek = self._connect()
                self._peek.autocommit = False
            self.stream = Stream(
                self.cfg, self.slot, self._peek, self._catalog_con(), (cp.lsn, cp.pos), self.keys
            )
        return self.stream

    def _current(self) -> Checkpoint:
        if self.checkpoint is None:
            raise SourceError(f"source {self.name!r} is not open")
        return self.checkpoint

    def rewind(self, durable: int) -> None:
        """Forget what was read: the stream restarts at the checkpoint; an unfinished
        snapshot starts its tables over."""
        if self.stream is not None:
            self.stream.close()
        self.stream = None
        if self.snapshot is not None:
            self.snapshot.close()
            self.snapshot = None
            cp = self._current()
            self.checkpoint = replace(cp, pos=max(cp.pos, durable), restart=True)

    def busy(self) -> bool:
        """Inside a transaction or a snapshot: not at a boundary where a snapshot may start."""
        running = self.checkpoint is not None and bool(self.checkpoint.snapshot)
        return running or (self.stream is not None and self.stream.in_transaction)

    def plan_snapshot(self, tables: list[str], durable: int) -> Checkpoint | None:
        """A snapshot of ``tables`` at the checkpoint, when everything read is durable
        and confirmed (else None: later). The stream restarts after it."""
        cp = self._current()
        if self.stream is not None and (self.stream.boundaries or self.stream.pos != cp.pos):
            return None
        if durable < cp.pos:
            return None
        if self.stream is not None:
            self.stream.close()
        self.stream = None
        self.checkpoint = replace(cp, pos=durable, snapshot=list(tables), restart=True)
        return self.checkpoint

    # -- confirming -----------------------------------------------------------
    def boundary(self, durable: int) -> Checkpoint | None:
        """The newest transaction boundary whose changes are all durable, as the next
        checkpoint; None when it would not move."""
        stream, cp = self.stream, self._current()
        if stream is None or cp.snapshot:
            return None
        found: tuple[int, int] | None = None
        while stream.boundaries and stream.boundaries[0][1] <= durable:
            found = stream.boundaries.popleft()
        if found is None or found[0] <= cp.lsn:
            return None
        return replace(cp, lsn=found[0], pos=found[1])

    def confirm(self, cp: Checkpoint) -> None:
        """After ``cp`` is stored: let the server recycle the WAL before it."""
        self.checkpoint = cp
        self.slot.advance(cp.lsn)
        if self.stream is not None:
            self.stream.peek.confirmed = cp.lsn
            self.stream.reread = 0

    def keys_learned(self) -> Checkpoint | None:
        """The checkpoint with keys learned since it was stored (None: nothing new). Stored
        before any row of such a relation is written."""
        if not self.keys.dirty or self.checkpoint is None:
            return None
        self.keys.dirty = False
        keys = {str(k): v for k, v in self.keys.keys.items()}
        self.checkpoint = replace(self.checkpoint, keys=keys)
        return self.checkpoint

    def heartbeat(self) -> None:
        self.slot.heartbeat()

    def lag(self) -> SlotState | None:
        return self.slot.state()
