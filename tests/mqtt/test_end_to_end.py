"""agent -> Mosquitto -> collector -> lake, end to end, with faults on the way:
the lake must hold every change exactly once (tests.lake.assert_exact)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge_agent.spool.state import READY
from tests.conftest import WORKLOAD_TABLES, make_config, run_workload
from tests.lake import assert_exact, lake_files
from tests.mqtt.support import collector_config, mqtt_sink, staged_chunks, wait_until
from tests.servers import Mosquitto

SMALL_FILES = {"max_file_bytes": "24KiB", "row_group_bytes": "8KiB"}


def assert_lake_is_clean(lake: Path) -> None:
    """Each Parquet file has its manifest beside it, and no temp file is left."""
    parquet = lake_files(lake)
    manifests = sorted(lake.glob("bronze/*/*/*/*.manifest.json"))
    assert len(manifests) == len(parquet)
    assert not list(lake.rglob("*.tmp"))


def drive(h, until, steps: int = 400, advance: float = 1.1) -> None:
    """Step the agent (1.1 manual seconds per step, so sealing and retries fall due)
    until ``until()``; bounded in steps, never by wall-clock time."""
    for _ in range(steps):
        h.step(advance=advance)
        if until():
            return
    raise AssertionError("the agent did not get there in the allowed steps")


def shipped_all(h) -> bool:
    return not h.agent.state.files(READY) and not h.agent.writer.open


def test_thousands_of_changes_land_exactly_once(tmp_path: Path, app_db: Path,
                                                mosquitto: Mosquitto, mqtt_prefix: str,
                                                collector_factory, harness_factory) -> None:
    col = collector_factory(collector_config(tmp_path / "c", mosquitto, mqtt_prefix))
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES), buffer=SMALL_FILES,
                      sink=mqtt_sink(mosquitto, mqtt_prefix, chunk_bytes="4KiB",
                                     max_inflight=8, max_bandwidth="64MiB"))
    h = harness_factory(cfg)
    h.step()
    expected = run_workload(app_db, seed=41, transactions=1500)
    assert expected > 3000
    assert h.flush().ok
    lake = tmp_path / "c" / "lake"
    assert_exact(lake, app_db, WORKLOAD_TABLES, expected)
    assert_lake_is_clean(lake)
    files = len(lake_files(lake))
    assert files > 5 and col.counters["files_landed"] == files
    assert col.counters["chunks"] > files  # multi-chunk files
    assert not list((tmp_path / "c" / "staging" / "files").iterdir())


def test_two_collectors_in_one_share_group_land_every_file_once(
        tmp_path: Path, app_db: Path, mosquitto: Mosquitto, mqtt_prefix: str,
        collector_factory, harness_factory) -> None:
    shared = collector_config(tmp_path / "c", mosquitto, mqtt_prefix)
    first, second = collector_factory(shared), collector_factory(shared)
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES), buffer=SMALL_FILES,
                      sink=mqtt_sink(mosquitto, mqtt_prefix, chunk_bytes="2KiB"))
    h = harness_factory(cfg)
    h.step()
    expected = run_workload(app_db, seed=42, transactions=800)
    assert h.flush().ok
    assert_exact(shared.lake, app_db, WORKLOAD_TABLES, expected)
    assert_lake_is_clean(shared.lake)
    # The broker spread the messages over both; each file landed once in all (a member
    # may land none: a file lands where its last part is handled).
    assert first.counters["messages"] > 0 and second.counters["messages"] > 0
    landed = first.counters.get("files_landed", 0) + second.counters.get("files_landed", 0)
    assert landed == len(lake_files(shared.lake))


@pytest.mark.slow
def test_broker_killed_and_restarted_mid_transfer(tmp_path: Path, app_db: Path,
                                                  mqtt_prefix: str, collector_factory,
                                                  harness_factory) -> None:
    broker = Mosquitto(tmp_path / "broker")
    try:
        collector_factory(collector_config(tmp_path / "c", broker, mqtt_prefix))
        cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES), buffer=SMALL_FILES,
                          sink=mqtt_sink(broker, mqtt_prefix, chunk_bytes="1KiB",
                                         max_inflight=2, ack_timeout="3s"))
        h = harness_factory(cfg)
        h.step()
        expected = run_workload(app_db, seed=43, transactions=600)
        cuts = 0
        for _ in range(6):
            timer = threading.Timer(0.02, broker.kill)  # while the step is sending
            timer.start()
            summary = h.step(advance=1.1)
            timer.join()
            cuts += bool(summary.errors)
            broker.start()
        assert cuts > 0, "no transfer was interrupted"
        drive(h, lambda: shipped_all(h))
        assert h.flush().ok
        assert_exact(tmp_path / "c" / "lake", app_db, WORKLOAD_TABLES, expected)
        assert_lake_is_clean(tmp_path / "c" / "lake")
    finally:
        broker.close()


def test_agent_failure_mid_file_is_resent_whole(tmp_path: Path, app_db: Path,
                                                mosquitto: Mosquitto, mqtt_prefix: str,
                                                collector_factory, harness_factory) -> None:
    """The agent's connection dies half-way through a file: the collector keeps the
    half, the file stays in the spool, and the next try lands it exactly once."""
    col = collector_factory(collector_config(tmp_path / "c", mosquitto, mqtt_prefix))
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES),
                      sink=mqtt_sink(mosquitto, mqtt_prefix, chunk_bytes="1KiB",
                                     max_inflight=1, max_bandwidth="64KiB"))
    h = harness_factory(cfg)
    h.step()
    expected = run_workload(app_db, seed=44, transactions=300)
    h.step()
    h.agent.seal_all()
    staging = tmp_path / "c" / "staging" / "files"

    def cut_when_half_staged() -> None:
        wait_until(lambda: staged_chunks(staging) >= 3, "chunks staged")
        shipper = h.agent.shipping.shipper
        shipper.link.client.disconnect()  # the agent side goes away mid-file

    cutter = threading.Thread(target=cut_when_half_staged)
    cutter.start()
    summary = h.step(advance=0.1)
    cutter.join()
    assert summary.errors and h.agent.state.files(READY)
    assert not lake_files(tmp_path / "c" / "lake")
    assert h.flush().ok
    assert_exact(tmp_path / "c" / "lake", app_db, WORKLOAD_TABLES, expected)
    assert col.counters["chunks_already_staged"] >= 3  # resumed from the staged half
