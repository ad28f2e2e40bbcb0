"""Invariant 3 and 5 on the spool: a crash at any point, corrupt or truncated files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.errors import StateError
from edge_agent.spool.state import FAILED, READY
from edge_agent.spool.statedir import StateDir
from tests.conftest import WORKLOAD_TABLES, make_config, run_workload
from tests.lake import assert_exact, lake_files


def insert_events(db: Path, n: int) -> None:
    con = sqlite3.connect(db)
    con.executemany("INSERT INTO events (at, kind) VALUES (?, ?)",
                    [("2025-11-24T00:00:00Z", f"e{i}") for i in range(n)])
    con.commit()
    con.close()


def test_crash_with_open_buffers_recaptures_them(tmp_path: Path, app_db: Path,
                                                 harness_factory) -> None:
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES), buffer={"max_file_age": "1h"})
    h = harness_factory(cfg)
    h.step()
    expected = run_workload(app_db, seed=5, transactions=60)
    h.step()
    assert h.agent.writer.open  # captured, not sealed
    h.restart()  # crash: open files are lost, nothing was recorded
    expected += run_workload(app_db, seed=6, transactions=60)
    assert h.flush().ok
    assert_exact(tmp_path / "lake", app_db, WORKLOAD_TABLES, expected)


def test_start_removes_temp_and_unrecorded_files(tmp_path: Path, app_db: Path,
                                                 harness_factory) -> None:
    cfg = make_config(tmp_path, app_db, ["events"])
    h = harness_factory(cfg)
    h.step()
    insert_events(app_db, 10)
    assert h.flush().ok
    spool = tmp_path / "state" / "spool"
    orphan_tmp = spool / "tmp" / "123-0.parquet.tmp"
    orphan_tmp.write_bytes(b"partial")
    unrecorded = spool / "ready" / "bronze/app/events/date=2025-11-24/gw-test-1-2.parquet"
    unrecorded.parent.mkdir(parents=True)
    unrecorded.write_bytes(b"PAR1 sealed but never recorded")
    h.restart()
    assert not orphan_tmp.exists() and not unrecorded.exists()
    assert h.agent.recovery.temp_removed == 1
    assert h.agent.recovery.unrecorded_removed == 1
    assert h.flush().ok


def test_crash_between_ship_and_delete_leaves_no_duplicate(tmp_path: Path, app_db: Path,
                                                           harness_factory) -> None:
    cfg = make_config(tmp_path, app_db, ["events"])
    h = harness_factory(cfg)
    h.step()
    insert_events(app_db, 10)
    h.agent.step(h.clock.monotonic(), drain_until=h.clock.monotonic() + 5)
    h.agent.seal_all()
    rec = h.agent.state.files(READY)[0]
    # The sink got the file, then the agent died before recording it as shipped.
    h.agent.shipping.shipper.put(h.agent.spool.path(rec.relpath),
                                 h.agent.spool.path(rec.manifest_relpath), rec)
    h.restart()
    assert h.flush().ok
    assert len(lake_files(tmp_path / "lake")) == 1
    assert_exact(tmp_path / "lake", app_db, {"events": ["id"]}, 10)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_corrupt_spool_file_is_quarantined_and_the_rest_ships(
        tmp_path: Path, app_db: Path, harness_factory, damage: str) -> None:
    cfg = make_config(tmp_path, app_db, ["events", "readings"])
    h = harness_factory(cfg)
    h.step()
    insert_events(app_db, 20)
    h.agent.step(h.clock.monotonic())
    h.agent.seal_all()
    bad = h.agent.state.files(READY)[0]
    path = h.agent.spool.path(bad.relpath)
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()
    con = sqlite3.connect(app_db)
    con.execute("INSERT INTO readings (sensor, value) VALUES ('s', 1.0)")
    con.commit()
    con.close()
    result = h.flush()
    assert result.pending_files == 0
    failed = h.agent.state.files(FAILED)
    assert [f.id for f in failed] == [bad.id]
    assert "corrupt" in (failed[0].error or "") or "missing" in (failed[0].error or "")
    if damage != "delete":
        quarantined = tmp_path / "state" / "spool" / "failed" / bad.relpath
        assert quarantined.exists()
        assert quarantined.with_name(quarantined.name + ".error").read_text().strip()
    assert h.agent.state.counters().get("corrupt_files") == 1
    shipped_tables = {p.parent.parent.name for p in lake_files(tmp_path / "lake")}
    assert shipped_tables == {"readings"}  # the corrupt events file never reached the lake


def test_unusable_state_database_is_explained(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "state")
    sd.prepare()
    sd.db_path.write_bytes(b"this is not a database" * 100)
    from edge_agent.spool.state import StateDB

    with pytest.raises(StateError, match=r"state database .* move it aside"):
        StateDB(sd.db_path)


def test_newer_storage_version_is_refused(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "state")
    sd.prepare()
    (tmp_path / "state" / "VERSION").write_text("99\n")
    with pytest.raises(StateError, match="upgrade edge-agent"):
        sd.prepare()


def test_the_last_shipped_file_is_the_newest_by_position_when_the_clock_stepped_back(
        tmp_path: Path, app_db: Path, harness_factory) -> None:
    """Issue 13 item 11: status named an older file after the clock came back from the
    future, because it picked by shipping time."""
    from edge_agent.clock import ManualClock
    from tests.conftest import NOW_MS

    clock = ManualClock(NOW_MS + 86_400_000, 1000.0)  # a day ahead
    h = harness_factory(make_config(tmp_path, app_db, ["readings"]), clock)
    con = sqlite3.connect(app_db)
    for round_ in range(2):
        with con:
            con.execute("INSERT INTO readings (sensor, value) VALUES (?, 1.0)", (f"r{round_}",))
        h.step(0.1)
        assert h.flush().pending_files == 0
        if round_ == 0:
            clock.now_ms -= 86_400_000  # the clock is corrected: it steps back a day
    con.close()
    from tests.lake import read_changes

    newest = next(c["file"] for c in read_changes(tmp_path / "lake")
                  if c["values"]["sensor"] == "r1")
    last = h.agent.state.last_shipped("app", "readings")
    assert last is not None and last.relpath.endswith(newest)
