"""`edge-agent lake silver`: Delta tables holding the current state of every captured
table, built incrementally from bronze, exactly the same after a crash and a re-run."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from edge_agent.errors import EdgeAgentError
from edge_agent.lake import silver
from edge_agent.lake.silver_delta import SilverTable
from edge_agent.lake.store import DirStore
from tests.children import agent_cmd, agent_env
from tests.conftest import (
    WORKLOAD_TABLES,
    config_dict,
    config_from_dict,
    run_cli,
    run_workload,
)
from tests.lake_tools.shipped import shipped
from tests.lake_tools.silver_support import (
    assert_silver_is,
    silver_state,
    snapshot_of,
    table_uri,
)

SMALL = {"max_file_bytes": "4KiB", "row_group_bytes": "2KiB"}


def _captured(tmp_path: Path, app_db: Path, harness_factory: Any, seed: int,
              transactions: int = 150) -> tuple[Path, Any]:
    cfg, h = shipped(tmp_path, app_db, harness_factory, seed, transactions, buffer=SMALL)
    return Path(cfg.sink.path), h


def _silver(lake: Path, to: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("lake", "silver", "--lake", str(lake), "--to", str(to), *extra)


def test_silver_equals_the_source_and_follows_it_incrementally(
        tmp_path: Path, app_db: Path, harness_factory: Any) -> None:
    lake, h = _captured(tmp_path, app_db, harness_factory, seed=51)
    to = tmp_path / "silver"
    first = _silver(lake, to, "--batch-rows", "300")
    assert first.returncode == 0, first.stderr
    assert "up to date" in first.stdout
    assert_silver_is(to, app_db)

    con = sqlite3.connect(app_db)  # a column added later: old rows NULL there
    con.execute("ALTER TABLE readings ADD COLUMN extra TEXT")
    con.execute("UPDATE readings SET extra = 'x' || id WHERE id % 3 = 0")
    con.commit()
    con.close()
    run_workload(app_db, seed=52, transactions=100)
    h.step(0.1)
    assert h.flush().ok
    second = _silver(lake, to, "--json")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["complete"] and sum(t["files"] for t in report["tables"]) > 0
    assert_silver_is(to, app_db)
    rows = silver_state(to, "app", "readings", ["id"])
    assert any(r["extra"] is None for r in rows.values())
    assert any(r["extra"] is not None for r in rows.values())

    again = _silver(lake, to, "--json")  # nothing new: nothing merged, nothing committed
    assert again.returncode == 0, again.stderr
    assert all(t["files"] == 0 and t["commits"] == 0 for t in json.loads(again.stdout)["tables"])
    for table in WORKLOAD_TABLES:
        history = DeltaTable(str(table_uri(to, "app", table))).history()
        assert all("edge_agent.silver" in c for c in history)


def test_a_truncate_marker_starts_the_table_over(tmp_path: Path, app_db: Path,
                                                harness_factory: Any) -> None:
    from edge_agent.capture.triggers import ChangeLog
    from edge_agent.sources.sqlite import connect

    lake, h = _captured(tmp_path, app_db, harness_factory, seed=53)
    to = tmp_path / "silver"
    assert _silver(lake, to).returncode == 0
    # A migration behind the agent's back: triggers gone, a column dropped, rows deleted
    # unseen. The agent writes a `t` marker and a snapshot; silver must forget the rest.
    ChangeLog(connect(app_db, 5), app_db).uninstall(["readings"], drop_log=False)
    con = sqlite3.connect(app_db)
    con.execute("ALTER TABLE readings DROP COLUMN note")
    con.execute("DELETE FROM readings WHERE id % 2 = 0")
    con.commit()
    con.close()
    assert h.flush().ok
    ops = {op for p in lake.glob("bronze/app/readings/*/*.parquet")
           for op in pq.read_table(p, columns=["_op"]).column("_op").to_pylist()}
    assert "t" in ops
    again = _silver(lake, to)
    assert again.returncode == 0, again.stderr
    assert_silver_is(to, app_db)


def _lake_with_files(tmp_path: Path, app_db: Path, harness_factory: Any) -> Path:
    lake, h = _captured(tmp_path, app_db, harness_factory, seed=54, transactions=250)
    h.close()
    return lake


def test_a_crash_between_merges_and_a_rerun_give_the_single_run_table(
        tmp_path: Path, app_db: Path, harness_factory: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _lake_with_files(tmp_path, app_db, harness_factory)
    single = tmp_path / "single"
    merges = sum(t.commits for t in silver.run(DirStore(lake), single, batch_rows=200).tables)
    assert merges >= 6
    want = snapshot_of(single)
    merge = SilverTable.merge
    for crash_after in (1, merges // 2, merges - 1):
        calls = {"n": 0}

        def crashing(self: SilverTable, *args: Any, _after: int = crash_after,
                     _calls: dict[str, int] = calls) -> Any:
            if _calls["n"] == _after:
                raise OSError("killed")
            _calls["n"] += 1
            return merge(self, *args)

        to = tmp_path / f"crash-{crash_after}"
        monkeypatch.setattr(SilverTable, "merge", crashing)
        with pytest.raises(OSError, match="killed"):
            silver.run(DirStore(lake), to, batch_rows=200)
        monkeypatch.setattr(SilverTable, "merge", merge)
        silver.run(DirStore(lake), to, batch_rows=200)
        assert snapshot_of(to) == want, crash_after
    assert_silver_is(single, app_db)


@pytest.mark.slow
def test_kill_9_during_silver_then_a_rerun_gives_the_single_run_table(
        tmp_path: Path, app_db: Path, harness_factory: Any) -> None:
    lake = _lake_with_files(tmp_path, app_db, harness_factory)
    single = tmp_path / "single"
    assert _silver(lake, single, "--batch-rows", "100").returncode == 0
    to = tmp_path / "killed"
    log = to / "app" / "readings" / "_delta_log"
    for attempt in range(3):
        proc = subprocess.Popen(agent_cmd("lake", "silver", "--lake", str(lake), "--to", str(to),
                                          "--batch-rows", "100"),
                                env=agent_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            commits = len(list(log.glob("*.json"))) if log.is_dir() else 0
            if commits >= 2 + 2 * attempt:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = _silver(lake, to, "--batch-rows", "100")
    assert done.returncode == 0, done.stderr
    assert snapshot_of(to) == snapshot_of(single)
    assert_silver_is(to, app_db)


def test_silver_waits_at_a_gap_and_catches_up_when_the_file_lands(
        tmp_path: Path, app_db: Path, harness_factory: Any) -> None:
    lake = _lake_with_files(tmp_path, app_db, harness_factory)
    manifests = sorted(lake.glob("bronze/app/*/*/*.manifest.json"),
                       key=lambda p: json.loads(p.read_text())["ordinal"])
    middle = manifests[len(manifests) // 2]
    ordinal = json.loads(middle.read_text())["ordinal"]
    aside = tmp_path / "aside"
    aside.mkdir()
    parquet = middle.with_name(middle.name.replace(".manifest.json", ".parquet"))
    for p in (middle, parquet):
        shutil.move(p, aside / p.name)
    to = tmp_path / "silver"
    held = _silver(lake, to)
    assert held.returncode == 6, held.stderr
    assert f"gw-test/app: waits for ordinal {ordinal}" in held.stdout
    for p in (middle, parquet):
        shutil.move(aside / p.name, p)
    done = _silver(lake, to)
    assert done.returncode == 0, done.stderr
    assert_silver_is(to, app_db)


def test_two_devices_share_one_silver_table_each_in_its_partition(
        tmp_path: Path, harness_factory: Any) -> None:
    from tests import workload

    dbs = []
    for n, device in enumerate(("gw-a", "gw-b")):
        db = tmp_path / f"{device}.db"
        workload.create(db)
        data = config_dict(tmp_path / device, db, list(WORKLOAD_TABLES), buffer=SMALL,
                           agent={"device_id": device}, sink={"path": str(tmp_path / "lake")})
        h = harness_factory(config_from_dict(data))
        h.step()
        run_workload(db, seed=60 + n, transactions=80)
        h.step(0.1)
        assert h.flush().ok
        dbs.append(db)
    to = tmp_path / "silver"
    done = _silver(tmp_path / "lake", to)
    assert done.returncode == 0, done.stderr
    assert_silver_is(to, dbs[0], device="gw-a")
    assert_silver_is(to, dbs[1], device="gw-b")
    parts = {p.name for p in table_uri(to, "app", "readings").glob("_device=*")}
    assert parts == {"_device=gw-a", "_device=gw-b"}


def test_bad_input_is_named(tmp_path: Path, app_db: Path, harness_factory: Any) -> None:
    lake = _lake_with_files(tmp_path, app_db, harness_factory)
    no_to = run_cli("lake", "silver", "--lake", str(lake))
    assert no_to.returncode != 0 and "give --to" in no_to.stderr
    bad = _silver(lake, tmp_path / "s", "--batch-rows", "0")
    assert bad.returncode != 0 and "--batch-rows 0" in bad.stderr
    foreign = tmp_path / "foreign"
    write_deltalake(str(table_uri(foreign, "app", "events")),
                    pa.table({"_device": ["x"], "id": [1]}))
    with pytest.raises(EdgeAgentError, match="a Delta table that `lake silver` did not make"):
        silver.run(DirStore(lake), foreign)
    broken = sorted(lake.glob("bronze/app/events/*/*.manifest.json"))[0]
    broken.write_text("{not json")
    refused = _silver(lake, tmp_path / "s")
    assert refused.returncode != 0 and broken.name in refused.stderr
    assert "lake verify" in refused.stderr
