"""`edge-agent demo`: the whole pipeline on embedded defaults, no servers needed.

A small demo application writes sensor readings and alarms into a SQLite file,
the real daemon (`edge-agent run`, in a child process) captures them into a
local lake directory, and the lake is summarised with DuckDB and checked
against the application's tables.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from edge_agent.errors import EXIT_FAILURE, EXIT_OK

CONFIG = """\
# Written by `edge-agent demo`; reuse it: edge-agent status --config {dir}/config.toml
[agent]
device_id = "demo-gw"
state_dir = "state"
poll_interval = "1s"

[buffer]
max_file_age = "2s"

[[sources]]
name = "app"
path = "app.db"
tables = ["readings", "alarms"]

[sink]
kind = "dir"
path = "lake"
create = true
"""


def run_demo(workdir: Path, seconds: float) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.toml"
    config.write_text(CONFIG.format(dir=workdir))
    db = workdir / "app.db"
    create_app_db(db)
    print(f"demo: application database {db}, lake {workdir / 'lake'}")
    # The demo's own commands log only problems: their output is the demo's story.
    quiet = dict(os.environ, EDGE_AGENT__AGENT__LOG_LEVEL="warning")
    # Capture starts where the triggers start: install them before the app writes.
    installed = subprocess.run(
        [sys.executable, "-m", "edge_agent", "triggers", "install", "--config", str(config)],
        check=False,
        env=quiet,
    )
    if installed.returncode != 0:
        return installed.returncode
    env = dict(os.environ, EDGE_AGENT__AGENT__LOG_FORMAT="json")
    log_file = (workdir / "agent.log").open("ab")
    control_socket = workdir / "state" / "control.sock"
    control_socket.unlink(missing_ok=True)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        stdout=log_file,
        stderr=log_file,
        env=env,
    )
    try:
        wait_until_started(daemon, control_socket)
        print(f"demo: the app writes for {seconds:.0f}s while the agent captures ...")
        written = run_app(db, seconds)
        print(f"demo: the app made {written} changes; stopping the agent (final flush)")
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=120)
        log_file.close()
    if code != 0:
        print(f"demo: the agent exited with {code}; see {workdir / 'agent.log'}")
        return EXIT_FAILURE
    flushed = subprocess.run(
        [sys.executable, "-m", "edge_agent", "flush", "--config", str(config)],
        check=False,
        env=quiet,
    )
    if flushed.returncode != 0:
        return flushed.returncode
    return EXIT_OK if summarise(workdir / "lake", db) else EXIT_FAILURE


def wait_until_started(daemon: subprocess.Popen[bytes], control_socket: Path) -> None:
    """Until the daemon has started (or exited): it handles SIGTERM with a final flush
    only from then on, and its control socket appears after its signal handlers are
    installed. On a slow CPU (an emulated one, a small board) its imports take longer
    than a short demo, and an early SIGTERM would end it by the default action."""
    deadline = time.monotonic() + 120
    while not control_socket.exists() and daemon.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def create_app_db(db: Path) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    con.executescript("""
        CREATE TABLE IF NOT EXISTS readings (
            id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, value REAL, unit TEXT,
            taken_at TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS alarms (
            id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, level TEXT, message TEXT,
            acked BOOLEAN NOT NULL DEFAULT 0);
    """)
    con.close()


def run_app(db: Path, seconds: float) -> int:
    """A toy gateway application: batches of inserts, some updates and deletes."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 5000")
    changes = 0
    tick = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tick += 1
        with con:
            con.execute("BEGIN")
            for s in range(20):
                con.execute(
                    "INSERT INTO readings (sensor, value, unit, taken_at) "
                    "VALUES (?, ?, '°C', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    (f"s{s:02d}", 20 + (tick * 7 + s) % 13 / 3),
                )
            changes += 20
            if tick % 5 == 0:
                con.execute(
                    "INSERT INTO alarms (sensor, level, message) VALUES (?, ?, ?)",
                    (f"s{tick % 20:02d}", "warn", f"threshold crossed at tick {tick}"),
                )
                changes += 1
            if tick % 10 == 0:
                changes += con.execute("UPDATE alarms SET acked = 1 WHERE acked = 0").rowcount
                changes += con.execute(
                    "DELETE FROM readings WHERE id IN (SELECT id FROM readings ORDER BY id LIMIT 5)"
                ).rowcount
            con.execute("COMMIT")
        time.sleep(0.05)
    con.close()
    return changes


def summarise(lake: Path, db: Path) -> bool:
    import duckdb

    files = sorted(lake.glob("bronze/*/*/*/*.parquet"))
    print(f"demo: {len(files)} Parquet files in {lake / 'bronze'}")
    if not files:
        return False
    con = duckdb.connect()
    glob = str(lake / "bronze" / "*" / "*" / "*" / "*.parquet")
    con.execute(
        f"CREATE VIEW bronze AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
        "union_by_name = true)"
    )
    print("demo: changes in the lake by table and operation")
    for table, op, n in con.execute(
        "SELECT _table, _op, count(*) FROM bronze GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        print(f"  {table:10s} {op}  {n}")
    app = sqlite3.connect(db)
    ok = True
    for table in ("readings", "alarms"):
        lake_rows = con.execute(
            "SELECT count(*) FROM (SELECT _op FROM bronze WHERE _table = ? "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY _pos DESC) = 1) "
            "WHERE _op != 'd'",
            [table],
        ).fetchall()[0][0]
        app_rows = app.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        match = "matches" if lake_rows == app_rows else "DOES NOT match"
        ok = ok and lake_rows == app_rows
        print(
            f"demo: {table}: {app_rows} rows in the app, {lake_rows} rebuilt from the lake "
            f"({match})"
        )
    app.close()
    return ok
