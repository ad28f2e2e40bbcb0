"""`edge-agent lake restore`: after a random workload (unicode, blobs, 64-bit integers,
values that do not fit their column, key moves, deletes), the restored database equals
the application's, now and at an earlier position."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from edge_agent.lake.restore import replay, write_sqlite
from edge_agent.lake.silver import dir_name
from edge_agent.lake.store import DirStore
from tests.conftest import WORKLOAD_TABLES, run_cli, run_workload
from tests.lake import read_changes, source_state
from tests.lake_tools.shipped import SMALL_FILES, s3_lake, shipped
from tests.lake_tools.silver_support import assert_silver_is, silver_rows


def _same(restored: Path, source: Path) -> None:
    for table, key in WORKLOAD_TABLES.items():
        assert source_state(restored, table, key) == source_state(source, table, key), table


def test_restore_equals_the_source_now_and_at_an_earlier_position(
        tmp_path: Path, app_db: Path, harness_factory: Any) -> None:
    cfg, h = shipped(tmp_path, app_db, harness_factory, 31, 150, buffer=SMALL_FILES)
    earlier = tmp_path / "earlier.db"
    src, dst = sqlite3.connect(app_db), sqlite3.connect(earlier)
    src.backup(dst)  # the application as it was
    src.close()
    dst.close()
    cut = max(c["_pos"] for c in read_changes(Path(cfg.sink.path)))
    run_workload(app_db, seed=32, transactions=150)
    h.step(0.1)
    assert h.flush().ok
    lake = Path(cfg.sink.path)

    now = tmp_path / "now.db"
    write_sqlite(replay(DirStore(lake), "app", None, 2**63 - 1), now)
    _same(now, app_db)
    then = tmp_path / "then.db"
    done = run_cli("lake", "restore", "--lake", str(lake), "--source", "app",
                   "--at-pos", str(cut), "--to", str(then))
    assert done.returncode == 0, done.stderr
    _same(then, earlier)
    again = run_cli("lake", "restore", "--lake", str(lake), "--source", "app",
                    "--to", str(then))
    assert again.returncode != 0 and "exists" in again.stderr  # never overwrites


def test_restore_at_a_time_before_any_change_gives_empty_tables(
        tmp_path: Path, app_db: Path, harness_factory: Any) -> None:
    cfg, _ = shipped(tmp_path, app_db, harness_factory, 33, 30)
    to = tmp_path / "empty.db"
    done = run_cli("lake", "restore", "--lake", str(cfg.sink.path), "--source", "app",
                   "--at-time", "2001-01-01T00:00:00Z", "--to", str(to))
    assert done.returncode == 0, done.stderr
    con = sqlite3.connect(to)
    assert con.execute("SELECT count(*) FROM readings").fetchone() == (0,)
    con.close()
    bad = run_cli("lake", "restore", "--lake", str(cfg.sink.path), "--source", "app",
                  "--at-time", "yesterday", "--to", str(tmp_path / "x.db"))
    assert bad.returncode != 0 and "--at-time 'yesterday'" in bad.stderr


def _canonical(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(sorted((k, repr(v)) for k, v in r.items())) for r in rows)


def _parquet_state(to: Path, table: str, key: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    import pyarrow.parquet as pq

    from edge_agent.bronze.layout import encode_name
    from edge_agent.bronze.schema import decode_unfit

    out = {}
    for row in pq.read_table(to / f"{encode_name(table)}.parquet").to_pylist():
        values = {k: (int(v) if isinstance(v, bool) else v) for k, v in row.items()
                  if k not in ("_pos", "_ts_ms", "_unfit")}
        values.update(decode_unfit(row["_unfit"]))
        out[tuple(values[k] for k in key)] = values
    return out


def test_restore_and_silver_from_s3_to_parquet_and_one_table(
        tmp_path: Path, app_db: Path, harness_factory: Any, moto_s3: Any, bucket: str,
        s3_env: None) -> None:
    url, env = s3_lake(tmp_path, app_db, harness_factory, moto_s3, bucket, seed=34)
    lake = ["--lake", url, "--endpoint-url", moto_s3.url, "--source", "app"]
    out = tmp_path / "parquet"
    done = run_cli("lake", "restore", *lake, "--format", "parquet", "--to", str(out), **env)
    assert done.returncode == 0, done.stderr
    for table, key in WORKLOAD_TABLES.items():
        assert _parquet_state(out, table, key) == source_state(app_db, table, key), table
    one = tmp_path / "one.db"
    done = run_cli("lake", "restore", *lake, "--table", "readings", "--to", str(one), **env)
    assert done.returncode == 0, done.stderr
    assert source_state(one, "readings", ["id"]) == source_state(app_db, "readings", ["id"])
    con = sqlite3.connect(one)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] \
        == ["readings"]
    con.close()
    none = run_cli("lake", "restore", *lake, "--table", "nope", "--to", str(tmp_path / "n.db"),
                   **env)
    assert none.returncode != 0 and "--table 'nope'" in none.stderr
    again = run_cli("lake", "restore", *lake, "--format", "parquet", "--to", str(out), **env)
    assert again.returncode != 0 and "exists" in again.stderr
    silver = run_cli("lake", "silver", *lake[:4], "--to", str(tmp_path / "silver"), **env)
    assert silver.returncode == 0, silver.stderr  # silver reads an S3 lake the same way
    assert_silver_is(tmp_path / "silver", app_db)
    remote = run_cli("lake", "silver", *lake[:4], "--to", f"s3://{bucket}/silver", **env)
    assert remote.returncode == 0, remote.stderr  # ... and writes Delta tables to S3
    options = {"AWS_ENDPOINT_URL": moto_s3.url, "AWS_ALLOW_HTTP": "true",
               "AWS_REGION": "us-east-1"}
    for table in WORKLOAD_TABLES:
        uri = f"s3://{bucket}/silver/app/{dir_name(table)}"
        rows = DeltaTable(uri, storage_options=options).to_pyarrow_table().to_pylist()
        assert _canonical(rows) == _canonical(silver_rows(tmp_path / "silver", "app", table))
