"""The real `edge-agent run` daemon against real SQLite files: signals, reload, systemd
notifications, file-event wake-ups, flush over the control socket and its log lines."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import config_dict, run_cli, write_config
from tests.lake import assert_exact, lake_files
from tests.runtime.agent_process import (
    AgentProcess,
    NotifySocket,
    insert_readings,
    install_config,
    lake_row_count,
    wait_until,
)

READINGS = {"readings": ["id"]}
BOTH = {"readings": ["id"], "events": ["id"]}


def lake_of(tmp_path: Path) -> Path:
    return tmp_path / "lake"


def test_sigterm_seals_open_buffers_and_ships_them_then_exits_0(tmp_path: Path,
                                                                 app_db: Path) -> None:
    # Files would only age out after an hour: only the final flush can seal them.
    config = install_config(tmp_path, config_dict(tmp_path, app_db, ["readings"],
                                                  buffer={"max_file_age": "1h"}))
    with AgentProcess(config) as agent:
        agent.wait_event("started")
        written = insert_readings(app_db, 300)
        agent.wait_captured(written)
        assert lake_files(lake_of(tmp_path)) == [], "nothing is due before the final flush"

        agent.send(signal.SIGTERM)

        assert agent.wait_exit() == 0, agent.log_tail()
        stopped = agent.named("stopped")
    assert stopped and stopped[-1]["pending_files"] == 0 and stopped[-1]["errors"] == []
    assert_exact(lake_of(tmp_path), app_db, READINGS, written)


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_during_a_slow_final_flush_exits_at_once_and_loses_nothing(
        tmp_path: Path, app_db: Path, second: signal.Signals) -> None:
    not_a_dir = tmp_path / "not-a-dir"
    not_a_dir.write_text("a regular file: the lake cannot be created under it\n")
    data = config_dict(tmp_path, app_db, ["readings"], buffer={"max_file_age": "1h"},
                       agent={"shutdown_timeout": "300s"}, sink={"path": str(not_a_dir / "lake")})
    config = install_config(tmp_path, data)
    with NotifySocket(tmp_path / "notify.sock") as notify, \
            AgentProcess(config, NOTIFY_SOCKET=str(notify.path)) as agent:
        agent.wait_event("started")
        written = insert_readings(app_db, 120)
        agent.wait_captured(written)

        agent.send(signal.SIGTERM)
        notify.wait_for(lambda m: ["STOPPING=1"] in m, "STOPPING=1")
        # The final flush has sealed the buffer and keeps retrying the unwritable sink.
        wait_until(lambda: sink_error(config) is not None, "the final flush failing to ship",
                   describe=agent.log_tail)

        agent.send(second)

        assert agent.wait_exit() != 0  # well before the 300s shutdown_timeout ends
    # The on-disk state is crash-safe: with the sink fixed, everything ships once.
    data["sink"]["path"] = str(lake_of(tmp_path))
    write_config(tmp_path, data)
    flushed = run_cli("flush", "--config", str(config))
    assert flushed.returncode == 0, flushed.stderr
    assert_exact(lake_of(tmp_path), app_db, READINGS, written)


def spooled_files(tmp_path: Path) -> int:
    con = sqlite3.connect(f"file:{tmp_path / 'state' / 'state.db'}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM files WHERE status = 'ready'").fetchone()[0])
    finally:
        con.close()


def sink_error(config: Path) -> str | None:
    shown = run_cli("status", "--config", str(config), "--json")
    report = json.loads(shown.stdout)
    error: str | None = report["sink"]["last_error"]
    # Exit 5 exactly when unhealthy, naming why on stderr (a failing sink is).
    assert shown.returncode == (5 if error else 0), shown.stderr
    assert error is None or f"unhealthy: sink dir: {error}" in shown.stderr
    if not report["spool"]["ready_files"]:
        return None
    return error


def test_sighup_with_a_new_table_reloads_and_captures_it(tmp_path: Path, app_db: Path) -> None:
    data = config_dict(tmp_path, app_db, ["readings"], buffer={"max_file_age": "1h"})
    config = install_config(tmp_path, data)
    with AgentProcess(config) as agent:
        agent.wait_event("started")
        before = insert_readings(app_db, 100)
        agent.wait_captured(before)

        data["sources"][0]["tables"] = ["readings", "events"]
        write_config(tmp_path, data)
        agent.send(signal.SIGHUP)
        reloaded = agent.wait_event("reloaded")
        agent.wait_for(lambda: triggers_verified(config), "capture triggers on the new table")

        after = insert_readings(app_db, 80, start=before)
        with_events = write_events(app_db, 40)
        flushed = run_cli("flush", "--config", str(config))
        assert flushed.returncode == 0, flushed.stderr
        assert agent.running()
        assert not agent.named("reload.rejected")
    assert reloaded["sources"] == ["app"]
    # Rows buffered under the old config were sealed on reload, not lost or repeated.
    assert_exact(lake_of(tmp_path), app_db, BOTH, before + after + with_events)


def triggers_verified(config: Path) -> bool:
    return run_cli("triggers", "verify", "--config", str(config)).returncode == 0


def write_events(db: Path, rows: int) -> int:
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO events (at, kind) VALUES (?, ?)",
                        [(1_732_530_000 + i, f"kind {i}") for i in range(rows)])
        con.execute("COMMIT")
    finally:
        con.close()
    return rows


def test_sighup_with_an_invalid_config_is_rejected_and_capture_goes_on(tmp_path: Path,
                                                                       app_db: Path) -> None:
    data = config_dict(tmp_path, app_db, ["readings"])
    config = install_config(tmp_path, data)
    with AgentProcess(config) as agent:
        agent.wait_event("started")
        before = insert_readings(app_db, 50)
        agent.wait_captured(before)

        config.write_text(config.read_text(encoding="utf-8").replace(
            'max_memory = "1MiB"', 'max_memory = "a lot"'), encoding="utf-8")
        agent.send(signal.SIGHUP)
        rejected = agent.wait_event("reload.rejected")

        after = insert_readings(app_db, 70, start=before)
        agent.wait_captured(before + after)
        wait_until(lambda: lake_row_count(lake_of(tmp_path)) == before + after,
                   "the rows written after the rejected reload in the lake",
                   describe=agent.log_tail)
        assert agent.running()
        assert not agent.named("reloaded")
    assert "buffer.max_memory" in rejected["error"] and "a lot" in rejected["error"]
    assert_exact(lake_of(tmp_path), app_db, READINGS, before + after)


def test_systemd_notify_ready_watchdog_reloading_and_stopping(tmp_path: Path,
                                                              app_db: Path) -> None:
    # An idle daemon (an hour between polls) must still ping the watchdog.
    config = install_config(tmp_path, config_dict(tmp_path, app_db, ["readings"],
                                                  agent={"poll_interval": "1h"}))
    with NotifySocket(tmp_path / "notify.sock") as notify, \
            AgentProcess(config, NOTIFY_SOCKET=str(notify.path),
                         WATCHDOG_USEC="2000000") as agent:
        notify.wait_for(lambda m: notify.index("READY=1") >= 0, "READY=1")
        ready = notify.index("READY=1")
        assert any(f.startswith("STATUS=") for f in notify.messages[ready]), notify.messages
        notify.wait_for(lambda m: pings_after(notify, ready) >= 3, "three WATCHDOG=1 pings")

        agent.send(signal.SIGHUP)
        notify.wait_for(lambda m: notify.index("READY=1", notify.index("RELOADING=1")) >= 0
                        and notify.index("RELOADING=1") >= 0, "RELOADING=1 then READY=1")
        reloading = notify.messages[notify.index("RELOADING=1")]
        assert any(f.startswith("MONOTONIC_USEC=") for f in reloading), reloading
        agent.wait_event("reloaded")

        agent.send(signal.SIGTERM)
        notify.wait_for(lambda m: ["STOPPING=1"] in m, "STOPPING=1")
        assert agent.wait_exit() == 0, agent.log_tail()


def pings_after(notify: NotifySocket, index: int) -> int:
    return sum(1 for m in notify.messages[index + 1:] if "WATCHDOG=1" in m)


def test_a_write_wakes_the_daemon_through_file_events(tmp_path: Path, app_db: Path) -> None:
    # Polling once an hour: only a file-system event on app.db-wal can start a cycle.
    config = install_config(tmp_path, config_dict(
        tmp_path, app_db, ["readings"], agent={"poll_interval": "1h"},
        buffer={"max_file_age": "200ms"}))
    with AgentProcess(config) as agent:
        agent.wait_event("started")
        shown = run_cli("status", "--config", str(config), "--json")  # answered by the loop
        assert shown.returncode == 0 and json.loads(shown.stdout)["daemon_running"]

        written = insert_readings(app_db, 60)

        agent.wait_for(lambda: lake_row_count(lake_of(tmp_path)) == written,
                       "the write shipped to the lake")
    assert_exact(lake_of(tmp_path), app_db, READINGS, written)


def test_flush_while_the_daemon_runs_goes_through_the_control_socket(tmp_path: Path,
                                                                     app_db: Path) -> None:
    # Neither polling nor file age would ship anything within the test: only the flush.
    config = install_config(tmp_path, config_dict(
        tmp_path, app_db, ["readings"], agent={"poll_interval": "1h"},
        buffer={"max_file_age": "1h"}))
    with AgentProcess(config) as agent:
        agent.wait_event("started")
        written = insert_readings(app_db, 250, per_transaction=25)

        flushed = run_cli("flush", "--config", str(config), "--timeout", "60")

        assert flushed.returncode == 0, flushed.stderr  # a one-shot flush would exit 3
        assert "flushed" in flushed.stdout
        assert agent.running()
        assert_exact(lake_of(tmp_path), app_db, READINGS, written)
        agent.send(signal.SIGTERM)
        assert agent.wait_exit() == 0


def test_log_lines_are_json_with_one_cycle_summary_not_one_per_row(tmp_path: Path,
                                                                   app_db: Path) -> None:
    config = install_config(tmp_path, config_dict(tmp_path, app_db, ["readings"]))
    with AgentProcess(config) as agent:
        agent.wait_event("started")
        written = insert_readings(app_db, 500, per_transaction=500)
        agent.wait_captured(written)
        agent.wait_for(lambda: lake_row_count(lake_of(tmp_path)) == written,
                       "the rows in the lake")
        agent.send(signal.SIGTERM)
        assert agent.wait_exit() == 0
        lines = agent.stderr_lines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(r, dict) and {"event", "level", "timestamp"} <= r.keys()
               for r in records), lines
    cycles = [r for r in records if r["event"] == "cycle"]
    assert sum(c["changes"] for c in cycles) == written
    assert 1 <= len(cycles) <= 10, cycles
    assert len(records) < 50, lines


def test_sigterm_wins_over_a_daemon_served_flush_and_status_answers_meanwhile(
        tmp_path: Path, app_db: Path) -> None:
    """Issue 12 items 1 and 2: a flush that cannot finish (the lake is unwritable) must
    neither hold off a stop beyond shutdown_timeout nor block `status`."""
    import subprocess

    from tests.children import agent_cmd, agent_env

    not_a_dir = tmp_path / "not-a-dir"
    not_a_dir.write_text("a regular file: the lake cannot be created under it\n")
    data = config_dict(tmp_path, app_db, ["readings"], buffer={"max_file_age": "1h"},
                       agent={"shutdown_timeout": "1s"}, sink={"path": str(not_a_dir / "lake")})
    config = install_config(tmp_path, data)
    with AgentProcess(config) as agent:
        agent.wait_event("started")
        written = insert_readings(app_db, 60)
        agent.wait_captured(written)
        client = subprocess.Popen(agent_cmd("flush", "--config", str(config), "--timeout", "600"),
                                  env=agent_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        # Nothing is due for an hour: a sealed file in the spool means the flush runs.
        wait_until(lambda: spooled_files(tmp_path) > 0, "the served flush sealing",
                   describe=agent.log_tail)

        status = run_cli("status", "--config", str(config), "--json", timeout=60)
        assert status.returncode == 5, status.stderr  # answered: unhealthy, not "no answer"
        assert json.loads(status.stdout)["daemon_running"] is True

        agent.send(signal.SIGTERM)
        assert agent.wait_exit() == 0, agent.log_tail()  # not after the flush's 600 s
        out, err = client.communicate(timeout=60)
    assert client.returncode == 4, out + err
    assert "stopping" in err


def test_snapshot_of_a_timestamp_table_through_the_running_daemon(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, updated_at TEXT)")
    with con:
        con.executemany("INSERT INTO items VALUES (?, ?)",
                        [(i, f"2025-01-01T00:00:{i:02d}Z") for i in range(1, 11)])
    con.close()
    entry = {"name": "items", "mode": "timestamp", "cursor": "updated_at", "lag": "0s"}
    config = install_config(tmp_path, config_dict(tmp_path, db, [entry]))
    with AgentProcess(config) as agent:
        agent.wait_event("started")
        assert run_cli("flush", "--config", str(config)).returncode == 0
        snap = run_cli("snapshot", "--config", str(config))
        assert snap.returncode == 0, snap.stdout + snap.stderr
    from tests.lake import read_changes

    ops = [c["_op"] for c in read_changes(lake_of(tmp_path))]
    assert ops == ["u"] * 10 + ["r"] * 10
