"""The application's WAL keeps checkpointing while the daemon captures: the agent neither
pins a read snapshot nor writes transactions so large that the WAL file grows with the
data (SQLite's auto-checkpoint resets it at 1000 pages, about 4 MiB, and a WAL file
never shrinks by itself, so any peak stays on the application's disk)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, agent_env, config_dict, run_cli
from tests.lake import assert_exact
from tests.runtime.agent_process import WAIT, AgentProcess, install_config, lake_row_count

# The application: 1 KiB rows, 20 per transaction, in its own process.
WRITER = """
import sqlite3, sys, time
db, rows, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
con = sqlite3.connect(db, isolation_level=None, timeout=30)
for first in range(0, rows, 20):
    con.execute("BEGIN IMMEDIATE")
    con.executemany("INSERT INTO readings (sensor, payload) VALUES (?, randomblob(1024))",
                    [(f"s{i}",) for i in range(first, min(first + 20, rows))])
    con.execute("COMMIT")
    time.sleep(pause)
con.close()
print(rows)
"""
ROWS = 40_000  # about 41 MB of row data (twice that through the WAL, with the change log)
WAL_BOUND = 8 * 1024**2
READINGS = {"readings": ["id"]}


def wal_size(db: Path) -> int:
    try:
        return (db.parent / (db.name + "-wal")).stat().st_size
    except FileNotFoundError:
        return 0


def write_and_sample(db: Path, rows: int, pause: float) -> tuple[int, list[int]]:
    """Run the application's writer; the WAL's size sampled while it writes."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(rows), str(pause)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT, env=agent_env())
    sizes = []
    try:
        while writer.poll() is None:
            sizes.append(wal_size(db))
            time.sleep(0.01)
        out, _ = writer.communicate(timeout=WAIT)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate()
    assert writer.returncode == 0
    return int(out), sizes


def config_for(tmp_path: Path, db: Path) -> Path:
    return install_config(tmp_path, config_dict(
        tmp_path, db, ["readings"], buffer={"max_memory": "4MiB", "spool_quota": "256MiB"}))


def test_wal_stays_bounded_under_continuous_writes_while_the_daemon_captures(
        tmp_path: Path, app_db: Path) -> None:
    config = config_for(tmp_path, app_db)
    with AgentProcess(config) as agent:
        agent.wait_event("started")

        written, sizes = write_and_sample(app_db, ROWS, pause=0.005)

        assert agent.captured() > 0, "the daemon captured while the application wrote"
        flushed = run_cli("flush", "--config", str(config), "--timeout", "120")
        assert flushed.returncode == 0, flushed.stderr
        agent.send(signal.SIGTERM)
        assert agent.wait_exit() == 0, agent.log_tail()
    assert len(sizes) >= 20, "the WAL was sampled throughout the load"
    assert written * 1024 > 4 * WAL_BOUND
    assert max(sizes) < WAL_BOUND, f"the WAL grew to {max(sizes)} bytes"
    assert_exact(tmp_path / "lake", app_db, READINGS, written)


def test_wal_stays_bounded_while_the_daemon_catches_up_a_backlog(tmp_path: Path,
                                                                 app_db: Path) -> None:
    # The agent was down (an upgrade, a reboot, a full spool): the change log holds a
    # backlog that the application wrote with its WAL checkpointing normally.
    config = config_for(tmp_path, app_db)
    written, before = write_and_sample(app_db, ROWS, pause=0.0)
    assert written * 1024 > 4 * WAL_BOUND
    assert max(before) < WAL_BOUND, "SQLite alone keeps the WAL small"

    sizes = []
    with AgentProcess(config) as agent:
        def caught_up() -> bool:
            sizes.append(wal_size(app_db))
            return lake_row_count(tmp_path / "lake") == written

        agent.wait_for(caught_up, "the backlog shipped to the lake", timeout=2 * WAIT)
        agent.send(signal.SIGTERM)
        assert agent.wait_exit() == 0, agent.log_tail()
    assert max(sizes) < WAL_BOUND, (f"the WAL grew to {max(sizes)} bytes while the agent "
                                    "caught up (it pruned the change log as: "
                                    f"{[e['pruned'] for e in agent.named('cycle')]})")
    assert_exact(tmp_path / "lake", app_db, READINGS, written)


def test_a_wal_database_on_a_read_only_mount_is_explained_with_the_fix(tmp_path: Path) -> None:
    """Issue 12 item 5: SQLite's bare "unable to open database file" becomes why and what
    to do. The read-only bind mount lives in a private mount namespace (unshare)."""
    import os
    import sqlite3

    from tests.children import agent_cmd
    from tests.conftest import write_config

    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    con = sqlite3.connect(src / "app.db")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, at TEXT)")
    con.close()  # the last connection removes -wal and -shm
    data = config_dict(tmp_path, ro / "app.db",
                       [{"name": "t", "mode": "timestamp", "cursor": "at"}])
    config = write_config(tmp_path, data)
    mount = (f"mount --bind {src} {ro} && mount -o remount,ro,bind {ro} && exec "
             + " ".join(agent_cmd("flush", "--config", str(config), "--timeout", "5")))
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    done = subprocess.run([*unshare, "sh", "-c", mount], capture_output=True, text=True,
                          env=agent_env(), timeout=120, check=False)
    assert done.returncode != 0
    assert "is in WAL mode and its directory" in done.stderr, done.stderr
    assert f"ReadWritePaths={ro}" in done.stderr
