"""Reading a lake directory back, and replaying its changes into table states."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from edge_agent.bronze.schema import decode_unfit

ENVELOPE = {"_op", "_pos", "_ts_ms", "_captured_ms", "_device", "_source", "_table", "_unfit",
            "_tx", "_before", "_lsn", "_unchanged"}


def lake_files(lake: Path) -> list[Path]:
    return sorted(lake.glob("bronze/*/*/*/*.parquet"))


def read_changes(lake: Path) -> list[dict[str, Any]]:
    """Every change row in the lake, in position order, values decoded exactly."""
    rows: list[dict[str, Any]] = []
    for path in lake_files(lake):
        table = pq.read_table(path)
        key = json.loads(table.schema.metadata[b"edge_agent.key"])
        for row in table.to_pylist():
            values = {k: _sqlite_value(v) for k, v in row.items() if k not in ENVELOPE}
            values.update(decode_unfit(row["_unfit"]))
            rows.append({**{k: row.get(k) for k in ENVELOPE}, "values": values, "key": key,
                         "file": path.name})
    rows.sort(key=lambda r: r["_pos"])
    return rows


def _sqlite_value(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v


def replay(changes: list[dict[str, Any]]) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Apply changes in position order: the current state of every table."""
    state: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = defaultdict(dict)
    for c in changes:
        if c["_op"] == "t":  # truncate marker: the table is captured again from scratch
            state[c["_table"]].clear()
            continue
        key = tuple(c["values"][k] for k in c["key"])
        if c["_op"] == "d":
            state[c["_table"]].pop(key, None)
        else:
            state[c["_table"]][key] = c["values"]
    return state


def source_state(db: Path, table: str, key: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    con = sqlite3.connect(db)
    quoted = '"' + table.replace('"', '""') + '"'
    cur = con.execute(f"SELECT * FROM {quoted}")
    names = [d[0] for d in cur.description]
    out = {}
    for row in cur:
        values = dict(zip(names, row, strict=True))
        out[tuple(values[k] for k in key)] = values
    con.close()
    return out


def assert_exact(lake: Path, db: Path, tables: dict[str, list[str]],
                 expected_changes: int | None, first_pos: int = 1) -> list[dict[str, Any]]:
    """The lake holds each change once, none missing, and replays to the source tables.

    ``expected_changes`` None: only uniqueness and replay are checked (snapshots add
    ``r`` rows for rows that also have their own changes)."""
    changes = read_changes(lake)
    positions = [c["_pos"] for c in changes]
    assert len(positions) == len(set(positions)), "a position appears twice in the lake"
    if expected_changes is not None:
        assert len(changes) == expected_changes, (len(changes), expected_changes)
    if positions:
        assert positions[0] >= first_pos
    state = replay(changes)
    for table, key in tables.items():
        src = source_state(db, table, key)
        got = state.get(table, {})
        assert got.keys() == src.keys(), f"{table}: keys differ"
        for k, row in src.items():
            assert got[k] == row, f"{table} {k}: lake {got[k]} != source {row}"
            for name, value in row.items():
                if value is not None and not isinstance(value, float):
                    assert type(got[k][name]) is type(value) or isinstance(got[k][name], float), (
                        table, k, name, got[k][name], value)
    return changes


def arrow_schema_of(path: Path) -> pa.Schema:
    return pq.read_schema(path)
