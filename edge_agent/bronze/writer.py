"""Memory-bounded Parquet writers: one open file per (source, table).

Buffers are counted in bytes: a pending batch's Arrow bytes plus the objects
pyarrow keeps for it (see ``buffered_memory``). Pending batches of all open files,
plus what their Parquet writers hold between row groups, together stay within
``buffer.max_memory``: before a batch is added, the largest buffers are written
out as row groups to their temp files on disk. A file is
sealed (closed, fsynced, hashed) when it reaches ``max_file_bytes``, its age
reaches ``max_file_age``, or its schema or date partition changes; the caller
then publishes it through the spool.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from edge_agent.bronze.parquet_file import open_writer
from edge_agent.bronze.schema import BatchSchema
from edge_agent.config import BufferConfig
from edge_agent.fsutil import TMP_SUFFIX, fsync_file, sha256_file

_counter = itertools.count()


@dataclass
class OpenFile:
    source: str
    table: str
    partition: str
    schema: BatchSchema
    tmp_path: Path
    opened_at: float
    first_pos: int = -1
    last_pos: int = -1
    rows: int = 0
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_bytes: int = 0  # their Arrow bytes: what sizes a row group
    pending_memory: int = 0  # what they hold in memory: what the budget counts
    held_bytes: int = 0  # Arrow memory the ParquetWriter keeps until its next row group
    writer: Any = None  # pyarrow's Parquet writer (bronze/parquet_file.py), once written
    sink: pa.NativeFile | None = None  # unbuffered: tell() is the bytes on disk
    poisoned: bool = False  # a write failed: the file must be dropped and its rows re-read


@dataclass(frozen=True)
class SealedFile:
    """A complete, fsynced Parquet temp file, ready to be published."""

    source: str
    table: str
    partition: str
    fingerprint: str
    tmp_path: Path
    first_pos: int
    last_pos: int
    rows: int
    bytes: int
    sha256: str


# What a pending batch holds beyond its Arrow bytes (measured with pyarrow 26 on
# x86_64): per column its C++ objects on the C heap (ArrayData, Buffers, shared_ptr
# blocks: ~450-610 bytes) and its buffers' rounding to 64 bytes in the pool; per batch
# the RecordBatch itself. ~8 KiB for a 14-column bronze batch: with 20 tables a page
# splits into ~250-row batches of ~37 KiB, and 16 MiB of them held 3.3 MiB more than
# their bytes (tests/bronze/test_writer.py measures it).
BATCH_OVERHEAD = 256
COLUMN_OVERHEAD = 640
# An open file's Parquet writer keeps its column writers, encoders and statistics on
# the C heap until the file is sealed (~42 KiB for 14 columns), besides the pool
# memory its row group holds (measured across each write).
WRITER_OVERHEAD_PER_COLUMN = 4 * 1024


def buffered_memory(batch: pa.RecordBatch) -> int:
    """What a batch held in a writer's buffer counts in ``buffer.max_memory``."""
    return int(batch.nbytes) + BATCH_OVERHEAD + COLUMN_OVERHEAD * int(batch.num_columns)


# Envelope columns whose values are (nearly) all different.
UNIQUE_ENVELOPE = frozenset({"_pos", "_ts_ms", "_lsn"})


def dictionary_columns(schema: BatchSchema) -> list[str]:
    """Every column but those with a value per change (positions, change times, a
    one-column key). For those a dictionary is a second copy of every value: files
    ~2.5x larger per such column than plain under zstd, and its pages stay in memory
    until the row group closes, which pyarrow does only when the next one starts.
    Low-cardinality columns (states, rounded readings) stay ~2x smaller with one."""
    unique = set(UNIQUE_ENVELOPE)
    if len(schema.shape.key) == 1:
        unique.add(schema.shape.key[0])
    return [f.name for f in schema.schema if f.name not in unique]


class BronzeWriter:
    def __init__(self, tmp_dir: Path, cfg: BufferConfig) -> None:
        self.tmp_dir = tmp_dir
        self.cfg = cfg
        self.open: dict[tuple[str, str], OpenFile] = {}
        self.buffered_bytes = 0  # pending batches (buffered_memory)
        self.held_bytes = 0  # kept by the open files' Parquet writers
        self.peak_buffered_bytes = 0
        self.peak_memory_bytes = 0  # buffered + held

    # -- adding -----------------------------------------------------------
    def add(
        self, source: str, schema: BatchSchema, partition: str, batch: pa.RecordBatch, now: float
    ) -> list[SealedFile]:
        """Buffer one batch (positions ascending); returns files sealed on the way."""
        if batch.num_rows == 0:
            return []
        sealed: list[SealedFile] = []
        key = (source, schema.shape.name)
        current = self.open.get(key)
        if current is not None and (
            current.partition != partition or current.schema.fingerprint != schema.fingerprint
        ):
            sealed.append(self.seal(key))
            current = None
        if current is None:
            current = self._new_file(source, schema, partition, now)
            self.open[key] = current
        self._make_room(buffered_memory(batch))
        self._append(current, batch)
        if current.pending_bytes >= self.cfg.row_group_bytes:
            self._write_row_group(current)
        if self.disk_bytes(current) >= self.cfg.max_file_bytes:
            sealed.append(self.seal(key))
        return sealed

    def _new_file(self, source: str, schema: BatchSchema, partition: str, now: float) -> OpenFile:
        name = f"{os.getpid()}-{next(_counter)}.parquet{TMP_SUFFIX}"
        return OpenFile(
            source, schema.shape.name, partition, schema, self.tmp_dir / name, opened_at=now
        )

    def _append(self, f: OpenFile, batch: pa.RecordBatch) -> None:
        positions = batch.column(1)
        if f.first_pos < 0:
            f.first_pos = positions[0].as_py()
        f.last_pos = positions[-1].as_py()
        f.rows += batch.num_rows
        memory = buffered_memory(batch)
        if memory > self.cfg.max_memory:
            # Larger than the whole budget on its own: straight to disk, never buffered.
            self._write_row_group(f)
            self._write(f, pa.Table.from_batches([batch]))
            return
        f.pending.append(batch)
        f.pending_bytes += batch.nbytes
        f.pending_memory += memory
        self.buffered_bytes += memory
        self.peak_buffered_bytes = max(self.peak_buffered_bytes, self.buffered_bytes)
        self.peak_memory_bytes = max(self.peak_memory_bytes, self.memory_bytes())

    def memory_bytes(self) -> int:
        """What the budget counts: pending batches and the writers' held row groups."""
        return self.buffered_bytes + self.held_bytes

    def _make_room(self, incoming: int) -> None:
        """Write out the largest buffers until ``incoming`` fits the memory budget."""
        needed = min(incoming, self.cfg.max_memory)
        while self.memory_bytes() + needed > self.cfg.max_memory:
            candidates = [f for f in self.open.values() if f.pending_memory and not f.poisoned]
            if not candidates:
                return
            self._write_row_group(max(candidates, key=lambda f: f.pending_memory))

    def _write_row_group(self, f: OpenFile) -> None:
        if not f.pending:
            return
        self._write(f, pa.Table.from_batches(f.pending))
        self.buffered_bytes -= f.pending_memory  # only once the rows are in the file
        f.pending = []
        f.pending_bytes = f.pending_memory = 0

    def _write(self, f: OpenFile, table: pa.Table) -> None:
        try:
            before = pa.total_allocated_bytes()
            held = f.held_bytes
            if f.writer is None:
                f.sink = pa.OSFile(str(f.tmp_path), mode="w")
                f.writer = open_writer(
                    f.sink,
                    f.schema.schema,
                    compression=self.cfg.compression,
                    compression_level=self._level(),
                    use_dictionary=dictionary_columns(f.schema),
                )
                held += WRITER_OVERHEAD_PER_COLUMN * len(f.schema.schema)
            f.writer.write_table(table, row_group_size=max(1, table.num_rows))
            # The writer closes its previous row group and keeps this one open (its
            # encoders' pages) until the next write or close: the pool's growth
            # across the call (and the writer's opening) is that change.
            self._hold(f, held + pa.total_allocated_bytes() - before)
        except BaseException:
            # The file may hold part of a row group: it can never be sealed. Its owner
            # drops it and reads its rows again (possibly another source's file, when
            # the write made room for someone else's batch).
            f.poisoned = True
            raise

    def _hold(self, f: OpenFile, held: int) -> None:
        held = max(0, held)
        self.held_bytes += held - f.held_bytes
        f.held_bytes = held
        self.peak_memory_bytes = max(self.peak_memory_bytes, self.memory_bytes())

    def _level(self) -> int | None:
        return self.cfg.compression_level if self.cfg.compression in ("zstd", "gzip") else None

    # -- sealing ----------------------------------------------------------
    def disk_bytes(self, f: OpenFile) -> int:
        return f.sink.tell() if f.sink is not None and not f.sink.closed else 0

    def due(self, now: float) -> list[tuple[str, str]]:
        """Open files whose age reached max_file_age."""
        return [k for k, f in self.open.items() if now - f.opened_at >= self.cfg.max_file_age]

    def seal(self, key: tuple[str, str]) -> SealedFile:
        f = self.open.pop(key)
        try:
            if f.poisoned:
                raise OSError(f"a write to the open file of {f.table!r} failed earlier")
            self._write_row_group(f)
            if f.writer is None or f.sink is None:
                raise OSError(f"the open file of {f.table!r} was never written")
            f.writer.close()
            self._hold(f, 0)
            f.sink.close()
            fsync_file(f.tmp_path)
            size, digest = sha256_file(f.tmp_path)
        except BaseException:
            self._discard(f)
            raise
        return SealedFile(
            f.source,
            f.table,
            f.partition,
            f.schema.fingerprint,
            f.tmp_path,
            f.first_pos,
            f.last_pos,
            f.rows,
            size,
            digest,
        )

    def poisoned(self) -> list[tuple[str, str]]:
        return [k for k, f in self.open.items() if f.poisoned]

    def seal_all(self, source: str | None = None) -> list[SealedFile]:
        keys = [k for k in self.open if source is None or k[0] == source]
        return [self.seal(k) for k in keys]

    def abort(self, source: str | None = None) -> None:
        """Drop open files (their changes were never recorded and will be read again)."""
        for key in [k for k in self.open if source is None or k[0] == source]:
            self.abort_file(key)

    def abort_file(self, key: tuple[str, str]) -> None:
        self._discard(self.open.pop(key))

    def _discard(self, f: OpenFile) -> None:
        self.buffered_bytes -= f.pending_memory
        f.pending = []
        f.pending_bytes = f.pending_memory = 0
        self._hold(f, 0)
        for closable in (f.writer, f.sink):
            if closable is not None:
                with contextlib.suppress(OSError, pa.ArrowException):
                    closable.close()
        f.tmp_path.unlink(missing_ok=True)

    def open_disk_bytes(self) -> int:
        return sum(self.disk_bytes(f) + f.pending_bytes for f in self.open.values())
