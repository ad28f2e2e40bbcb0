"""The bronze writer's memory accounting and rotation rules (invariant 4)."""

from __future__ import annotations

import ctypes
import itertools
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.bronze.schema import Envelope, batch_schema, to_batch
from edge_agent.bronze.writer import BronzeWriter, buffered_memory
from edge_agent.config import BufferConfig
from edge_agent.sources.sqlite import Column, TableShape

SHAPES = [TableShape(f"t{i}", (Column("id", "INTEGER", 1), Column("body", "TEXT", 0)))
          for i in range(5)]
SCHEMAS = [batch_schema(s.spec()) for s in SHAPES]
ENV = Envelope("gw", "src", 1_764_000_000_000)


def rows(start: int, count: int, width: int) -> list[tuple[object, ...]]:
    """Rows with incompressible text, so file sizes follow the row count."""
    return [(start + i, 1, "c", ENV.captured_ms, start + i, os.urandom(width // 2 + 1).hex())
            for i in range(count)]


@settings(max_examples=60, deadline=None)
@given(
    max_memory=st.integers(64 * 1024, 512 * 1024),
    batches=st.lists(st.tuples(st.integers(0, 4), st.integers(1, 400), st.integers(0, 2000)),
                     min_size=1, max_size=40),
)
def test_buffered_bytes_never_exceed_max_memory(tmp_path_factory, max_memory: int,
                                                batches: list[tuple[int, int, int]]) -> None:
    tmp = tmp_path_factory.mktemp("w")
    cfg = BufferConfig(max_memory=max_memory, max_file_bytes=4 * 1024**2,
                       row_group_bytes=max_memory, spool_quota=1024**3)
    writer = BronzeWriter(tmp, cfg)
    pos = 1
    total_rows = 0
    sealed_rows = 0
    for table, count, width in batches:
        batch = to_batch(SCHEMAS[table], rows(pos, count, width), ENV)
        sealed_rows += sum(f.rows for f in writer.add("src", SCHEMAS[table], "2025-11-24",
                                                      batch, 0.0))
        pos += count
        total_rows += count
        assert writer.buffered_bytes <= max_memory
        assert writer.buffered_bytes == sum(f.pending_memory for f in writer.open.values())
        assert writer.held_bytes == sum(f.held_bytes for f in writer.open.values())
        # What the open writers hold counts too: over the budget only when it alone
        # left no room, and then every older buffer was written out first.
        assert (writer.memory_bytes() <= max_memory
                or writer.buffered_bytes <= buffered_memory(batch))
    assert writer.peak_buffered_bytes <= max_memory
    sealed = writer.seal_all()
    assert writer.buffered_bytes == 0
    assert writer.held_bytes == 0
    assert sealed_rows + sum(f.rows for f in sealed) == total_rows
    assert sum(pq.read_metadata(f.tmp_path).num_rows for f in sealed) == sum(
        f.rows for f in sealed)


def _writer(tmp: Path, **kw: int | float) -> BronzeWriter:
    base = {"max_memory": 1024**2, "max_file_bytes": 8 * 1024**2, "row_group_bytes": 1024**2,
            "max_file_age": 30.0}
    base.update(kw)
    return BronzeWriter(tmp, BufferConfig(**base))  # type: ignore[arg-type]


def test_file_rotates_at_max_file_bytes(tmp_path: Path) -> None:
    writer = _writer(tmp_path, max_file_bytes=64 * 1024, row_group_bytes=16 * 1024)
    sealed = []
    for i in range(40):
        batch = to_batch(SCHEMAS[0], rows(i * 100 + 1, 100, 200), ENV)
        sealed += writer.add("src", SCHEMAS[0], "2025-11-24", batch, 0.0)
    assert len(sealed) >= 2
    assert all(f.bytes >= 64 * 1024 for f in sealed)
    firsts = [f.first_pos for f in sealed]
    assert firsts == sorted(firsts)
    assert all(a.last_pos + 1 == b.first_pos for a, b in itertools.pairwise(sealed))


def test_file_rotates_on_partition_and_schema_change(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.add("src", SCHEMAS[0], "2025-11-24", to_batch(SCHEMAS[0], rows(1, 5, 1), ENV), 0.0)
    sealed = writer.add("src", SCHEMAS[0], "2025-11-25",
                        to_batch(SCHEMAS[0], rows(6, 5, 1), ENV), 0.0)
    assert [(f.partition, f.first_pos, f.last_pos) for f in sealed] == [("2025-11-24", 1, 5)]
    wider = batch_schema(TableShape("t0", (*SHAPES[0].columns, Column("extra", "REAL", 0))).spec())
    batch = to_batch(wider, [(*r, 1.5) for r in rows(11, 2, 1)], ENV)
    sealed = writer.add("src", wider, "2025-11-25", batch, 0.0)
    assert [(f.partition, f.first_pos, f.last_pos) for f in sealed] == [("2025-11-25", 6, 10)]
    assert sealed[0].fingerprint != wider.fingerprint


def test_age_makes_files_due(tmp_path: Path) -> None:
    writer = _writer(tmp_path, max_file_age=30.0)
    writer.add("src", SCHEMAS[0], "d", to_batch(SCHEMAS[0], rows(1, 1, 1), ENV), 100.0)
    assert writer.due(129.0) == []
    assert writer.due(130.0) == [("src", "t0")]


def test_abort_removes_temp_files_and_releases_memory(tmp_path: Path) -> None:
    writer = _writer(tmp_path, row_group_bytes=1024)
    writer.add("src", SCHEMAS[0], "d", to_batch(SCHEMAS[0], rows(1, 50, 100), ENV), 0.0)
    writer.add("src", SCHEMAS[1], "d", to_batch(SCHEMAS[1], rows(51, 2, 1), ENV), 0.0)
    assert list(tmp_path.iterdir())
    writer.abort()
    assert writer.buffered_bytes == 0
    assert list(tmp_path.iterdir()) == []


def test_a_written_row_group_is_counted_until_its_file_is_sealed(tmp_path: Path) -> None:
    # pyarrow keeps a file's last row group open (its encoders' pages) until the next
    # row group or close: memory outside the buffers, counted in the budget.
    writer = _writer(tmp_path, max_memory=512 * 1024, row_group_bytes=32 * 1024)
    writer.add("src", SCHEMAS[0], "d", to_batch(SCHEMAS[0], rows(1, 200, 200), ENV), 0.0)
    assert writer.buffered_bytes == 0  # written out as a row group
    assert writer.held_bytes > 0
    assert writer.memory_bytes() == writer.held_bytes <= writer.peak_memory_bytes
    writer.add("src", SCHEMAS[1], "d", to_batch(SCHEMAS[1], rows(201, 200, 200), ENV), 0.0)
    writer.seal(("src", "t0"))
    assert writer.held_bytes == writer.open[("src", "t1")].held_bytes > 0
    writer.abort()
    assert writer.held_bytes == 0


def test_columns_with_a_value_per_change_are_not_dictionary_encoded(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.add("src", SCHEMAS[0], "d", to_batch(SCHEMAS[0], rows(1, 500, 20), ENV), 0.0)
    sealed = writer.seal(("src", "t0"))
    group = pq.ParquetFile(sealed.tmp_path).metadata.row_group(0)
    dictionary = {group.column(i).path_in_schema for i in range(group.num_columns)
                  if any("DICTIONARY" in e for e in group.column(i).encodings)}
    assert dictionary == {"_op", "_captured_ms", "_device", "_source", "_table", "body",
                          "_unfit"}  # not _pos, _ts_ms nor the key, id


def test_each_buffered_batch_counts_what_pyarrow_holds_for_it_beyond_its_bytes(
        tmp_path: Path) -> None:
    # Many tables split each page into small batches: 20 tables of the bench's shape
    # make ~250-row batches, each holding ~8 KiB of C++ objects (one per column and
    # buffer) on top of ~37 KiB of Arrow bytes. The budget counts them.
    writer = _writer(tmp_path, max_memory=64 * 1024**2, row_group_bytes=64 * 1024**2)
    batches = []
    for i in range(50):
        batch = to_batch(SCHEMAS[i % 5], rows(i * 10 + 1, 10, 8), ENV)
        writer.add("src", SCHEMAS[i % 5], "d", batch, 0.0)
        batches.append(batch)
    assert writer.buffered_bytes == sum(buffered_memory(b) for b in batches)
    assert writer.buffered_bytes > sum(b.nbytes for b in batches) + 50 * 1024
    writer.abort()
    assert writer.buffered_bytes == 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                 "usmblks", "fsmblks", "uordblks", "fordblks",
                                                 "keepcost")]


def _c_heap_in_use() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().uordblks)


def test_the_counted_memory_of_small_batches_covers_the_heap_and_pool_they_hold() -> None:
    # What a pending batch really holds: its buffers in pyarrow's pool (rounded up to
    # 64 bytes each) and its C++ objects on the C heap; measured over many batches.
    # Builds with an estimate below either would let 20+ open files overrun the budget.
    schema = SCHEMAS[0]
    wide = batch_schema(TableShape("w", tuple(Column(f"c{i}", "TEXT" if i % 2 else "INTEGER",
                                                      int(i == 0)) for i in range(12))).spec())
    samples = [(schema, [(i, 1, "c", ENV.captured_ms, i, "x" * 20) for i in range(8)]),
               (wide, [(i, 1, "c", ENV.captured_ms, *([i, "y" * 20] * 6)) for i in range(8)])]
    for bs, change_rows in samples:
        to_batch(bs, change_rows, ENV)  # first use allocates once
        heap, pool = _c_heap_in_use(), pa.total_allocated_bytes()
        kept = [to_batch(bs, change_rows, ENV) for _ in range(2000)]
        held = _c_heap_in_use() - heap + pa.total_allocated_bytes() - pool
        assert held <= sum(buffered_memory(b) for b in kept)


def test_open_files_count_what_their_parquet_writers_hold_besides_pool_memory(
        tmp_path: Path) -> None:
    # Each open file's Parquet writer keeps its column writers, encoders and statistics
    # on the C heap (~40 KiB for 14 columns) as long as the file is open: with 20 tables
    # that is 20 of them, counted with what the writer holds in pyarrow's pool.
    shape = TableShape("w", tuple(Column(f"c{i}", "TEXT" if i % 2 else "INTEGER", int(i == 0))
                                  for i in range(6)))
    schemas = [batch_schema(TableShape(f"w{i}", shape.columns).spec()) for i in range(20)]
    change_rows = [(i, 1, "c", ENV.captured_ms, *([i, "y" * 20] * 3)) for i in range(200)]
    batches = [to_batch(bs, change_rows, ENV) for bs in schemas]
    writer = _writer(tmp_path, max_memory=64 * 1024**2, row_group_bytes=1)
    writer.add("src", schemas[0], "d", batches[0], 0.0)  # first use allocates once
    heap, pool = _c_heap_in_use(), pa.total_allocated_bytes()
    for bs, batch in zip(schemas[1:], batches[1:], strict=True):
        writer.add("src", bs, "d", batch, 0.0)
    assert writer.buffered_bytes == 0  # every batch went straight into a row group
    held = _c_heap_in_use() - heap + pa.total_allocated_bytes() - pool
    assert held <= writer.held_bytes - writer.open[("src", "w0")].held_bytes
    writer.abort()
    assert writer.held_bytes == 0
