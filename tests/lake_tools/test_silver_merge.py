"""Net changes and their MERGE into a real Delta table: `t` markers, deletes, updates
that left a TOASTed column out (logical mode's `_unchanged`), other devices untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from edge_agent.lake.silver_delta import SilverTable
from edge_agent.lake.silver_plan import Stream
from edge_agent.lake.silver_reduce import net_changes, silver_frame

SCHEMA = pa.schema([("_op", pa.string()), ("_pos", pa.int64()), ("_ts_ms", pa.int64()),
                    ("_device", pa.string()), ("_lsn", pa.int64()),
                    ("_unchanged", pa.list_(pa.string())), ("id", pa.int64()),
                    ("doc", pa.string()), ("at", pa.time64("us")), ("_unfit", pa.string())])


def bronze(device: str, *changes: tuple[Any, ...]) -> pa.Table:
    """(op, pos, id, doc, unchanged) tuples as a bronze batch."""
    rows = [{"_op": op, "_pos": pos, "_ts_ms": pos, "_device": device, "_lsn": 0,
             "_unchanged": unchanged, "id": key, "doc": doc, "at": None, "_unfit": None}
            for op, pos, key, doc, unchanged in changes]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def merge(target: SilverTable, device: str, ordinal: int, *changes: tuple[Any, ...]) -> None:
    target.merge(device, net_changes(silver_frame(bronze(device, *changes)), ["id"]), ["id"],
                 ordinal)


def state(uri: Path) -> dict[tuple[str, int], str | None]:
    rows = DeltaTable(str(uri)).to_pyarrow_table().to_pylist()
    return {(r["_device"], r["id"]): r["doc"] for r in rows}


def test_net_changes_keep_the_last_change_per_key_after_the_last_marker() -> None:
    net = net_changes(silver_frame(bronze(
        "gw", ("c", 1, 1, "a", None), ("u", 2, 1, "b", None), ("t", 3, None, None, None),
        ("r", 4, 2, "x", None), ("c", 5, 3, "y", None), ("d", 6, 3, None, None),
        ("u", 7, 2, "z", None))), ["id"])
    assert net.truncate
    assert [(r["_op"], r["id"], r["doc"]) for r in net.rows.to_pylist()] == [
        ("d", 3, None), ("u", 2, "z")]
    assert "_lsn" not in net.rows.column_names
    assert net.rows.schema.field("at").type == pa.string()  # Delta Lake has no time of day


def test_merge_applies_deletes_markers_and_left_out_columns(tmp_path: Path) -> None:
    uri = tmp_path / "t"
    target = SilverTable(str(uri), "src.t")
    merge(target, "gw-a", 1, ("c", 1, 1, "big-1", None), ("c", 2, 2, "big-2", None),
          ("c", 3, 3, "three", None))
    merge(target, "gw-b", 1, ("c", 1, 1, "other", None))
    # An update that left `doc` out keeps the silver value; one whose batch had it takes that.
    merge(target, "gw-a", 2, ("u", 4, 1, None, ["doc"]), ("u", 5, 2, "new-2", None),
          ("u", 6, 2, None, ["doc"]), ("d", 7, 3, None, None))
    assert state(uri) == {("gw-a", 1): "big-1", ("gw-a", 2): "new-2", ("gw-b", 1): "other"}
    merge(target, "gw-a", 3, ("t", 8, None, None, None), ("r", 9, 5, "five", None))
    assert state(uri) == {("gw-a", 5): "five", ("gw-b", 1): "other"}
    reopened = SilverTable(str(uri), "src.t")
    assert (reopened.mark("gw-a"), reopened.mark("gw-b"), reopened.key) == (3, 1, ["id"])


def test_a_gap_stops_a_stream_and_a_known_drop_does_not() -> None:
    assert Stream(ordinals={1, 2, 4}).unbroken == 2
    assert Stream(ordinals={1, 2, 4}).waiting_at == 3
    assert Stream(ordinals={1, 2, 4}, dropped={3}).unbroken == 4
    assert Stream(ordinals={1, 2, 4}, dropped={3}).waiting_at is None
    assert Stream(ordinals={2}).waiting_at == 1
