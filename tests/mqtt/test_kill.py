"""SIGKILL mid-file on either side of the broker: the real `edge-agent collect` and
the real `edge-agent flush` processes are killed while a file is half-way through;
after a restart the lake holds every change exactly once."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import (
    WORKLOAD_TABLES,
    agent_cmd,
    agent_env,
    config_dict,
    run_cli,
    run_workload,
    write_config,
)
from tests.lake import assert_exact, lake_files
from tests.mqtt import support
from tests.mqtt.support import CollectorProcess, collector_section, mqtt_sink, wait_until
from tests.servers import Mosquitto


def staged_chunks(staging: Path) -> int:
    return support.staged_chunks(staging / "files")


@pytest.mark.slow
def test_collector_killed_mid_file_resumes_and_lands_once(tmp_path: Path, app_db: Path,
                                                          mosquitto: Mosquitto,
                                                          mqtt_prefix: str) -> None:
    section = collector_section(tmp_path / "c", mosquitto, mqtt_prefix)
    collector = CollectorProcess(tmp_path / "c", section).start()
    data = config_dict(tmp_path, app_db, list(WORKLOAD_TABLES),
                       sink=mqtt_sink(mosquitto, mqtt_prefix, chunk_bytes="1KiB",
                                      max_inflight=1, max_bandwidth="48KiB",
                                      ack_timeout="2s"))
    config = write_config(tmp_path, data)
    assert run_cli("triggers", "install", "--config", str(config)).returncode == 0
    expected = run_workload(app_db, seed=51, transactions=400)
    flush = subprocess.Popen(agent_cmd("flush", "--config", str(config), "--timeout", "120"),
                             env=agent_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    staging = tmp_path / "c" / "staging"
    wait_until(lambda: staged_chunks(staging) >= 5, "a half-staged file", timeout=120)
    collector.kill()
    assert staged_chunks(staging) >= 5 and not lake_files(tmp_path / "c" / "lake")
    collector = CollectorProcess(tmp_path / "c", section, name="collector-2").start()
    _, err = flush.communicate(timeout=300)
    assert flush.returncode == 0, err.decode()
    assert collector.terminate() == 0
    lake = tmp_path / "c" / "lake"
    assert_exact(lake, app_db, WORKLOAD_TABLES, expected)
    stopped = collector.events("collector.stopped")[-1]
    # The second run resumed from the staging: it landed every file without staging every
    # chunk again. Either a resent chunk was found staged, or (when the agent was past
    # the first chunks of its resend once the second run subscribed: those went nowhere)
    # fewer chunks arrived than the files hold.
    chunks = sum(-(-p.stat().st_size // 1024) for p in lake_files(lake))
    assert (stopped.get("chunks_already_staged", 0) >= 1
            or stopped.get("chunks", 0) < chunks), (stopped, chunks)
    assert not list(lake.rglob("*.tmp"))


@pytest.mark.slow
def test_agent_killed_mid_file_lands_once_after_restart(tmp_path: Path, app_db: Path,
                                                        mosquitto: Mosquitto, mqtt_prefix: str,
                                                        collector_factory) -> None:
    from tests.mqtt.support import collector_config

    col = collector_factory(collector_config(tmp_path / "c", mosquitto, mqtt_prefix))
    data = config_dict(tmp_path, app_db, list(WORKLOAD_TABLES),
                       sink=mqtt_sink(mosquitto, mqtt_prefix, chunk_bytes="1KiB",
                                      max_inflight=1, max_bandwidth="32KiB"))
    config = write_config(tmp_path, data)
    assert run_cli("triggers", "install", "--config", str(config)).returncode == 0
    expected = run_workload(app_db, seed=52, transactions=400)
    flush = subprocess.Popen(agent_cmd("flush", "--config", str(config), "--timeout", "120"),
                             env=agent_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    staging = tmp_path / "c" / "staging"
    wait_until(lambda: staged_chunks(staging) >= 5, "a half-sent file", timeout=120)
    flush.send_signal(signal.SIGKILL)
    flush.wait()
    again = run_cli("flush", "--config", str(config), "--timeout", "120", timeout=300)
    assert again.returncode == 0, again.stderr
    assert_exact(tmp_path / "c" / "lake", app_db, WORKLOAD_TABLES, expected)
    assert col.counters["chunks_already_staged"] >= 5
