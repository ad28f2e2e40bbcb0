"""One source's path from change log to sealed, recorded files.

Position rules (ARCHITECTURE invariant 1):
- ``read_pos``: the last change-log position read into the writer (memory).
- ``sealed[table]``: the last position of the table's last sealed file (state DB).
- ``durable``: every change at or below it is in a sealed, recorded file. It is
  ``min(read_pos, first position of each open file - 1)`` and is what the
  change log is pruned to and what capture restarts from after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_agent.bronze.layout import FileKey
from edge_agent.bronze.schema import FORMAT_VERSION, Envelope, to_batch
from edge_agent.bronze.writer import BronzeWriter, SealedFile
from edge_agent.capture.sqlite_trigger import Page, TriggerCapture, split_by_day
from edge_agent.clock import UNSYNCED_PARTITION, Clock, partition_for
from edge_agent.spool.outbox import Spool
from edge_agent.spool.state import FileRecord, StateDB


@dataclass
class PageResult:
    rows: int = 0
    changes: int = 0
    sealed: int = 0
    caught_up: bool = True


class SourcePipeline:
    def __init__(self, capture: TriggerCapture, writer: BronzeWriter, spool: Spool,
                 state: StateDB, clock: Clock, device: str, min_valid_ms: int) -> None:
        self.capture = capture
        self.writer = writer
        self.spool = spool
        self.state = state
        self.clock = clock
        self.device = device
        self.min_valid_ms = min_valid_ms
        self.durable, _ = state.source_position(capture.name)
        self.read_pos = self.durable
        self.sealed = state.table_positions(capture.name)
        self.pruned_to = -1

    @property
    def name(self) -> str:
        return self.capture.name

    def rewind(self) -> None:
        """Forget unsealed work after a failure: it is read again from the log."""
        self.writer.abort(self.name)
        self.read_pos = self.durable

    # -- capture ----------------------------------------------------------
    def capture_page(self, max_bytes: int) -> PageResult:
        page = self.capture.read(self.read_pos, max_bytes, self.sealed)
        result = PageResult(rows=page.rows_read, caught_up=page.rows_read == 0)
        if page.rows_read:
            result.sealed = self._add(page)
            result.changes = sum(len(g.rows) for g in page.groups)
            self.read_pos = page.last_seq
        return result

    def _add(self, page: Page) -> int:
        captured_ms = self.clock.wall_ms()
        env = Envelope(self.device, self.name, captured_ms)
        sealed = 0
        for group in page.groups:
            for start, end in split_by_day(group.rows, self.min_valid_ms):
                rows = group.rows[start:end]
                ts = rows[0][3]
                partition = partition_for(ts if isinstance(ts, int) else 0, captured_ms,
                                          self.min_valid_ms)
                batch = to_batch(group.schema, rows, env)
                for f in self.writer.add(self.name, group.schema, partition, batch,
                                         self.clock.monotonic()):
                    self.commit(f)
                    sealed += 1
        return sealed

    # -- sealing ----------------------------------------------------------
    def seal_due(self, now: float) -> int:
        keys = [k for k in self.writer.due(now) if k[0] == self.name]
        for key in keys:
            self.commit(self.writer.seal(key))
        return len(keys)

    def seal_all(self) -> int:
        files = self.writer.seal_all(self.name)
        for f in files:
            self.commit(f)
        return len(files)

    def durable_now(self) -> int:
        return min([self.read_pos] + [p - 1 for p in self.writer.open_first_positions(self.name)])

    def commit(self, sealed: SealedFile) -> FileRecord:
        """Publish a sealed file into the spool and record it (the durability point)."""
        _, ordinal = self.state.source_position(self.name)
        key = FileKey(self.device, self.name, sealed.table, sealed.partition,
                      sealed.first_pos, sealed.last_pos)
        now_ms = self.clock.wall_ms()
        manifest = self._manifest(key, sealed, ordinal, now_ms)
        rec = FileRecord(key.file_id, self.name, sealed.table, ordinal, sealed.first_pos,
                         sealed.last_pos, sealed.rows, sealed.bytes, sealed.sha256,
                         key.relpath, key.manifest_relpath, now_ms)
        durable = max(self.durable, self.durable_now())
        try:
            self.spool.publish(sealed, key, manifest)
            self.state.record_sealed(rec, durable)
        except BaseException:
            # Not recorded, so not sealed: drop the bytes; the changes are read again.
            self.spool.discard(sealed, key)
            raise
        self.durable = durable
        self.sealed[sealed.table] = sealed.last_pos
        return rec

    def _manifest(self, key: FileKey, sealed: SealedFile, ordinal: int,
                  now_ms: int) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "id": key.file_id,
            "ordinal": ordinal,
            "device": self.device,
            "source": self.name,
            "table": sealed.table,
            "partition": {"date": sealed.partition},
            "rows": sealed.rows,
            "first_pos": sealed.first_pos,
            "last_pos": sealed.last_pos,
            "schema_fingerprint": sealed.fingerprint,
            "sha256": sealed.sha256,
            "bytes": sealed.bytes,
            "created_ms": now_ms,
            "clock": {
                "synced": now_ms >= self.min_valid_ms,
                "partition_basis": "unsynced" if sealed.partition == UNSYNCED_PARTITION
                else "change_time_or_capture_time",
            },
        }

    # -- after sealing ----------------------------------------------------
    def advance(self) -> int:
        """Persist the durable position when it moved, then prune the change log."""
        durable = self.durable_now()
        if durable > self.durable:
            self.state.set_durable(self.name, durable)
            self.durable = durable
        pruned = 0
        if self.durable > self.pruned_to:
            pruned = self.capture.prune(self.durable)
            self.pruned_to = self.durable
        return pruned
