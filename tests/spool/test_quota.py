"""Invariant 4 on disk: a full spool blocks capture (nothing lost) or drops whole
oldest files (counted and reported)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.runtime.status import build_status
from edge_agent.spool.state import READY
from tests.conftest import WORKLOAD_TABLES, make_config, run_workload
from tests.lake import assert_exact, read_changes

SMALL = {"max_memory": "256KiB", "max_file_bytes": "16KiB", "row_group_bytes": "8KiB",
         "max_file_age": "1s", "spool_quota": "64KiB"}


def broken_sink(tmp_path: Path) -> Path:
    """A lake path below a regular file: every write fails (even as root)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    return blocker / "lake"


def fix_sink(tmp_path: Path) -> None:
    (tmp_path / "blocker").unlink()
    (tmp_path / "blocker").mkdir()


def spool_bytes(tmp_path: Path) -> int:
    return sum(p.stat().st_size for p in (tmp_path / "state" / "spool").rglob("*") if p.is_file())


def test_block_pauses_capture_and_loses_nothing(tmp_path: Path, app_db: Path,
                                                harness_factory) -> None:
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES), buffer=SMALL,
                      sink={"path": str(broken_sink(tmp_path))})
    h = harness_factory(cfg)
    h.step()
    expected = run_workload(app_db, seed=21, transactions=400)
    blocked = False
    for _ in range(60):
        summary = h.step(advance=1.1)
        blocked = blocked or summary.blocked
        assert h.agent.quota.used() <= cfg.buffer.spool_quota + cfg.buffer.max_file_bytes
    assert blocked
    status = build_status(cfg, h.agent.state)
    assert "spool full" in (status["spool"]["full"] or "")
    assert status["sources"][0]["waiting_in_source_log"] > 0  # the source log keeps them
    fix_sink(tmp_path)
    for _ in range(200):
        h.step(advance=1.1)
        if not h.agent.quota.blocked and not h.agent.state.files(READY):
            break
    assert h.flush().ok
    assert_exact(Path(cfg.sink.path), app_db, WORKLOAD_TABLES, expected)
    assert build_status(cfg, h.agent.state)["spool"]["full"] is None


def test_drop_oldest_drops_whole_files_and_counts_them(tmp_path: Path, app_db: Path,
                                                       harness_factory) -> None:
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES),
                      buffer={**SMALL, "when_full": "drop_oldest"},
                      sink={"path": str(broken_sink(tmp_path))})
    h = harness_factory(cfg)
    h.step()
    expected = run_workload(app_db, seed=22, transactions=400)
    for _ in range(60):
        h.step(advance=1.1)
        assert h.agent.quota.used() <= cfg.buffer.spool_quota + cfg.buffer.max_file_bytes
    counters = build_status(cfg, h.agent.state)["counters"]
    assert counters["dropped_files"] > 0
    assert h.agent.pipelines["app"].capture.pending(h.agent.pipelines["app"].durable) == 0
    fix_sink(tmp_path)
    assert h.flush().ok
    landed = read_changes(Path(cfg.sink.path))
    assert len(landed) == expected - counters["dropped_changes"]
    positions = [c["_pos"] for c in landed]
    assert len(positions) == len(set(positions))
    # The lake sees the drops (issue 13 item 4): each missing ordinal is listed, with
    # its rows, in a later manifest of the source.
    import json

    manifests = [json.loads(p.read_text()) for p in Path(cfg.sink.path).rglob("*.manifest.json")]
    landed_ordinals = {m["ordinal"] for m in manifests}
    told = {d["ordinal"]: d for m in manifests for d in m.get("dropped", [])}
    missing = set(range(1, max(landed_ordinals) + 1)) - landed_ordinals
    assert missing and set(told) == missing
    assert sum(d["rows"] for d in told.values()) == counters["dropped_changes"]


def test_status_shows_the_change_log_growing_while_capture_waits(tmp_path: Path,
                                                                app_db: Path,
                                                                harness_factory) -> None:
    """Issue 13 item 2: while capture is blocked the application's change log grows;
    `status` says how big it is and how fast it grows."""
    import time

    from edge_agent.runtime.service import status, triggers
    from edge_agent.runtime.status import render_text

    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES))
    harness_factory(cfg).close()  # the agent has run once: a state directory exists
    assert triggers(cfg, "install", False, False)[1]
    run_workload(app_db, seed=5, transactions=50)
    report = status(cfg)
    details = report["sources"][0]["database"]
    assert details["change_log_bytes"] > 0 and details["oldest_waiting_ms"] > 0
    text = render_text(report, int(time.time() * 1000) + 60_000)
    assert "change log" in text and "changes/s accumulate while capture waits" in text
