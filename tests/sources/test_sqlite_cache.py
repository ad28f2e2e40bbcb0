"""The agent's own SQLite connections keep a small page cache; the application's
connections keep theirs (cache_size is a per-connection setting, never stored)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.capture.sqlite_trigger import TriggerCapture
from edge_agent.config_sources import SourceConfig
from edge_agent.spool.state import StateDB
from edge_agent.sqlite_cache import AGENT_CACHE_KIB

SQLITE_DEFAULT_KIB = 2000  # PRAGMA cache_size = -2000 unless a build changes it


def _cache_kib(con: sqlite3.Connection) -> int:
    size = int(con.execute("PRAGMA cache_size").fetchone()[0])
    assert size < 0  # negative: KiB, not pages
    return -size


def test_capture_and_state_connections_use_the_agents_cache_not_the_apps(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    app = sqlite3.connect(db)
    app.execute("PRAGMA journal_mode = WAL")
    app.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    app.commit()
    capture = TriggerCapture(SourceConfig(name="app", path=db, tables=("t",)))
    capture.open(seed=0, now_ms=1_764_000_000_000)
    state = StateDB(tmp_path / "state.db")
    try:
        assert capture.con is not None
        assert _cache_kib(capture.con) == _cache_kib(state.con) == AGENT_CACHE_KIB
        assert AGENT_CACHE_KIB < SQLITE_DEFAULT_KIB
        # The application's connections, new or already open, keep SQLite's default.
        assert _cache_kib(app) == SQLITE_DEFAULT_KIB
        later = sqlite3.connect(db)
        assert _cache_kib(later) == SQLITE_DEFAULT_KIB
        later.close()
        # and the capture still reads what the application writes
        app.execute("INSERT INTO t (id, v) VALUES (1, 'a')")
        app.commit()
        assert capture.pending(0) == 1
    finally:
        capture.close()
        state.close()
        app.close()
