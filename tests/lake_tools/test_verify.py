"""`edge-agent lake verify` on real lakes written by the agent: complete when it is, and
each planted fault found with its kind: a lost file, a manifest without its file, a file
without its manifest, a flipped byte, an overlap, temp and foreign files, known drops."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from edge_agent.lake.verify import verify
from tests.conftest import WORKLOAD_TABLES, make_config, run_cli, run_workload
from tests.lake_tools.shipped import SMALL_FILES, s3_lake, shipped


@pytest.fixture
def lake(tmp_path: Path, app_db: Path, harness_factory: Any) -> Path:
    cfg, _ = shipped(tmp_path, app_db, harness_factory, 3, 300, buffer=SMALL_FILES)
    return Path(cfg.sink.path)


def kinds(lake: Path, deep: bool = False) -> set[str]:
    return {f.kind for f in verify(lake, deep=deep).findings}


def manifests(lake: Path) -> list[Path]:
    return sorted(lake.rglob("*.manifest.json"))


def test_a_lake_the_agent_wrote_is_complete(lake: Path) -> None:
    report = verify(lake, deep=True)
    assert report.complete, report.findings
    stream = report.streams["gw-test/app"]
    assert stream["gaps"] == [] and stream["files"] == len(manifests(lake)) > 3
    assert run_cli("lake", "verify", "--lake", str(lake)).returncode == 0


def test_a_lost_file_is_a_gap_with_its_ordinal(lake: Path) -> None:
    ordinal = 2  # not the newest: a lost tail shows only once a later file lands
    victim = next(m for m in manifests(lake) if json.loads(m.read_text())["ordinal"] == 2)
    victim.unlink()
    victim.with_name(victim.name.replace(".manifest.json", ".parquet")).unlink()
    report = verify(lake)
    assert report.streams["gw-test/app"]["gaps"] == [[ordinal, ordinal]]
    assert {f.kind for f in report.findings} == {"ordinal_gap"}
    done = run_cli("lake", "verify", "--lake", str(lake), "--json")
    assert done.returncode == 6 and json.loads(done.stdout)["complete"] is False


@pytest.mark.parametrize("fault", ["no file", "no manifest", "flipped byte", "overlap",
                                   "temp file", "foreign file", "bad manifest"])
def test_each_planted_fault_is_found(lake: Path, fault: str) -> None:
    m = manifests(lake)[0]
    parquet = m.with_name(m.name.replace(".manifest.json", ".parquet"))
    expected = {"no file": "no_file", "no manifest": "no_manifest", "flipped byte": "mismatch",
                "overlap": "overlap", "temp file": "temp_file", "foreign file": "foreign_file",
                "bad manifest": "bad_manifest"}[fault]
    if fault == "no file":
        parquet.unlink()
    elif fault == "no manifest":
        m.unlink()
    elif fault == "flipped byte":
        data = bytearray(parquet.read_bytes())
        data[len(data) // 2] ^= 0xFF
        parquet.write_bytes(bytes(data))
    elif fault == "overlap":
        doc = json.loads(m.read_text())
        first, last = doc["first_pos"] + 1, doc["last_pos"] + 1
        stem = f"{doc['device']}-{first:020d}-{last:020d}"
        doc.update(first_pos=first, last_pos=last, ordinal=10_000,
                   id=f"{doc['device']}/{doc['source']}/{doc['table']}/{first}-{last}")
        (m.parent / f"{stem}.manifest.json").write_text(json.dumps(doc))
        shutil.copy(parquet, m.parent / f"{stem}.parquet")
    elif fault == "temp file":
        (m.parent / f".{parquet.name}.123.tmp").write_bytes(b"half")
    elif fault == "foreign file":
        (m.parent / "notes.txt").write_text("hello")
    else:
        m.write_text("{not json")
    assert expected in kinds(lake, deep=True)
    assert run_cli("lake", "verify", "--lake", str(lake), "--deep").returncode == 7


def test_drops_the_agent_told_are_known_not_gaps(tmp_path: Path, app_db: Path,
                                                 harness_factory: Any) -> None:
    from tests.spool.test_quota import SMALL, broken_sink, fix_sink

    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES),
                      buffer={**SMALL, "when_full": "drop_oldest"},
                      sink={"path": str(broken_sink(tmp_path))})
    h = harness_factory(cfg)
    h.step()
    run_workload(app_db, seed=22, transactions=400)
    for _ in range(60):
        h.step(advance=1.1)
    fix_sink(tmp_path)
    assert h.flush().ok
    report = verify(Path(cfg.sink.path))
    assert report.complete, report.findings
    assert report.streams["gw-test/app"]["known_drops"]


def test_an_s3_lake_is_verified_too(tmp_path: Path, app_db: Path, harness_factory: Any,
                                    moto_s3: Any, bucket: str, s3_env: None) -> None:
    lake, env = s3_lake(tmp_path, app_db, harness_factory, moto_s3, bucket, seed=6)
    ok = run_cli("lake", "verify", "--lake", lake, "--endpoint-url", moto_s3.url, "--deep",
                 **env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    client = moto_s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]
            if o["Key"].endswith(".manifest.json")]
    second = next(k for k in keys
                  if json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read())[
                      "ordinal"] == 2)
    client.delete_object(Bucket=bucket, Key=second)
    client.delete_object(Bucket=bucket, Key=second.replace(".manifest.json", ".parquet"))
    gap = run_cli("lake", "verify", "--lake", lake, "--endpoint-url", moto_s3.url, "--json",
                  **env)
    assert gap.returncode == 6 and json.loads(gap.stdout)["streams"]["gw-test/app"]["gaps"] == [
        [2, 2]]
