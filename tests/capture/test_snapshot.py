"""Initial snapshot: existing rows as op "r", paged, resumable, meeting the change stream."""

from __future__ import annotations

import collections
import json
import sqlite3
from pathlib import Path

from edge_agent.capture import snapshot
from tests.conftest import WORKLOAD_TABLES, make_config, run_workload, start_workload
from tests.lake import assert_exact, read_changes


def prefill(db: Path, rows: int) -> None:
    con = sqlite3.connect(db)
    con.executemany(
        "INSERT INTO readings (sensor, value, big, payload, note) VALUES (?, ?, ?, ?, ?)",
        [(f"s{i % 7}", i / 3, 2**62 + i, bytes([i % 256]) * (i % 50), "ü" * (i % 3))
         for i in range(rows)],
    )
    con.commit()
    con.close()


def test_existing_rows_are_captured_as_r_in_pages(tmp_path: Path, app_db: Path,
                                                  harness_factory) -> None:
    prefill(app_db, 5000)
    run_workload(app_db, seed=41, transactions=100)  # the other tables too, before the agent
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES), source={"page_rows": 300})
    h = harness_factory(cfg)
    assert h.flush().ok
    changes = assert_exact(tmp_path / "lake", app_db, WORKLOAD_TABLES, None)
    assert {c["_op"] for c in changes} == {"r"}
    per_table = collections.Counter(c["_table"] for c in changes)
    con = sqlite3.connect(app_db)
    for table in WORKLOAD_TABLES:
        quoted = '"' + table.replace('"', '""') + '"'
        assert per_table[table] == con.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
    jobs = h.agent.pipelines["app"].capture.snapshot_jobs()
    assert all(j.done_ms and j.progress == 1.0 for j in jobs)
    assert max(j.rows_done for j in jobs) >= 5000


def test_snapshot_with_concurrent_writes_replays_exactly(tmp_path: Path, app_db: Path,
                                                         harness_factory) -> None:
    prefill(app_db, 20000)
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES), source={"page_rows": 200})
    h = harness_factory(cfg)
    app = start_workload(app_db, seed=42, transactions=600, pause=0.001)
    steps = 0
    while app.poll() is None:
        h.step(advance=0.3)
        steps += 1
    app.communicate()
    assert h.flush().ok
    changes = assert_exact(tmp_path / "lake", app_db, WORKLOAD_TABLES, None)
    ops = {c["_op"] for c in changes}
    assert {"r", "c", "u", "d"} <= ops
    r_positions = [c["_pos"] for c in changes if c["_op"] == "r"]
    other = [c["_pos"] for c in changes if c["_op"] != "r"]
    assert min(other) < max(r_positions), "changes interleaved with the snapshot pages"


def test_snapshot_resumes_after_a_crash_without_repeating_rows(tmp_path: Path, app_db: Path,
                                                               harness_factory) -> None:
    prefill(app_db, 3000)
    cfg = make_config(tmp_path, app_db, ["readings"],
                      source={"page_rows": 100}, buffer={"max_file_age": "1h"})
    h = harness_factory(cfg)
    h.agent.step(h.clock.monotonic(), drain_until=h.clock.monotonic())  # triggers only
    capture = h.agent.pipelines["app"].capture
    for _ in range(10):
        capture.snapshot_step(h.clock.wall_ms())
    job = snapshot.pending(capture._changelog())[0]
    assert 0 < job.rows_done < 3000
    h.restart()  # crash mid-snapshot
    assert h.flush().ok
    changes = read_changes(tmp_path / "lake")
    keys = [c["values"]["id"] for c in changes if c["_op"] == "r"]
    assert sorted(keys) == list(range(1, 3001))
    assert_exact(tmp_path / "lake", app_db, {"readings": ["id"]}, 3000)


def test_snapshot_never_skips_existing_rows(tmp_path: Path, app_db: Path,
                                            harness_factory) -> None:
    prefill(app_db, 50)
    h = harness_factory(make_config(tmp_path, app_db, ["readings"],
                                    source={"snapshot": "never"}))
    con = sqlite3.connect(app_db)
    h.step()
    con.execute("UPDATE readings SET value = 0 WHERE id = 1")
    con.commit()
    assert h.flush().ok
    assert [c["_op"] for c in read_changes(tmp_path / "lake")] == ["u"]


def test_snapshot_command_one_shot_and_status(tmp_path: Path, app_db: Path) -> None:
    from tests.conftest import config_dict, run_cli, write_config

    prefill(app_db, 700)
    config = write_config(tmp_path, config_dict(tmp_path, app_db, ["readings"],
                                                source={"snapshot": "never"}))
    assert run_cli("triggers", "install", "--config", str(config)).returncode == 0
    done = run_cli("snapshot", "--config", str(config), "--table", "readings")
    assert done.returncode == 0, done.stderr
    assert "snapshot complete" in done.stdout
    assert_exact(tmp_path / "lake", app_db, {"readings": ["id"]}, 700)
    status = run_cli("status", "--config", str(config), "--json")
    table = json.loads(status.stdout)["sources"][0]["tables"][0]
    assert table["snapshot"]["finished"] and table["snapshot"]["rows_done"] == 700
    unknown = run_cli("snapshot", "--config", str(config), "--table", "nope")
    assert unknown.returncode != 0 and "'nope' is not in any source" in unknown.stderr
