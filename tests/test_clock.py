"""Clock invariant: an unsynced clock never yields a silent date=1970 partition."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.clock import UNSYNCED_PARTITION, ManualClock, partition_for
from tests.conftest import make_config
from tests.lake import lake_files

MIN_VALID = 1_577_836_800_000  # 2020-01-01
DAY = 86_400_000


def test_partition_uses_change_time_then_capture_time_then_unsynced() -> None:
    synced = MIN_VALID + 100 * DAY
    assert partition_for(synced, 0, MIN_VALID) == "2020-04-10"
    assert partition_for(0, synced, MIN_VALID) == "2020-04-10"
    assert partition_for(0, 5 * DAY, MIN_VALID) == UNSYNCED_PARTITION
    assert partition_for(MIN_VALID - 1, MIN_VALID - 1, MIN_VALID) == UNSYNCED_PARTITION


def test_agent_with_1970_clock_writes_an_explicit_unsynced_partition(
        tmp_path: Path, app_db: Path, harness_factory) -> None:
    import sqlite3

    clock = ManualClock(wall_ms=42_000, monotonic=10.0)  # booted without RTC: 1970
    h = harness_factory(make_config(tmp_path, app_db, ["events"]), clock)
    h.step()
    con = sqlite3.connect(app_db)
    con.execute("INSERT INTO events (at, kind) VALUES ('x', 'boot')")
    con.execute("UPDATE _edge_cdc_log SET ts_ms = 1000 WHERE tid != 0")  # the DB saw 1970 too
    con.commit()
    con.close()
    assert h.flush().ok
    files = lake_files(tmp_path / "lake")
    assert [f.parent.name for f in files] == [f"date={UNSYNCED_PARTITION}"]
    assert not list((tmp_path / "lake").rglob("date=1970-*"))
    manifest = json.loads(files[0].with_name(
        files[0].name.replace(".parquet", ".manifest.json")).read_text())
    assert manifest["clock"]["synced"] is False
    assert manifest["partition"]["date"] == UNSYNCED_PARTITION


def test_clock_synced_later_partitions_by_capture_time(tmp_path: Path, app_db: Path,
                                                       harness_factory) -> None:
    import sqlite3

    clock = ManualClock(wall_ms=MIN_VALID + 10 * DAY, monotonic=10.0)
    h = harness_factory(make_config(tmp_path, app_db, ["events"]), clock)
    h.step()
    con = sqlite3.connect(app_db)
    con.execute("INSERT INTO events (at, kind) VALUES ('x', 'boot')")
    con.execute("UPDATE _edge_cdc_log SET ts_ms = 1000 WHERE tid != 0")
    con.commit()
    con.close()
    assert h.flush().ok
    assert [f.parent.name for f in lake_files(tmp_path / "lake")] == ["date=2020-01-11"]
