"""Schema changes while capturing: triggers follow, files rotate, nothing is lost."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import duckdb

from edge_agent.capture.triggers import ChangeLog
from edge_agent.sources.sqlite import connect
from tests.conftest import make_config
from tests.lake import assert_exact, lake_files, read_changes


def app(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None)


def fill(con: sqlite3.Connection, n: int) -> None:
    con.executemany("INSERT INTO events (at, kind) VALUES (?, ?)",
                    [("2025-01-01", f"k{i}") for i in range(n)])


def fingerprints(lake: Path, table: str) -> set[str]:
    found = set()
    for f in lake_files(lake):
        if f.parent.parent.name == table:
            manifest = json.loads(f.with_name(f.name.replace(".parquet", ".manifest.json"))
                                  .read_text())
            found.add(manifest["schema_fingerprint"])
    return found


def test_add_column_with_writes_before_regeneration(tmp_path: Path, app_db: Path,
                                                    harness_factory) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["events"]))
    h.step()
    con = app(app_db)
    fill(con, 20)
    h.step()
    # Migration, then writes the old triggers log without the new column:
    con.execute("ALTER TABLE events ADD COLUMN severity INTEGER NOT NULL DEFAULT 3")
    con.execute("UPDATE events SET severity = 9 WHERE id <= 5")
    con.execute("INSERT INTO events (at, kind, severity) VALUES ('2025-01-02', 'new', 7)")
    con.execute("DELETE FROM events WHERE id = 6")
    assert h.flush().ok
    assert_exact(tmp_path / "lake", app_db, {"events": ["id"]}, None)
    assert len(fingerprints(tmp_path / "lake", "events")) == 2
    glob = str(tmp_path / "lake" / "bronze" / "*" / "*" / "*" / "*.parquet")
    rows = duckdb.connect().execute(
        f"SELECT count(*), count(severity) FROM read_parquet('{glob}', union_by_name = true)"
    ).fetchall()
    assert rows[0][0] > rows[0][1] > 0  # older files read as NULL in the new column


def test_rename_column_keeps_the_lake_current(tmp_path: Path, app_db: Path,
                                              harness_factory) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["events"]))
    h.step()
    con = app(app_db)
    fill(con, 10)
    h.step()
    con.execute("ALTER TABLE events RENAME COLUMN kind TO category")
    con.execute("UPDATE events SET category = 'renamed' WHERE id = 2")
    assert h.flush().ok
    assert_exact(tmp_path / "lake", app_db, {"events": ["id"]}, None)


def test_table_rebuilt_by_a_migration_tool(tmp_path: Path, app_db: Path,
                                           harness_factory) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["events"]))
    h.step()
    con = app(app_db)
    fill(con, 30)
    assert h.flush().ok
    # The 12-step way: create new, copy, drop, rename — the old triggers go with the table.
    con.executescript("""
        BEGIN;
        CREATE TABLE events_new (id INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT,
                                 source TEXT DEFAULT 'gw');
        INSERT INTO events_new (id, at, kind) SELECT id, at, kind FROM events;
        DROP TABLE events;
        ALTER TABLE events_new RENAME TO events;
        COMMIT;
    """)
    # Changes before the agent notices: invisible to any trigger.
    con.execute("DELETE FROM events WHERE id IN (1, 2, 3)")
    con.execute("UPDATE events SET kind = 'changed' WHERE id = 10")
    con.execute("INSERT INTO events (at, kind) VALUES ('2025-02-02', 'after rebuild')")
    assert h.flush().ok
    changes = assert_exact(tmp_path / "lake", app_db, {"events": ["id"]}, None)
    assert "t" in [c["_op"] for c in changes]  # the lake is told to start the table over


def test_drop_column_via_uninstall_and_reinstall(tmp_path: Path, app_db: Path,
                                                 harness_factory) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["events"]))
    h.step()
    con = app(app_db)
    fill(con, 10)
    assert h.flush().ok
    try:  # SQLite refuses DROP COLUMN while a trigger names the column: documented
        con.execute("ALTER TABLE events DROP COLUMN kind")
        raise AssertionError("DROP COLUMN should fail while capture triggers exist")
    except sqlite3.OperationalError as exc:
        assert "no such column" in str(exc)
    ChangeLog(connect(app_db, 5), app_db).uninstall(["events"], drop_log=False)
    con.execute("ALTER TABLE events DROP COLUMN kind")
    con.execute("DELETE FROM events WHERE id = 4")
    assert h.flush().ok
    changes = assert_exact(tmp_path / "lake", app_db, {"events": ["id"]}, None)
    assert all("kind" not in c["values"] for c in changes if c["_op"] == "r")


def test_positions_stay_ordered_across_tables_through_migrations(
        tmp_path: Path, app_db: Path, harness_factory) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["events", "readings"]))
    h.step()
    con = app(app_db)
    fill(con, 5)
    con.execute("INSERT INTO readings (sensor) VALUES ('a')")
    h.step()
    con.execute("ALTER TABLE readings ADD COLUMN extra TEXT")
    con.execute("INSERT INTO readings (sensor, extra) VALUES ('b', 'x')")
    fill(con, 5)
    assert h.flush().ok
    positions = [c["_pos"] for c in read_changes(tmp_path / "lake")]
    assert positions == sorted(set(positions))
    assert_exact(tmp_path / "lake", app_db, {"events": ["id"], "readings": ["id"]}, None)


def test_migration_while_a_writer_process_keeps_writing(tmp_path: Path, app_db: Path,
                                                        harness_factory) -> None:
    from tests.conftest import WORKLOAD_TABLES, start_workload

    h = harness_factory(make_config(tmp_path, app_db, list(WORKLOAD_TABLES)))
    h.step()
    app = start_workload(app_db, seed=51, transactions=500, pause=0.002)
    steps = 0
    migrated = False
    while app.poll() is None:
        h.step(advance=0.3)
        steps += 1
        if steps == 3:  # the application migrates while its other process writes
            con = sqlite3.connect(app_db, timeout=30)
            con.execute("ALTER TABLE events ADD COLUMN origin TEXT DEFAULT 'gw'")
            con.commit()
            con.close()
            migrated = True
    app.communicate()
    assert migrated
    assert h.flush().ok
    assert_exact(tmp_path / "lake", app_db,
                 {"readings": ["id"], 'odd "table" ü': ["key part", 'qu"ote'],
                  "events": ["id"]}, None)
    events = [c for c in read_changes(tmp_path / "lake") if c["_table"] == "events"]
    assert events and events[-1]["values"].get("origin") == "gw"  # the new column landed
