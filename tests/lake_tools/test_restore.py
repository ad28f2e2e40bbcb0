"""`edge-agent lake restore`: after a random workload (unicode, blobs, 64-bit integers,
values that do not fit their column, key moves, deletes), the restored database equals
the application's, now and at an earlier position."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from edge_agent.lake.restore import replay, write_sqlite
from tests.conftest import WORKLOAD_TABLES, make_config, run_cli, run_workload
from tests.lake import read_changes, source_state


def _same(restored: Path, source: Path) -> None:
    for table, key in WORKLOAD_TABLES.items():
        assert source_state(restored, table, key) == source_state(source, table, key), table


def test_restore_equals_the_source_now_and_at_an_earlier_position(
        tmp_path: Path, app_db: Path, harness_factory: Any) -> None:
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES),
                      buffer={"max_file_bytes": "16KiB", "row_group_bytes": "8KiB"})
    h = harness_factory(cfg)
    h.step()
    run_workload(app_db, seed=31, transactions=150)
    h.step(0.1)
    assert h.flush().ok
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
    write_sqlite(replay(lake, "app", None, 2**63 - 1), now)
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
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES))
    h = harness_factory(cfg)
    h.step()
    run_workload(app_db, seed=33, transactions=30)
    h.step(0.1)
    assert h.flush().ok
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
