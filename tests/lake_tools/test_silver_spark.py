"""`lake silver --engine spark` (Spark local mode, the machine's Java) gives the same
rows as the Delta engine, for a random SQLite workload with a truncate marker and two
devices, and for logical-mode updates that left a TOASTed column out."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import WORKLOAD_TABLES, config_dict, config_from_dict, run_cli, run_workload
from tests.lake_tools.silver_support import assert_silver_is, silver_rows, table_uri
from tests.lake_tools.test_silver_merge import bronze


def _spark_rows(out: Path, source: str, table: str) -> list[dict[str, Any]]:
    files = sorted(table_uri(out, source, table).glob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def _canonical(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(sorted((k, repr(v)) for k, v in r.items())) for r in rows)


def _hand_made(lake: Path) -> None:
    """A logical-mode source written by hand: files and manifests as the collector lands
    them, with updates whose `doc` was left out."""
    batches = [
        bronze("pg-1", ("c", 1, 1, "big-1", None), ("c", 2, 2, "big-2", None)),
        bronze("pg-1", ("u", 3, 1, None, ["doc"]), ("u", 4, 2, "new-2", None),
               ("u", 5, 2, None, ["doc"]), ("c", 6, 3, "x", None), ("d", 7, 3, None, None)),
    ]
    for ordinal, batch in enumerate(batches, start=1):
        at = [datetime.time(1, 2, 3, 100_000 * i) for i in range(len(batch))]
        table = batch.set_column(batch.schema.get_field_index("at"), "at",
                                 pa.array(at, pa.time64("us")))
        meta = {b"edge_agent.key": b'["id"]'}
        first, last = table["_pos"][0].as_py(), table["_pos"][-1].as_py()
        stem = f"pg-1-{first:020d}-{last:020d}"
        folder = lake / "bronze" / "pg" / "public.docs" / "date=2026-12-05"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.replace_schema_metadata(meta), folder / f"{stem}.parquet")
        manifest = {"device": "pg-1", "source": "pg", "table": "public.docs",
                    "ordinal": ordinal, "rows": len(table),
                    "bytes": (folder / f"{stem}.parquet").stat().st_size}
        (folder / f"{stem}.manifest.json").write_text(json.dumps(manifest))


def test_spark_and_delta_give_the_same_rows(tmp_path: Path, harness_factory: Any) -> None:
    from edge_agent.capture.triggers import ChangeLog
    from edge_agent.sources.sqlite import connect
    from tests import workload

    lake = tmp_path / "lake"
    dbs = {}
    for n, device in enumerate(("gw-a", "gw-b")):
        db = tmp_path / f"{device}.db"
        workload.create(db)
        data = config_dict(tmp_path / device, db, list(WORKLOAD_TABLES),
                           buffer={"max_file_bytes": "8KiB", "row_group_bytes": "4KiB"},
                           agent={"device_id": device}, sink={"path": str(lake)})
        h = harness_factory(config_from_dict(data))
        h.step()
        run_workload(db, seed=70 + n, transactions=120)
        if device == "gw-b":  # triggers lost: a `t` marker and a snapshot follow
            h.step(0.1)
            ChangeLog(connect(db, 5), db).uninstall(["readings"], drop_log=False)
            run_workload(db, seed=80, transactions=40)
        h.step(0.1)
        assert h.flush().ok
        dbs[device] = db
    _hand_made(lake)

    delta, spark = tmp_path / "delta", tmp_path / "spark"
    done = run_cli("lake", "silver", "--lake", str(lake), "--to", str(delta))
    assert done.returncode == 0, done.stderr
    done = run_cli("lake", "silver", "--engine", "spark", "--lake", str(lake), "--to",
                   str(spark), timeout=600)
    assert done.returncode == 0, done.stderr
    assert "app.readings:" in done.stdout
    for device, db in dbs.items():
        assert_silver_is(delta, db, device)
    for source, table in [*(("app", t) for t in WORKLOAD_TABLES), ("pg", "public.docs")]:
        want = silver_rows(delta, source, table)
        assert want, (source, table)
        assert _canonical(_spark_rows(spark, source, table)) == _canonical(want), table
    docs = {r["id"]: r["doc"] for r in silver_rows(delta, "pg", "public.docs")}
    assert docs == {1: "big-1", 2: "new-2"}
    assert {r["at"] for r in silver_rows(delta, "pg", "public.docs")} == {
        "01:02:03.000000", "01:02:03.200000"}
    assert pa.types.is_string(pq.read_schema(
        next(table_uri(spark, "pg", "public.docs").glob("*.parquet"))).field("at").type)
