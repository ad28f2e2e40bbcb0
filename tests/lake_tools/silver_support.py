"""Reading silver Delta tables back for the tests, and comparing them with SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from edge_agent.bronze.schema import decode_unfit
from edge_agent.lake.silver import dir_name
from tests.conftest import WORKLOAD_TABLES
from tests.lake import source_state

META = {"_device", "_pos", "_ts_ms", "_unfit"}


def table_uri(silver: Path, source: str, table: str) -> Path:
    return silver / dir_name(source) / dir_name(table)


def silver_rows(silver: Path, source: str, table: str) -> list[dict[str, Any]]:
    uri = table_uri(silver, source, table)
    if not (uri / "_delta_log").is_dir():
        return []
    return DeltaTable(str(uri)).to_pyarrow_table().to_pylist()


def silver_state(silver: Path, source: str, table: str, key: list[str],
                 device: str = "gw-test") -> dict[tuple[Any, ...], dict[str, Any]]:
    """The silver rows of one device as SQLite would hold them (``_unfit`` decoded)."""
    out = {}
    for row in silver_rows(silver, source, table):
        if row["_device"] != device:
            continue
        values = {k: (int(v) if isinstance(v, bool) else v) for k, v in row.items()
                  if k not in META}
        values.update(decode_unfit(row["_unfit"]))
        out[tuple(values[k] for k in key)] = values
    return out


def assert_silver_is(silver: Path, db: Path, device: str = "gw-test") -> None:
    for table, key in WORKLOAD_TABLES.items():
        want = source_state(db, table, key)
        got = silver_state(silver, "app", table, key, device)
        assert got.keys() == want.keys(), f"{table}: keys differ"
        for k, row in want.items():
            assert {c: got[k].get(c) for c in row} == row, (table, k)


def snapshot_of(silver: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every silver row of every workload table, envelope included, in a stable order."""
    out = {}
    for table in WORKLOAD_TABLES:
        rows = silver_rows(silver, "app", table)
        out[table] = sorted(tuple(sorted((k, repr(v)) for k, v in r.items())) for r in rows)
    return out
