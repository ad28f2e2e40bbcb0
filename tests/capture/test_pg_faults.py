"""PostgreSQL capture under the cases a review found: a key moved while a snapshot page
waits for its lock, date and timestamp cursors and keys, a column type change, a capture
retired mid-snapshot, an infinite cursor, disabled triggers, a second agent on one
database and a DSN the server refuses. Each would lose, double or stall changes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from edge_agent.capture.pg_trigger import PgTriggerCapture
from edge_agent.errors import EdgeAgentError, SourceError
from tests.capture.test_pg_trigger import lake_state, pg_config, rows_of, sql
from tests.lake import read_changes


def test_a_key_moved_while_a_snapshot_page_waits_skips_no_row(tmp_path: Path,
                                                              pg_db: str) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, qty int)",
        "INSERT INTO items SELECT g, g FROM generate_series(1, 10) g")
    cfg = pg_config(tmp_path, pg_db, ["items"], source={"page_rows": 3})
    cap = PgTriggerCapture(cfg.sources[0])
    cap.open(0, 1000)
    writer = psycopg.connect(pg_db)
    writer.execute("UPDATE items SET id = 100 WHERE id = 1")  # holds the row's lock
    first = threading.Thread(target=cap.snapshot_step, args=(1000,))
    first.start()
    time.sleep(0.5)  # the page waits for the lock
    writer.commit()
    writer.close()
    first.join()
    while cap.snapshot_step(1000):
        pass
    cap.close()
    with psycopg.connect(pg_db) as con:
        copied = con.execute("SELECT (data->>'id')::int FROM edge_cdc.log WHERE op = 'r'")
        assert sorted(r[0] for r in copied) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 100]


def test_a_date_cursor_with_a_lag_window_emits_each_row_once(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, qty int, day date NOT NULL)",
        "INSERT INTO items VALUES (1, 1, '2025-01-01'), (2, 2, '2025-01-02')")
    tables = [{"name": "items", "mode": "timestamp", "cursor": "day", "lag": "5s"}]
    h = harness_factory(pg_config(tmp_path, pg_db, tables))
    for _ in range(4):
        h.step(2)
        h.flush()
    assert [c["values"]["id"] for c in read_changes(tmp_path / "lake")] == [1, 2]


def test_a_timestamp_in_the_key_pages_through_a_timestamp_table(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, "CREATE TABLE r (dev int, ts timestamptz, day date, v int,"
               " PRIMARY KEY (dev, ts, day))",
        "INSERT INTO r SELECT 1, '2025-01-01'::timestamptz + (g / 3) * interval '1s',"
        " '2025-01-01'::date + g, g FROM generate_series(1, 12) g")
    tables = [{"name": "r", "mode": "timestamp", "cursor": "ts", "lag": "0s"}]
    h = harness_factory(pg_config(tmp_path, pg_db, tables, source={"page_rows": 5}))
    summary = h.step(1)
    assert summary.errors == []
    assert h.flush().pending_files == 0
    assert len(read_changes(tmp_path / "lake")) == 12


def test_rows_logged_before_a_column_type_change_land_exactly(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, qty int)",
        "INSERT INTO items VALUES (1, 1)")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    sql(pg_db, "ALTER TABLE items ALTER qty TYPE bigint", "UPDATE items SET qty = 3000000000")
    errors = [e for _ in range(3) for e in h.step(1).errors]
    assert errors == []
    assert h.flush().pending_files == 0
    update = next(c for c in read_changes(tmp_path / "lake") if c["_op"] == "u")
    assert update["values"]["qty"] == "3000000000"  # kept exactly, in _unfit
    assert lake_state(tmp_path, "public.items")[(1,)]["qty"] == 3000000000  # the snapshot


def test_a_capture_retired_mid_snapshot_stops_its_snapshot(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, qty int)",
        "INSERT INTO items SELECT g, g FROM generate_series(1, 50) g")
    cfg = pg_config(tmp_path, pg_db, ["items"], source={"page_rows": 5})
    cap = PgTriggerCapture(cfg.sources[0])
    cap.open(0, 1000)
    assert cap.snapshot_step(1000) == 5
    sql(pg_db, "ALTER TABLE items RENAME COLUMN id TO ident")
    cap.sync_triggers(0, 2000)
    while cap.snapshot_step(3000):  # the new capture's snapshot; the old one is gone
        pass
    cap.close()
    with psycopg.connect(pg_db) as con:
        pending = con.execute("SELECT count(*) FROM edge_cdc.snapshots WHERE done_ms IS NULL")
        assert pending.fetchone() == (0,)


def test_a_row_with_an_infinite_cursor_does_not_stall_the_table(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, qty int, updated_at timestamptz)",
        "INSERT INTO items VALUES (1, 1, now()), (2, 2, 'infinity')")
    tables = [{"name": "items", "mode": "timestamp", "cursor": "updated_at", "lag": "5s"}]
    h = harness_factory(pg_config(tmp_path, pg_db, tables))
    assert h.step(1).errors == []
    assert h.flush().pending_files == 0
    assert [c["values"]["id"] for c in read_changes(tmp_path / "lake")] == [1]


def test_disabled_triggers_are_a_gap_with_a_marker_and_a_snapshot(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, qty int)",
        "INSERT INTO items VALUES (1, 1), (2, 2)")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    sql(pg_db, "ALTER TABLE items DISABLE TRIGGER edge_cdc_capture",
        "DELETE FROM items WHERE id = 2")  # not logged: the triggers are off
    h.step(0.1)
    h.step(0.1)
    assert h.flush().pending_files == 0
    assert [c["_op"] for c in read_changes(tmp_path / "lake")] == ["r", "r", "t", "r"]
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")


def test_triggers_fire_for_replicated_and_restored_writes(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, qty int)")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    with psycopg.connect(pg_db) as con:  # as a logical replication apply worker writes
        con.execute("SET session_replication_role = replica")
        con.execute("INSERT INTO items VALUES (1, 1)")
    h.step(0.1)
    assert h.flush().pending_files == 0
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")


def test_a_second_agent_on_the_same_database_is_refused(tmp_path: Path, pg_db: str) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, qty int)")
    first = PgTriggerCapture(pg_config(tmp_path, pg_db, ["items"]).sources[0])
    first.open(0, 1000)
    second = PgTriggerCapture(pg_config(tmp_path, pg_db, ["items"]).sources[0])
    try:
        with pytest.raises(SourceError, match="another agent captures this database"):
            second.open(0, 1000)
    finally:
        second.close()
        first.close()


def test_a_dsn_option_the_driver_refuses_is_an_error_not_a_crash(tmp_path: Path,
                                                                 pg_db: str) -> None:
    bad = pg_db + "?bogus_option=1"
    cap = PgTriggerCapture(pg_config(tmp_path, bad, ["items"]).sources[0])
    with pytest.raises(EdgeAgentError, match="bogus_option"):
        cap.open(0, 1000)
