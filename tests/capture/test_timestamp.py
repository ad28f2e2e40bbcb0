"""Timestamp mode on real SQLite files: ties, late commits, crashes, mixed time formats."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.capture.timestamp import cursor_ms_sql
from tests.capture import ts_app
from tests.conftest import make_config
from tests.lake import read_changes, replay

TS_TABLE = {"name": "items", "mode": "timestamp", "cursor": "updated_at", "key": ["id"],
            "lag": "5s", "deleted_flag": "is_deleted"}


@pytest.fixture
def items_db(tmp_path: Path) -> Path:
    return ts_app.vendor_db(tmp_path, ts_app.SCHEMA)


def ts_config(tmp_path: Path, db: Path, **table: object):
    return make_config(tmp_path, db, [{**TS_TABLE, **table}], source={"page_rows": 50})


def test_concurrent_writer_lands_exactly_and_never_writes_the_database(
        tmp_path: Path, items_db: Path, harness_factory) -> None:
    h = harness_factory(ts_config(tmp_path, items_db))
    ts_app.write_while_stepping(h, items_db, 5, 400)
    assert h.flush().ok
    changes = read_changes(tmp_path / "lake")
    assert replay(changes)["items"] == ts_app.live_rows(items_db)
    pairs = [(c["values"]["id"], c["_ts_ms"]) for c in changes]
    assert len(pairs) == len(set(pairs)), "a (key, cursor) version was emitted twice"
    assert {c["_op"] for c in changes} <= {"u", "d"}
    con = sqlite3.connect(items_db)
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE '_edge%'"
                       ).fetchone() == (0,)


def test_equal_cursor_values_across_pages_are_all_captured(tmp_path: Path, items_db: Path,
                                                           harness_factory) -> None:
    con = sqlite3.connect(items_db)
    con.executemany("INSERT INTO items (id, name, updated_at) VALUES (?, 'same', "
                    "'2025-06-01T00:00:00Z')", [(i,) for i in range(1, 238)])
    con.commit()
    h = harness_factory(ts_config(tmp_path, items_db))  # 50 rows a page
    assert h.flush().ok
    ids = sorted(c["values"]["id"] for c in read_changes(tmp_path / "lake"))
    assert ids == list(range(1, 238))


def test_late_commit_inside_the_lag_window_is_captured_once(tmp_path: Path, items_db: Path,
                                                            harness_factory) -> None:
    con = sqlite3.connect(items_db)
    con.execute("INSERT INTO items (id, name, updated_at) VALUES (1, 'a', '2025-06-01T00:00:10Z')")
    con.commit()
    h = harness_factory(ts_config(tmp_path, items_db, lag="5s"))
    h.step()
    # A transaction that took its timestamp earlier commits only now (3 s "in the past").
    con.execute("INSERT INTO items (id, name, updated_at) VALUES (2, 'late', "
                "'2025-06-01T00:00:07Z')")
    # Outside the window: documented as not seen.
    con.execute("INSERT INTO items (id, name, updated_at) VALUES (3, 'too late', "
                "'2025-06-01T00:00:01Z')")
    con.commit()
    h.step()
    h.step()
    assert h.flush().ok
    assert sorted(c["values"]["id"] for c in read_changes(tmp_path / "lake")) == [1, 2]


def test_crash_before_sealing_recaptures_without_repeats(tmp_path: Path, items_db: Path,
                                                         harness_factory) -> None:
    ts_app.run(str(items_db), 9, 100)
    h = harness_factory(make_config(tmp_path, items_db, [TS_TABLE],
                                    buffer={"max_file_age": "1h", "max_file_bytes": "16KiB",
                                            "row_group_bytes": "4KiB"},
                                    source={"page_rows": 40}))
    h.step()
    h.agent.seal_all()  # sealed and recorded with its cursor checkpoint
    ts_app.run(str(items_db), 10, 100)
    h.step()
    assert h.agent.writer.open, "captured but not sealed when the crash comes"
    h.restart()
    assert h.flush().ok
    changes = read_changes(tmp_path / "lake")
    pairs = [(c["values"]["id"], c["_ts_ms"]) for c in changes]
    assert len(pairs) == len(set(pairs))
    assert replay(changes)["items"] == ts_app.live_rows(items_db)


@pytest.mark.parametrize(("value", "expected_ms"), [
    ("2025-06-01T12:00:00Z", 1748779200000),
    ("2025-06-01 14:00:00+02:00", 1748779200000),
    ("2025-06-01T12:00:00.250", 1748779200250),
    (1748779200, 1748779200000),          # epoch seconds
    (1748779200250, 1748779200250),       # epoch milliseconds
    (1748779200.5, 1748779200500),        # epoch seconds with a fraction
    (2460828.0, 1748779200000),           # Julian day
    ("not a time", None),
])
def test_cursor_formats_normalise_to_utc_ms(value: object, expected_ms: int | None) -> None:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE t (c)")
    con.execute("INSERT INTO t VALUES (?)", (value,))
    assert con.execute(f"SELECT {cursor_ms_sql('c')} FROM t").fetchone()[0] == expected_ms


def test_status_shows_the_cursor(tmp_path: Path, items_db: Path, harness_factory) -> None:
    from edge_agent.runtime.status import build_status

    ts_app.run(str(items_db), 11, 20)
    h = harness_factory(ts_config(tmp_path, items_db))
    assert h.flush().ok
    table = build_status(h.cfg, h.agent.state)["sources"][0]["tables"][0]
    assert table["mode"] == "timestamp"
    assert table["cursor"]["watermark_ms"] > 1_700_000_000_000


def test_snapshot_of_a_timestamp_table_reads_it_again_as_op_r(tmp_path: Path) -> None:
    """Issue 12 item 12: after the lake was lost, `edge-agent snapshot --table T` restores
    a timestamp-mode table: every row again as op "r", then capture goes on."""
    import shutil

    from tests.conftest import config_dict, run_cli, write_config
    from tests.lake import read_changes, replay

    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER, updated_at TEXT)")
    with con:
        con.executemany("INSERT INTO items VALUES (?, ?, ?)",
                        [(i, i, f"2025-01-01T00:00:{i:02d}Z") for i in range(1, 21)])
    entry = {"name": "items", "mode": "timestamp", "cursor": "updated_at", "lag": "0s"}
    config = write_config(tmp_path, config_dict(tmp_path, db, [entry]))
    assert run_cli("flush", "--config", str(config)).returncode == 0
    shutil.rmtree(tmp_path / "lake" / "bronze")  # the lake is lost

    snap = run_cli("snapshot", "--table", "items", "--config", str(config))
    assert snap.returncode == 0, snap.stdout + snap.stderr
    with con:
        con.execute("UPDATE items SET qty = 0, updated_at = '2025-01-02T00:00:00Z' WHERE id = 5")
    con.close()
    assert run_cli("flush", "--config", str(config)).returncode == 0

    changes = read_changes(tmp_path / "lake")
    assert [c["_op"] for c in changes] == ["r"] * 20 + ["u"]
    state = replay(changes)["items"]
    assert len(state) == 20 and state[(5,)]["qty"] == 0
    import json

    status = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
    assert status["sources"][0]["tables"][0]["cursor"]["watermark_ms"] == 1735776000000


def test_a_clock_that_stepped_back_is_said_in_status_not_silent(
        tmp_path: Path, items_db: Path, harness_factory) -> None:
    """Issue 13 item 10: rows captured with cursor values ahead of the clock mean the
    application's clock stepped back; rows written now would sort below the watermark.
    `status` says so, with the remedy, and the warning clears once the clock passes it."""
    from datetime import UTC, datetime

    from edge_agent.runtime.status import build_status, problems
    from tests.conftest import NOW_MS

    ahead = datetime.fromtimestamp((NOW_MS + 3_600_000) / 1000, UTC)  # an hour ahead
    con = sqlite3.connect(items_db)
    with con:
        con.execute("INSERT INTO items (id, name, qty, updated_at, is_deleted) "
                    "VALUES (1, 'a', 1, ?, 0)", (ahead.strftime("%Y-%m-%dT%H:%M:%S.000Z"),))
    con.close()
    h = harness_factory(ts_config(tmp_path, items_db))
    h.step(0.1)
    found = problems(build_status(h.cfg, h.agent.state))
    assert any("ahead of the clock" in p and "edge-agent snapshot --table items" in p
               for p in found), found
    h.clock.advance(2 * 3600)  # the clock is right again and has passed the watermark
    h.step(0.1)
    assert not any("ahead of the clock" in p for p in problems(build_status(h.cfg, h.agent.state)))
