"""Invariants 1 and 2 on a random mixed workload: every change once, replay is exact."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import WORKLOAD_TABLES, make_config, run_workload, start_workload
from tests.lake import assert_exact, read_changes


def test_random_workload_lands_exactly_once_and_replays(tmp_path: Path, app_db: Path,
                                                         harness_factory) -> None:
    h = harness_factory(make_config(tmp_path, app_db, list(WORKLOAD_TABLES)))
    h.step()  # installs the triggers
    app = start_workload(app_db, seed=7, transactions=400, pause=0.001)
    while app.poll() is None:
        h.step(advance=0.3)
    expected = int(app.communicate()[0])
    assert h.flush().ok
    changes = assert_exact(tmp_path / "lake", app_db, WORKLOAD_TABLES, expected)
    assert {c["_table"] for c in changes} == set(WORKLOAD_TABLES)
    assert {c["_op"] for c in changes} == {"c", "u", "d"}
    assert any(c["_unfit"] for c in changes), "the workload writes values that do not fit"


def test_positions_are_contiguous_across_tables(tmp_path: Path, app_db: Path,
                                                harness_factory) -> None:
    h = harness_factory(make_config(tmp_path, app_db, list(WORKLOAD_TABLES)))
    h.step()
    expected = run_workload(app_db, seed=3, transactions=150)
    assert h.flush().ok
    positions = [c["_pos"] for c in read_changes(tmp_path / "lake")]
    assert len(positions) == expected
    assert positions == list(range(positions[0], positions[0] + expected))
