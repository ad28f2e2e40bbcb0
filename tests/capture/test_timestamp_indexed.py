"""Timestamp mode with a declared cursor_format: pages on the raw, indexed column, read
into Arrow. The same guarantees as the normalised path (tests/capture/test_timestamp.py),
on real SQLite files, and values that do not fit land exactly as the app stored them."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.capture.timestamp import TimestampCapture
from edge_agent.config_sources import SourceConfig, TimestampTable
from tests.capture import ts_app
from tests.conftest import (
    agent_cmd,
    agent_env,
    config_dict,
    make_config,
    run_cli,
    write_config,
)
from tests.lake import read_changes, replay

TS_TABLE = {"name": "items", "mode": "timestamp", "cursor": "updated_at", "key": ["id"],
            "lag": "5s", "deleted_flag": "is_deleted", "cursor_format": "epoch_ms"}


@pytest.fixture
def epoch_db(tmp_path: Path) -> Path:
    return ts_app.vendor_db(tmp_path, ts_app.EPOCH_SCHEMA)


def ts_config(tmp_path: Path, db: Path, **table: object):
    return make_config(tmp_path, db, [{**TS_TABLE, **table}], source={"page_rows": 50})


def assert_once_each(changes: list[dict[str, Any]]) -> None:
    pairs = [(c["values"]["id"], c["_ts_ms"]) for c in changes]
    assert len(pairs) == len(set(pairs)), "a (key, cursor) version was emitted twice"


def test_concurrent_writer_lands_exactly(tmp_path: Path, epoch_db: Path, harness_factory) -> None:
    h = harness_factory(ts_config(tmp_path, epoch_db))
    ts_app.write_while_stepping(h, epoch_db, 5, 400, "epoch_ms")
    assert h.flush().ok
    changes = read_changes(tmp_path / "lake")
    assert replay(changes)["items"] == ts_app.live_rows(epoch_db)
    assert_once_each(changes)
    assert all(c["_ts_ms"] == c["values"]["updated_at"] for c in changes)


def test_equal_cursor_values_across_pages_are_all_captured(tmp_path: Path, epoch_db: Path,
                                                           harness_factory) -> None:
    con = sqlite3.connect(epoch_db)
    with con:
        con.executemany("INSERT INTO items (id, name, updated_at) VALUES (?, 'same', ?)",
                        [(i, 1748779200000) for i in range(1, 238)])
    h = harness_factory(ts_config(tmp_path, epoch_db))  # 50 rows a page
    assert h.flush().ok
    assert sorted(c["values"]["id"] for c in read_changes(tmp_path / "lake")) == list(range(1, 238))


def test_late_commit_inside_the_lag_window_is_captured_once(tmp_path: Path, epoch_db: Path,
                                                            harness_factory) -> None:
    con = sqlite3.connect(epoch_db)
    with con:
        con.execute("INSERT INTO items (id, name, updated_at) VALUES (1, 'a', 1748779210000)")
    h = harness_factory(ts_config(tmp_path, epoch_db))
    h.step()
    with con:
        con.execute("INSERT INTO items (id, name, updated_at) VALUES (2, 'late', 1748779207000)")
        con.execute("INSERT INTO items (id, name, updated_at) VALUES (3, 'too late', "
                    "1748779201000)")  # outside the 5 s window: documented as not seen
    h.step()
    h.step()
    assert h.flush().ok
    assert sorted(c["values"]["id"] for c in read_changes(tmp_path / "lake")) == [1, 2]


def test_epoch_seconds_and_values_of_other_types(tmp_path: Path, harness_factory) -> None:
    """epoch_s: integers and reals are seconds; text in the column is not selected."""
    db = tmp_path / "s.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, updated_at)")
        con.executemany("INSERT INTO items VALUES (?, ?)",
                        [(1, 1748779200), (2, 1748779200.25), (3, "2025-06-01T12:00:00Z"),
                         (4, None), (5, 1748779201)])
    h = harness_factory(make_config(tmp_path, db, [{**TS_TABLE, "cursor_format": "epoch_s",
                                                    "deleted_flag": ""}]))
    assert h.flush().ok
    got = {c["values"]["id"]: c["_ts_ms"] for c in read_changes(tmp_path / "lake")}
    assert got == {1: 1748779200000, 2: 1748779200250, 5: 1748779201000}


ODD = {  # id -> (column, a value its declared type does not hold), one per page of 100
    50: ("n", "fifty"), 150: ("amount", 2**60), 250: ("seen", 20250601),
    350: ("raw", "text in a blob"), 450: ("ok", 2), 550: ("seen", 1.5), 650: ("x", "abc"),
    750: ("n", 3.5), 850: ("amount", 2**53 + 1), 950: ("raw", 5),
}
ODD_COLUMNS = ["id", "n", "amount", "seen", "raw", "ok", "label", "x", "updated_at"]


def odd_table(db: Path) -> None:
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER, amount NUMERIC, "
                    "seen DATETIME, raw BLOB, ok BOOLEAN, label TEXT, x REAL, updated_at INTEGER)")
        for i in range(1, 1001):
            row = dict(zip(ODD_COLUMNS, (i, i, i * 1.5, "2025-06-01", b"\x00\x01", i % 2,
                                         f"l{i}", i / 3, 1748779200000 + i), strict=True))
            if i in ODD:
                row[ODD[i][0]] = ODD[i][1]
            con.execute("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", list(row.values()))
    con.close()


def test_values_that_do_not_fit_land_exactly_as_with_the_normalised_path(
        tmp_path: Path, harness_factory) -> None:
    """The Arrow read infers one type per column; a value that does not fit its column
    (any SQLite column holds anything) must land as it does through sqlite3: NULL in
    its column and the exact value in _unfit. Same table, both formats, same lake rows."""
    db = tmp_path / "odd.db"
    odd_table(db)
    lakes = {}
    for fmt in ("auto", "epoch_ms"):
        sub = tmp_path / fmt
        sub.mkdir()
        h = harness_factory(make_config(sub, db, [{**TS_TABLE, "cursor_format": fmt,
                                                   "deleted_flag": ""}],
                                        source={"page_rows": 100}))
        assert h.flush().ok
        lakes[fmt] = {c["values"]["id"]: (c["values"], c["_ts_ms"])
                      for c in read_changes(sub / "lake")}
    assert lakes["epoch_ms"] == lakes["auto"]
    assert len(lakes["auto"]) == 1000
    stored = {i: lakes["auto"][i][0][column] for i, (column, _) in ODD.items()}
    assert stored == {i: value for i, (_, value) in ODD.items()}


def _both_formats(tmp_path: Path, db: Path, harness_factory, table: dict[str, Any],
                  page_rows: int) -> dict[str, list[tuple[Any, Any]]]:
    lakes = {}
    for fmt in ("auto", "epoch_ms"):
        sub = tmp_path / fmt
        sub.mkdir()
        h = harness_factory(make_config(sub, db, [{**table, "cursor_format": fmt}],
                                        source={"page_rows": page_rows}))
        assert h.flush().ok
        lakes[fmt] = sorted(((c["values"], c["_unfit"]) for c in read_changes(sub / "lake")),
                            key=repr)
    return lakes


def test_text_in_numeric_affinity_columns_is_never_read_as_a_number(
        tmp_path: Path, harness_factory) -> None:
    """Review of issue 14: JSON, STRING, NUMERIC, DECIMAL columns (NUMERIC affinity, float
    in bronze) keep text and blobs as stored; the Arrow read once cast them to 0.0 or
    12.0. Such pages now go through sqlite3 and land as with the normalised path."""
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, doc JSON, name STRING, "
                    "p NUMERIC, d DECIMAL(10,2), updated_at INTEGER)")
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", [
            (1, '{"temp": 21.5}', "pump-7", "3.25 kPa", x := b"12", 1748779200001),
            (2, "", "é", "abc", "0x10", 1748779200002),
            (3, 1.5, 7, 2, 3.5, 1748779200003),
        ])
    con.close()
    del x
    table = {"name": "items", "mode": "timestamp", "cursor": "updated_at", "key": ["id"]}
    lakes = _both_formats(tmp_path, db, harness_factory, table, 100)
    assert lakes["epoch_ms"] == lakes["auto"]
    first = json.loads(next(u for v, u in lakes["auto"] if v["id"] == 1))
    assert first["doc"]["v"] == '{"temp": 21.5}' and first["name"]["v"] == "pump-7"


def test_a_text_key_in_a_numeric_affinity_column_pages_through_equal_cursors(
        tmp_path: Path, harness_factory) -> None:
    """A UUID primary key (NUMERIC affinity, text values) and ten rows on one cursor value
    across pages of three: every row lands once, with its own key (the Arrow read made
    every key 0.0 and polled the first page forever)."""
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE items (uuid UUID PRIMARY KEY, v INTEGER, updated_at INTEGER)")
        con.executemany("INSERT INTO items VALUES (?, ?, 1748779200000)",
                        [(f"id-{i:02d}", i) for i in range(10)])
    con.close()
    table = {"name": "items", "mode": "timestamp", "cursor": "updated_at"}
    lakes = _both_formats(tmp_path, db, harness_factory, table, 3)
    assert lakes["epoch_ms"] == lakes["auto"]
    assert sorted(v["v"] for v, _ in lakes["auto"]) == list(range(10))
    assert all(json.loads(u)["uuid"]["v"] == f"id-{v['v']:02d}" for v, u in lakes["auto"])


def test_only_pages_with_a_value_that_does_not_fit_leave_the_arrow_read(tmp_path: Path) -> None:
    db = tmp_path / "odd.db"
    odd_table(db)
    source = SourceConfig(name="app", path=db, tables=())
    capture = TimestampCapture(source, TimestampTable("items", "updated_at", ("id",),
                                                      cursor_format="epoch_ms"))
    capture.open()
    try:
        after, via_arrow = None, []
        for _ in range(10):
            polled = capture.poll(None, after, 100)
            via_arrow.append(polled.arrow is not None)
            after = polled.resume
    finally:
        capture.close()
    assert via_arrow == [False] * 10  # each page of 100 holds one odd value
    clean = tmp_path / "clean.db"
    con = sqlite3.connect(clean)
    with con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, ok BOOLEAN, seen DATETIME, "
                    "amount NUMERIC, updated_at INTEGER)")
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)",
                        [(i, i % 2, "2025-06-01", i * 2, 1748779200000 + i) for i in range(50)])
    capture = TimestampCapture(SourceConfig(name="c", path=clean, tables=()), TimestampTable(
        "items", "updated_at", ("id",), cursor_format="epoch_ms"))
    capture.open()
    try:
        polled = capture.poll(None, None, 100)
    finally:
        capture.close()
    assert polled.arrow is not None and polled.arrow.column("ok").to_pylist()[:2] == [False, True]
    assert polled.arrow.column("amount").type == "double"


def test_a_page_read_holds_no_snapshot_open(tmp_path: Path, epoch_db: Path) -> None:
    """Between pages nothing stays open: the application's WAL checkpoint completes."""
    ts_app.run(str(epoch_db), 3, 200, ts_app.EPOCH_NOW)
    source = SourceConfig(name="app", path=epoch_db, tables=())
    capture = TimestampCapture(source, TimestampTable("items", "updated_at", ("id",),
                                                      cursor_format="epoch_ms"))
    capture.open()
    try:
        polled = capture.poll(None, None, 50)
        assert polled.arrow is not None and polled.arrow.num_rows == 50
        capture.prefetch(None, polled.resume, 50)  # a read ahead, taken or not
        capture.poll(None, polled.resume, 50)
        ts_app.run(str(epoch_db), 4, 50, ts_app.EPOCH_NOW)
        app = sqlite3.connect(epoch_db)
        busy, _, _ = app.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        app.close()
        assert busy == 0
        assert (epoch_db.parent / (epoch_db.name + "-wal")).stat().st_size == 0
    finally:
        capture.close()


def test_clock_stepped_back_is_said_in_status(tmp_path: Path, epoch_db: Path,
                                              harness_factory) -> None:
    from edge_agent.runtime.status import build_status, problems
    from tests.conftest import NOW_MS

    con = sqlite3.connect(epoch_db)
    with con:
        con.execute("INSERT INTO items (id, name, updated_at) VALUES (1, 'a', ?)",
                    (NOW_MS + 3_600_000,))
    h = harness_factory(ts_config(tmp_path, epoch_db))
    h.step(0.1)
    assert any("ahead of the clock" in p for p in problems(build_status(h.cfg, h.agent.state)))


def test_text_in_a_declared_format_cursor_column_is_said_in_status(
        tmp_path: Path, epoch_db: Path, harness_factory) -> None:
    """Review of issue 14: a declared format reads numbers only; a row whose cursor holds
    text is never captured. The daemon says so in status (table, value, fix), not only
    `config check`; the note clears once no such row is left."""
    from edge_agent.runtime.status import build_status, problems

    con = sqlite3.connect(epoch_db)
    with con:
        con.execute("INSERT INTO items (id, name, updated_at) VALUES (1, 'a', 1748779200000)")
        con.execute("INSERT INTO items (id, name, updated_at) VALUES (2, 'b', "
                    "'2025-06-01T12:00:00Z')")
    h = harness_factory(ts_config(tmp_path, epoch_db))
    h.step(0.1)
    said = [p for p in problems(build_status(h.cfg, h.agent.state)) if "never captured" in p]
    assert said and "2025-06-01T12:00:00Z" in said[0] and "items" in said[0]
    assert 'cursor_format = "auto"' in said[0]
    with con:
        con.execute("UPDATE items SET updated_at = 1748779200005 WHERE id = 2")
    con.close()
    h.step(400)  # the check runs again after a while
    assert not [p for p in problems(build_status(h.cfg, h.agent.state)) if "never captured" in p]


@pytest.mark.slow
def test_sigkill_during_a_load_with_updates_loses_and_repeats_nothing(
        tmp_path: Path, epoch_db: Path) -> None:
    """A one-shot load killed at random moments while the application keeps updating
    rows: the lake ends with every row's final version, each (key, cursor) once."""
    con = sqlite3.connect(epoch_db)
    with con:
        con.executemany("INSERT INTO items (id, name, qty, updated_at) VALUES (?, 'x', ?, ?)",
                        [(i, i, 1748779200000 + i // 3) for i in range(1, 40_001)])
    con.close()
    data = config_dict(tmp_path, epoch_db, [{**TS_TABLE, "lag": "2s"}],
                       buffer={"max_file_bytes": "64KiB", "row_group_bytes": "16KiB"})
    config = write_config(tmp_path, data)
    app = ts_app.start(epoch_db, 8, 300, "epoch_ms")
    rng = random.Random(14)
    kills = 0
    while app.poll() is None or kills < 6:
        flush = subprocess.Popen(agent_cmd("flush", "--config", str(config)), env=agent_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.2))
        flush.send_signal(signal.SIGKILL)
        flush.wait()
        kills += 1
    assert app.returncode == 0
    done = run_cli("flush", "--config", str(config), "--timeout", "120")
    assert done.returncode == 0, done.stderr
    changes = read_changes(tmp_path / "lake")
    assert_once_each(changes)
    assert replay(changes)["items"] == ts_app.live_rows(epoch_db)


def test_invalid_utf8_text_is_not_passed_on_as_a_string(tmp_path: Path) -> None:
    """The driver checks no UTF-8: such a page goes the sqlite3 way, whatever that does
    (today: the source's error), never a broken string in the lake."""
    db = tmp_path / "bad.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT, updated_at INTEGER)")
        con.execute("INSERT INTO items VALUES (1, CAST(X'FF41' AS TEXT), 1748779200000)")
    outcomes = []
    for fmt in ("auto", "epoch_ms"):
        capture = TimestampCapture(SourceConfig(name="b", path=db, tables=()), TimestampTable(
            "items", "updated_at", ("id",), cursor_format=fmt))
        capture.open()
        try:
            polled = capture.poll(None, None, 10)
            outcomes.append(("rows", polled.arrow is None))
        except Exception as exc:  # the outcome compared: the same error either way
            outcomes.append((type(exc).__name__, "UTF-8" in str(exc)))
        finally:
            capture.close()
    assert outcomes[0] == outcomes[1]
    assert outcomes[1] != ("rows", False)


@pytest.mark.parametrize(("values", "fmt", "said"), [
    ([1748779200000, "2025-06-01T12:00:00Z"], "epoch_ms", "'2025-06-01T12:00:00Z': such rows"),
    ([1748779200, 1748779201], "epoch_ms", "looks like epoch_s"),
    ([1748779200000], "epoch_s", "looks like epoch_ms"),
])
def test_config_check_says_when_the_stored_values_do_not_match_the_format(
        tmp_path: Path, values: list[object], fmt: str, said: str) -> None:
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, updated_at)")
        con.executemany("INSERT INTO items (updated_at) VALUES (?)", [(v,) for v in values])
    con.close()
    entry = {"name": "items", "mode": "timestamp", "cursor": "updated_at", "cursor_format": fmt}
    config = write_config(tmp_path, config_dict(tmp_path, db, [entry]))
    done = run_cli("config", "check", str(config))
    assert done.returncode == 2
    assert said in done.stderr and "cursor_format" in done.stderr, done.stderr
    good = {**entry, "cursor_format": "epoch_ms" if "epoch_ms" in said else "epoch_s"}
    if "such rows" not in said:  # declaring the unit it suggests passes
        config = write_config(tmp_path, config_dict(tmp_path, db, [good]))
        assert run_cli("config", "check", str(config)).returncode == 0


@pytest.mark.parametrize("fmt", ["auto", "epoch_ms"])
def test_a_page_across_midnight_goes_to_both_date_partitions(
        tmp_path: Path, epoch_db: Path, harness_factory, fmt: str) -> None:
    """A page's rows are in cursor order: one that stays on one day is one piece, one
    that crosses midnight is split there (every file holds one day only)."""
    from datetime import UTC, datetime

    from tests.lake import lake_files

    midnight = 1748822400000  # 2025-06-02T00:00:00Z
    con = sqlite3.connect(epoch_db)
    with con:
        con.executemany("INSERT INTO items (id, name, updated_at) VALUES (?, 'x', ?)",
                        [(i, midnight - 120_000 + i * 1000) for i in range(1, 241)])
    h = harness_factory(ts_config(tmp_path, epoch_db, cursor_format=fmt))  # 50 rows a page
    assert h.flush().ok
    days = {}
    for change in read_changes(tmp_path / "lake"):
        day = datetime.fromtimestamp(change["_ts_ms"] / 1000, UTC).date().isoformat()
        days.setdefault(change["file"], set()).add(day)
    assert all(len(d) == 1 for d in days.values()), days
    partitions = {p.parent.name for p in lake_files(tmp_path / "lake")}
    assert partitions == {"date=2025-06-01", "date=2025-06-02"}
    assert len(read_changes(tmp_path / "lake")) == 240


def test_epoch_ms_reals_are_rounded_to_the_millisecond(tmp_path: Path, harness_factory) -> None:
    """A real in an epoch_ms column (the Arrow read then sees doubles): that page goes
    through sqlite3, the value rounded half up, in order with the integers."""
    db = tmp_path / "ms.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, updated_at INTEGER)")
        con.executemany("INSERT INTO items VALUES (?, ?)",
                        [(1, 1748779200000), (2, 1748779200000.5), (3, 1748779200001.25),
                         (4, 1748779200002)])
    h = harness_factory(make_config(tmp_path, db, [{**TS_TABLE, "deleted_flag": ""}]))
    assert h.flush().ok
    got = [(c["values"]["id"], c["_ts_ms"]) for c in read_changes(tmp_path / "lake")]
    assert got == [(1, 1748779200000), (2, 1748779200001), (3, 1748779200001),
                   (4, 1748779200002)]


def test_the_state_keeps_only_keys_and_cursors_of_the_newest_page_and_no_read_ahead(
        tmp_path: Path, harness_factory) -> None:
    """Review of issue 14: the newest page stays in the cursor state until the next one,
    and a page read ahead until the next turn; both are outside the writer's budget, so
    the state keeps only the page's keys and cursor values (copies of their own) and a
    read ahead is let go when the agent leaves the table."""
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT, "
                    "updated_at INTEGER)")
        con.execute("CREATE INDEX items_at ON items(updated_at)")
        con.executemany("INSERT INTO items VALUES (?, ?, ?)",
                        [(i, "x" * 1000, 1748779200000 + i) for i in range(1, 2001)])
    con.close()
    table = {"name": "items", "mode": "timestamp", "cursor": "updated_at",
             "cursor_format": "epoch_ms"}
    h = harness_factory(make_config(tmp_path, db, [table], source={"page_rows": 500}))
    assert h.flush().ok
    pipes = [p for p in h.agent.pipelines.values() if hasattr(p, "cursor")]
    assert pipes
    for pipe in pipes:
        latest = pipe.cursor.latest
        assert latest is not None and not hasattr(latest.page, "batch")
        held = sum(a.nbytes for a in [*latest.page.keys, latest.page.cursors])
        assert held <= 16 * len(latest.page) + 64  # an int64 key and cursor, not the text
    capture = TimestampCapture(SourceConfig(name="app", path=db, tables=()), TimestampTable(
        "items", "updated_at", ("id",), cursor_format="epoch_ms"))
    capture.open()
    try:
        capture.prefetch(None, None, 500)
        assert capture.arrow._ahead is not None
        capture.drop_ahead()
        assert capture.arrow._ahead is None
        assert len(capture.poll(None, None, 500)) == 500  # still reads as before
    finally:
        capture.close()


def test_columns_named_like_the_reads_extras_are_read_by_position(
        tmp_path: Path, harness_factory) -> None:
    """Review of issue 14: the Arrow read adds _cursor, _raw and _misfit to its select
    list; a table whose key and soft-delete columns carry those names lands as with the
    normalised path."""
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    with con:
        con.execute('CREATE TABLE items ("_cursor" INTEGER PRIMARY KEY, "_raw" TEXT, '
                    '"_misfit" INTEGER, updated_at INTEGER)')
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?)",
                        [(i, f"r{i}", i % 3 == 0, 1748779200000 + i) for i in range(1, 11)])
    con.close()
    table = {"name": "items", "mode": "timestamp", "cursor": "updated_at",
             "deleted_flag": "_misfit"}
    lakes = _both_formats(tmp_path, db, harness_factory, table, 4)
    assert lakes["epoch_ms"] == lakes["auto"]
    assert sorted(v["_cursor"] for v, _ in lakes["auto"]) == list(range(1, 11))
