"""`lake silver` and `lake restore` at the edges: keys that did not fit their type,
retyped columns, `t` markers, restarted ordinals, watermarks under concurrency and
log clean-up, paths delta-rs reads as URLs. One run and many runs (any --batch-rows)
must give the same answer, or the same refusal. Real components: hand-made bronze
files and manifests, delta-rs, pyarrow (and Spark once)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from edge_agent.errors import EdgeAgentError
from edge_agent.lake import restore, silver
from edge_agent.lake.store import DirStore

ENV = [("_op", pa.string()), ("_pos", pa.int64()), ("_ts_ms", pa.int64()),
       ("_device", pa.string())]


def land(lake: Path, device: str, ordinal: int, rows: list[dict[str, Any]],
         columns: list[tuple[str, pa.DataType]], *, source: str = "src", table: str = "t",
         key: list[str] | None = None, dropped: list[int] | None = None) -> None:
    """One bronze file + manifest as the collector lands them."""
    schema = pa.schema(ENV + columns + [("_unfit", pa.string())])
    full = [{"_device": device, "_ts_ms": r["_pos"], "_unfit": None, **r} for r in rows]
    data = pa.Table.from_pylist(full, schema=schema)
    data = data.replace_schema_metadata({b"edge_agent.key": json.dumps(key or ["id"]).encode()})
    first, last = rows[0]["_pos"], rows[-1]["_pos"]
    stem = f"{device}-{first:020d}-{last:020d}"
    folder = lake / "bronze" / source / table / "date=2026-12-05"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, folder / f"{stem}.parquet")
    manifest: dict[str, Any] = {
        "device": device, "source": source, "table": table, "ordinal": ordinal,
        "rows": len(data), "bytes": (folder / f"{stem}.parquet").stat().st_size,
        "first_pos": first, "last_pos": last, "id": f"{device}/{source}/{table}/{first}-{last}"}
    if dropped:
        manifest["dropped"] = [{"ordinal": o} for o in dropped]
    (folder / f"{stem}.manifest.json").write_text(json.dumps(manifest))


def rows_of(to: Path, source: str = "src", table: str = "t") -> list[dict[str, Any]]:
    dt = DeltaTable(str(to / source / table))
    return sorted(dt.to_pyarrow_table().to_pylist(), key=repr)


def build(lake: Path, to: Path, batch_rows: int) -> list[dict[str, Any]]:
    silver.run(DirStore(lake), to, batch_rows=batch_rows, progress_out=io.StringIO())
    return rows_of(to)


def unfit(v: str) -> str:
    return json.dumps({"id": {"t": "text", "v": v}})


# --- 1. keys whose value is in `_unfit` (typed key cell NULL) ------------------------

def _unfit_key_lake(lake: Path) -> None:
    cols = [("id", pa.int64()), ("v", pa.string())]
    land(lake, "gw", 1, [{"_op": "c", "_pos": 1, "id": None, "v": "a", "_unfit": unfit("A")}],
         cols)
    land(lake, "gw", 2, [{"_op": "c", "_pos": 2, "id": None, "v": "b", "_unfit": unfit("B")}],
         cols)
    land(lake, "gw", 3, [{"_op": "u", "_pos": 3, "id": None, "v": "a2", "_unfit": unfit("A")}],
         cols)


def test_keys_that_did_not_fit_their_type_are_refused_whatever_the_batching(
        tmp_path: Path) -> None:
    """Two keys 'A' and 'B' (text in an INT PRIMARY KEY: typed cell NULL, value in
    `_unfit`) would fold into one NULL key in a merge: silver and a Parquet restore refuse
    it, naming the column and the way out; a SQLite restore keys by the exact value."""
    lake = tmp_path / "lake"
    _unfit_key_lake(lake)
    for n, batch_rows in enumerate((1_000_000, 1)):
        with pytest.raises(EdgeAgentError, match="key column 'id' has no typed value"):
            build(lake, tmp_path / f"s{n}", batch_rows=batch_rows)
    store = DirStore(lake)
    assert len(restore.replay(store, "src", None, 2**63 - 1)["t"].rows) == 2
    with pytest.raises(EdgeAgentError, match="--format sqlite"):
        restore.write_parquet(store, "src", None, 2**63 - 1, tmp_path / "out")


# --- 2. a widened column type (PostgreSQL: ALTER COLUMN ... TYPE bigint) ------------

def _widened_lake(lake: Path) -> None:
    land(lake, "gw", 1, [{"_op": "c", "_pos": 1, "id": 1, "v": 7}],
         [("id", pa.int64()), ("v", pa.int32())])
    land(lake, "gw", 2, [{"_op": "u", "_pos": 2, "id": 1, "v": 2**40}],
         [("id", pa.int64()), ("v", pa.int64())])


def test_a_value_that_does_not_fit_the_first_type_is_refused_whatever_the_batching(
        tmp_path: Path) -> None:
    """int32 then int64 with 2**40: a column keeps its first type, so one batch and one
    batch per file both refuse, naming the column (not: one run works, the next fails)."""
    lake = tmp_path / "lake"
    _widened_lake(lake)
    for n, batch_rows in enumerate((1_000_000, 1)):
        with pytest.raises(EdgeAgentError, match="column 'v' was int32 and is int64"):
            build(lake, tmp_path / f"s{n}", batch_rows=batch_rows)


# --- 3. a batch whose last change is a `t` marker -----------------------------------

def test_a_batch_ending_in_a_t_marker_adds_no_unchanged_column(tmp_path: Path) -> None:
    """Logical-mode bronze has `_unchanged`. When nothing follows the last `t` of a batch,
    net_changes returns the empty frame with `_unchanged` still in it and the MERGE (with
    merge_schema=True) adds `_unchanged` to the silver table for good; a one-batch run
    (or the Spark engine) has no such column."""
    lake = tmp_path / "lake"
    cols = [("_unchanged", pa.list_(pa.string())), ("id", pa.int64()), ("v", pa.string())]
    land(lake, "gw", 1, [{"_op": "c", "_pos": 1, "id": 1, "v": "a"}], cols)
    land(lake, "gw", 2, [{"_op": "t", "_pos": 2}], cols)
    land(lake, "gw", 3, [{"_op": "r", "_pos": 3, "id": 1, "v": "b"}], cols)
    one = build(lake, tmp_path / "one", batch_rows=1_000_000)
    many = build(lake, tmp_path / "many", batch_rows=1)
    assert "_unchanged" not in many[0], many
    assert many == one


# --- 5. restore: values "come back exactly" -----------------------------------------

def _toast_lake(lake: Path) -> None:
    cols = [("_unchanged", pa.list_(pa.string())), ("id", pa.int64()), ("doc", pa.string()),
            ("n", pa.int64())]
    land(lake, "pg", 1, [{"_op": "c", "_pos": 1, "id": 1, "doc": "big", "n": 1}], cols)
    land(lake, "pg", 2, [{"_op": "u", "_pos": 2, "id": 1, "doc": None, "n": 2,
                          "_unchanged": ["doc"]}], cols)


def test_restore_sqlite_keeps_a_toasted_value_an_update_left_out(tmp_path: Path) -> None:
    """`replay`/_apply ignores `_unchanged`: the update's NULL replaces 'big' (the Parquet
    format and silver keep it)."""
    lake = tmp_path / "lake"
    _toast_lake(lake)
    store = DirStore(lake)
    restore.write_parquet(store, "src", None, 2**63 - 1, tmp_path / "out")
    assert pq.read_table(tmp_path / "out" / "t.parquet").column("doc").to_pylist() == ["big"]
    rows = restore.replay(store, "src", None, 2**63 - 1)["t"].rows
    assert rows[(1,)]["doc"] == "big", rows


def test_restore_parquet_types_columns_as_in_bronze(tmp_path: Path) -> None:
    """docs: "the columns typed as in bronze" -- a PostgreSQL `time` column comes out as
    text (silver_frame's cast for Delta Lake, reused by write_parquet)."""
    import datetime

    lake = tmp_path / "lake"
    land(lake, "pg", 1, [{"_op": "c", "_pos": 1, "id": 1, "at": datetime.time(1, 2, 3)}],
         [("id", pa.int64()), ("at", pa.time64("us"))])
    restore.write_parquet(DirStore(lake), "src", None, 2**63 - 1, tmp_path / "out")
    assert pq.read_schema(tmp_path / "out" / "t.parquet").field("at").type == pa.time64("us")


# --- 6. the opposite retype: text -> int, refused in one batch, accepted across batches

def test_a_retyped_column_is_refused_or_accepted_independently_of_batching(
        tmp_path: Path) -> None:
    """string then int64 (a retype on the device): one batch per file -> `_aligned`
    casts int64 to the silver string type and all is well; one batch -> concat refuses
    ("a column changed its type between bronze files"). Same lake, different outcome."""
    lake = tmp_path / "lake"
    land(lake, "gw", 1, [{"_op": "c", "_pos": 1, "id": 1, "v": "7"}],
         [("id", pa.int64()), ("v", pa.string())])
    land(lake, "gw", 2, [{"_op": "u", "_pos": 2, "id": 1, "v": 8}],
         [("id", pa.int64()), ("v", pa.int64())])
    many = build(lake, tmp_path / "many", batch_rows=1)
    assert [r["v"] for r in many] == ["8"]
    one = build(lake, tmp_path / "one", batch_rows=1_000_000)  # EdgeAgentError today
    assert one == many


# --- 7. Spark engine on the widened column (slow: starts Spark) ---------------------

@pytest.mark.slow
def test_spark_refuses_a_retyped_column_with_a_message(tmp_path: Path) -> None:
    """Spark's mergeSchema cannot read int32 and int64 files as one: a clear error, not a
    Py4J traceback."""
    from edge_agent.lake import silver_spark

    lake = tmp_path / "lake"
    land(lake, "gw", 1, [{"_op": "c", "_pos": 1, "id": 1, "v": 7}],
         [("id", pa.int64()), ("v", pa.int32())])
    land(lake, "gw", 2, [{"_op": "u", "_pos": 2, "id": 1, "v": 8}],
         [("id", pa.int64()), ("v", pa.int64())])
    assert [r["v"] for r in build(lake, tmp_path / "delta", batch_rows=1)] == [8]
    with pytest.raises(EdgeAgentError, match="changed its type on the device"):
        silver_spark.run(lake, tmp_path / "spark")


# --- 8. two runs at once (S3 --to has no lock: "a second run's commit fails") --------

def _net(device: str, *changes: tuple[str, int, int]) -> Any:
    from edge_agent.lake.silver_reduce import net_changes, silver_frame

    schema = pa.schema([*ENV, ("id", pa.int64()), ("v", pa.string()), ("_unfit", pa.string())])
    data = pa.Table.from_pylist(
        [{"_op": op, "_pos": pos, "_ts_ms": pos, "_device": device, "id": k, "v": "x",
          "_unfit": None} for op, pos, k in changes], schema=schema)
    return net_changes(silver_frame(data), ["id"])


def test_concurrent_runs_on_two_devices_keep_both_watermarks(tmp_path: Path) -> None:
    """docs/lake.md: on S3 (no lock) "a second run's commit to the same table fails with
    a conflict". Not when the two runs merge different devices (e.g. `--device gw-1` and
    `--device gw-2` side by side): the partitions differ, delta-rs retries the second
    commit and it lands -- carrying the watermark dict it read before the first commit,
    so gw-1's watermark goes back from 5 to 1 (the next run re-merges gw-1's files).
    Same delta-rs conflict rules locally and on S3 with conditional put."""
    from edge_agent.lake.silver_delta import SilverTable

    uri = str(tmp_path / "t")
    first = SilverTable(uri, "src.t")
    first.merge("gw-1", _net("gw-1", ("c", 1, 1)), ["id"], 1)
    first.merge("gw-2", _net("gw-2", ("c", 1, 1)), ["id"], 1)
    run_a, run_b = SilverTable(uri, "src.t"), SilverTable(uri, "src.t")
    run_a.merge("gw-1", _net("gw-1", ("u", 2, 1)), ["id"], 5)
    with contextlib.suppress(Exception):  # a conflict, as the docs promise, would be fine
        run_b.merge("gw-2", _net("gw-2", ("u", 3, 1)), ["id"], 3)
    again = SilverTable(uri, "src.t")
    assert (again.mark("gw-1"), again.mark("gw-2")) == (5, 3)


# --- 9. ordinals that restart at 1 (docs/operations.md: s3/mqtt sink, state.db lost) --

def _restarted_lake(lake: Path, *, second_era: bool = True) -> None:
    cols = [("id", pa.int64()), ("v", pa.string())]
    land(lake, "gw", 1, [{"_op": "c", "_pos": 1, "id": 1, "v": "first"}], cols)
    land(lake, "gw", 2, [{"_op": "u", "_pos": 3, "id": 1, "v": "second"}], cols)
    if second_era:  # state.db lost, empty spool: ordinals start over, positions go on
        land(lake, "gw", 1, [{"_op": "u", "_pos": 10, "id": 1, "v": "newest"}], cols)


def test_restarted_ordinals_are_refused_before_and_after_a_run(tmp_path: Path) -> None:
    """Ordinals that start over (the device lost its state) give files no single order:
    old #1, new #1, old #2. Silver refuses, naming both files, instead of letting an old
    change overwrite a newer one, or skipping the new era's files below the watermark."""
    lake = tmp_path / "lake"
    _restarted_lake(lake)
    for n, batch_rows in enumerate((1_000_000, 1)):
        with pytest.raises(EdgeAgentError, match="ordinal 1 is in two files"):
            build(lake, tmp_path / f"s{n}", batch_rows=batch_rows)
    before = tmp_path / "lake-before"
    _restarted_lake(before, second_era=False)
    to = tmp_path / "silver"
    build(before, to, batch_rows=1_000_000)
    _restarted_lake(before)
    with pytest.raises(EdgeAgentError, match="ordinals started over"):
        silver.run(DirStore(before), to, progress_out=io.StringIO())


# --- 10. the watermark lives only in commit files, which Delta log cleanup removes ------

def test_the_watermark_survives_delta_log_cleanup(tmp_path: Path) -> None:
    """Delta keeps commit JSON files only for delta.logRetentionDuration (30 days by
    default) once a checkpoint covers them; delta-rs deletes older ones after
    checkpoints (and on cleanup_metadata). A silver table that got no new changes for a
    while but was compacted (as docs/lake.md recommends) loses the commits that carry
    `edge_agent.silver`: the next run calls it "not a silver table of ours". (Retention
    set to 0 here to avoid waiting 30 days.)"""
    from edge_agent.lake.silver_delta import SilverTable

    uri = str(tmp_path / "t")
    target = SilverTable(uri, "src.t")
    target.merge("gw-1", _net("gw-1", ("c", 1, 1)), ["id"], 1)
    target.merge("gw-1", _net("gw-1", ("c", 2, 2)), ["id"], 2)
    dt = DeltaTable(uri)
    dt.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    dt.optimize.compact()
    dt.create_checkpoint()
    dt.cleanup_metadata()
    assert SilverTable(uri, "src.t").mark("gw-1") == 2


# --- 11. --engine spark --to s3://... ---------------------------------------------------

def test_spark_engine_refuses_an_s3_to_instead_of_writing_locally(
        tmp_path: Path, monkeypatch: Any) -> None:
    """`--to` is a plain string now so that s3:// survives (docs/cli.md: "silver: the
    directory, or s3://bucket/prefix"), but `_silver_spark` wraps it in Path():
    's3://bucket/silver' becomes the local relative directory 's3:/bucket/silver'."""
    import argparse

    from edge_agent import cli_lake
    from edge_agent.lake import silver_spark

    seen: dict[str, Any] = {}
    monkeypatch.setattr(silver_spark, "run", lambda lake, to, *a: seen.update(to=to) or {})
    (tmp_path / "lake" / "bronze").mkdir(parents=True)
    args = argparse.Namespace(
        action="silver", lake=str(tmp_path / "lake"), to="s3://bucket/silver", engine="spark",
        source=None, device=None, spark_master="local[1]", spark_format="parquet",
        endpoint_url=None, json=False, batch_rows=1)
    with pytest.raises(EdgeAgentError, match="--engine spark reads a lake directory"):
        cli_lake.cmd_lake(args)
    assert not seen


# --- 12. a --to directory whose name has '%' or '#' -------------------------------------

def test_a_to_directory_with_url_characters_is_refused(tmp_path: Path) -> None:
    """delta-rs reads the --to path as a URL: '%41' would become 'A', '#...' a fragment.
    Refused with the reason, before anything is written."""
    lake = tmp_path / "lake"
    land(lake, "gw", 1, [{"_op": "c", "_pos": 1, "id": 1, "v": "a"}],
         [("id", pa.int64()), ("v", pa.string())])
    for name in ("silver#1", "silver%41", "silver?x"):
        with pytest.raises(EdgeAgentError, match="reads the path as a URL"):
            silver.run(DirStore(lake), tmp_path / name, progress_out=io.StringIO())
        assert not (tmp_path / name).exists()
