"""From captured changes to sealed, recorded files: the part every capture mode shares.

A pipeline owns some tables of one source. Its files are published into the
spool and recorded in the state database together with the mode's position
state, in one transaction: that commit is the durability point (invariant 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from edge_agent.bronze.layout import FileKey
from edge_agent.bronze.schema import Envelope
from edge_agent.bronze.writer import BronzeWriter, SealedFile
from edge_agent.capture.pages import CAPTURED_MS, TS_MS, ChangeBatch
from edge_agent.clock import DAY_MS, Clock, partition_for, split_by_day
from edge_agent.spool.manifest import build as build_manifest
from edge_agent.spool.outbox import Spool
from edge_agent.spool.state import FileRecord, StateDB


@dataclass
class PageResult:
    rows: int = 0
    changes: int = 0
    sealed: int = 0
    caught_up: bool = True
    # Nothing more can be read this turn (a logical slot must move first): the agent
    # ends the capture turn, advances, and comes back.
    turn_over: bool = False


@dataclass(frozen=True)
class Parts:
    """What every pipeline writes with."""

    writer: BronzeWriter
    spool: Spool
    state: StateDB
    clock: Clock
    device: str
    min_valid_ms: int


class Pipeline(Protocol):
    """What the agent drives, whatever the source and mode (registry: runtime/opening.py)."""

    @property
    def key(self) -> str: ...
    @property
    def source(self) -> str: ...

    def prepare(self, now_ms: int) -> dict[str, str]:
        """Follow schema changes before reading; returns what was done per table."""
        ...

    def capture_page(self, max_bytes: int) -> PageResult: ...
    def pause(self) -> None:
        """The agent stops reading pages here for now: let go of anything read ahead
        (it is outside the writer's memory budget)."""
        ...

    def idle_work(self, now_ms: int) -> int: ...
    def seal_due(self, now: float) -> int: ...
    def seal_all(self) -> int: ...
    def advance(self) -> int:
        """Persist what became durable and prune the source up to it."""
        ...

    def rewind(self) -> None:
        """Forget unsealed work after a failure: it is read again from the source."""
        ...

    def drop_poisoned(self) -> bool: ...
    def table_errors(self) -> dict[str, str]: ...
    def actions(self) -> dict[str, str]: ...
    def close(self) -> None: ...


def day_runs(change_ms: pa.Array, min_valid_ms: int) -> list[tuple[int, int]]:
    """``split_by_day`` of a batch's change times, without a per-row Python walk when
    the smallest and the largest fall on the same day (the common case)."""
    n = len(change_ms)
    if n and change_ms.null_count == 0 and change_ms.type == pa.int64():
        data = change_ms.buffers()[1]
        start = change_ms.offset * 8
        values = memoryview(data)[start : start + n * 8].cast("q")
        lo, hi = min(values), max(values)
        if (lo >= min_valid_ms and lo // DAY_MS == hi // DAY_MS) or hi < min_valid_ms:
            return [(0, n)]
    return split_by_day(change_ms.to_pylist(), min_valid_ms)


class FilePipeline:
    def __init__(self, source: str, parts: Parts) -> None:
        self.source = source
        self.parts = parts
        self.writer = parts.writer
        self.state = parts.state
        self.clock = parts.clock

    @property
    def name(self) -> str:
        return self.source

    def table_errors(self) -> dict[str, str]:
        """Tables that cannot be captured now, with why (the others go on)."""
        return {}

    def actions(self) -> dict[str, str]:
        """What opening did to the source's capture objects, by table."""
        return {}

    def owns(self, table: str) -> bool:
        raise NotImplementedError

    def _keys(self) -> list[tuple[str, str]]:
        return [k for k in self.writer.open if k[0] == self.source and self.owns(k[1])]

    def first_open_positions(self) -> list[int]:
        return [self.writer.open[k].first_pos for k in self._keys()]

    # -- writing ----------------------------------------------------------
    def envelope(self) -> Envelope:
        """The envelope constants of what is captured now."""
        return Envelope(self.parts.device, self.source, self.clock.wall_ms())

    def write_batch(self, changes: ChangeBatch) -> int:
        """A capture's batch into the writer, split by day; returns the number of files
        sealed on the way."""
        batch = changes.batch
        ts = batch.column(TS_MS)
        captured_ms = int(batch.column(CAPTURED_MS)[0].as_py()) if batch.num_rows else 0
        sealed = 0
        for start, end in day_runs(ts, self.parts.min_valid_ms):
            first = ts[start].as_py()
            partition = partition_for(
                first if isinstance(first, int) else 0, captured_ms, self.parts.min_valid_ms
            )
            part = batch.slice(start, end - start)
            files = self.writer.add(
                self.source, changes.schema, partition, part, self.clock.monotonic()
            )
            for i, f in enumerate(files):
                try:
                    self.commit(f)
                except BaseException:
                    for rest in files[i + 1 :]:  # sealed together, now never to be recorded
                        rest.tmp_path.unlink(missing_ok=True)
                    raise
                sealed += 1
        return sealed

    def seal_due(self, now: float) -> int:
        keys = [k for k in self.writer.due(now) if k in self._keys()]
        for key in keys:
            self.commit(self.writer.seal(key))
        return len(keys)

    def seal_all(self) -> int:
        keys = self._keys()
        for key in keys:
            self.commit(self.writer.seal(key))
        return len(keys)

    def abort_open(self) -> None:
        for key in self._keys():
            self.writer.abort_file(key)

    def rewind(self) -> None:
        raise NotImplementedError

    def pause(self) -> None:
        """Nothing is read ahead by default."""

    def drop_poisoned(self) -> bool:
        """A write to one of this pipeline's files failed (perhaps while making room for
        another source): drop the unsealed work and read it again."""
        if any(k in self._keys() for k in self.writer.poisoned()):
            self.rewind()
            return True
        return False

    # -- the durability point ---------------------------------------------
    def commit(self, sealed: SealedFile) -> FileRecord:
        """Publish a sealed file into the spool and record it with the position state."""
        _, ordinal = self.state.source_position(self.source)
        key = FileKey(
            self.parts.device,
            self.source,
            sealed.table,
            sealed.partition,
            sealed.first_pos,
            sealed.last_pos,
        )
        now_ms = self.clock.wall_ms()
        rec = FileRecord(
            key.file_id,
            self.source,
            sealed.table,
            ordinal,
            sealed.first_pos,
            sealed.last_pos,
            sealed.rows,
            sealed.bytes,
            sealed.sha256,
            key.relpath,
            key.manifest_relpath,
            now_ms,
        )
        dropped = self.state.drops_to_report(self.source, rec.id)
        manifest = build_manifest(
            rec, self.parts.device, sealed.fingerprint, self.parts.min_valid_ms, dropped
        )
        try:
            self.parts.spool.publish(sealed, key, manifest)
            self.record(rec)
        except BaseException:
            # Not recorded, so not sealed: drop the bytes; the changes are read again.
            self.parts.spool.discard(sealed, key)
            raise
        self.state.drops_reported(self.source, [d["ordinal"] for d in dropped], rec.id)
        return rec

    def record(self, rec: FileRecord) -> None:
        """Record the file and advance this mode's positions, in one transaction."""
        raise NotImplementedError


class StreamPipeline(FilePipeline):
    """A source read as one stream of positions (a change log, a replication slot).

    - ``read_pos``: the last position read into the writer (memory).
    - ``sealed[table]``: the last position of the table's last sealed file (state DB).
    - ``durable = min(read_pos, first position of each open file - 1)``: every change at
      or below it is in a sealed, recorded file (ARCHITECTURE invariant 1).
    """

    def __init__(self, source: str, parts: Parts) -> None:
        super().__init__(source, parts)
        self.durable, _ = parts.state.source_position(source)
        self.read_pos = self.durable
        self.sealed = parts.state.table_positions(source)

    def durable_now(self) -> int:
        return min([self.read_pos] + [p - 1 for p in self.first_open_positions()])

    def record(self, rec: FileRecord) -> None:
        durable = max(self.durable, self.durable_now())
        self.state.record_sealed(rec, durable)
        self.durable = durable
        self.sealed[rec.table] = rec.last_pos
