"""Timestamp mode: a failed state-database commit must not advance the in-memory cursor."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.capture import ts_app
from tests.conftest import make_config
from tests.lake import read_changes

TS_TABLE = {"name": "items", "mode": "timestamp", "cursor": "updated_at", "key": ["id"],
            "lag": "5s"}


@pytest.fixture
def items_db(tmp_path: Path) -> Path:
    db = tmp_path / "vendor.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    con.executescript(ts_app.SCHEMA)
    # ten versions one minute apart: far more than the 5 s lag window
    con.executemany("INSERT INTO items (id, name, updated_at) VALUES (?, 'x', ?)",
                    [(i, f"2025-06-01T00:{i:02d}:00Z") for i in range(1, 11)])
    con.commit()
    con.close()
    return db


def _fail_once(monkeypatch: pytest.MonkeyPatch, state: object) -> None:
    real = state.record_sealed  # type: ignore[attr-defined]
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("disk I/O error")
        real(*args, **kwargs)

    monkeypatch.setattr(state, "record_sealed", flaky)


def test_failed_record_of_a_timestamp_file_loses_nothing(
        tmp_path: Path, items_db: Path, harness_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(tmp_path, items_db, [TS_TABLE], source={"page_rows": 50})
    h = harness_factory(cfg)
    _fail_once(monkeypatch, h.agent.state)
    h.step()                         # captures the ten rows into an open file
    summary = h.step(advance=2.0)    # file is due: seal -> record fails -> rewind
    assert summary.errors, "the injected state-database failure should be reported"
    for _ in range(5):               # keep running (no restart)
        h.step(advance=2.0)
    assert h.flush().ok
    ids = sorted(c["values"]["id"] for c in read_changes(tmp_path / "lake"))
    assert ids == list(range(1, 11))


def test_state_db_error_during_flush_seal_is_handled(
        tmp_path: Path, items_db: Path, harness_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Agent.seal_all (flush, reload, final flush on SIGTERM) catches OSError and
    EdgeAgentError but not sqlite3.Error from the state database: it escapes flush."""
    cfg = make_config(tmp_path, items_db, [TS_TABLE], source={"page_rows": 50})
    h = harness_factory(cfg)
    h.step()
    _fail_once(monkeypatch, h.agent.state)
    result = h.agent.flush(h.clock.monotonic() + 5, capture=False)  # must not raise
    assert not result.ok or result.pending_files == 0
