"""ChangeLog.read_page must stop near max_bytes, not up to 255 rows later."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.capture.triggers import ChangeLog
from edge_agent.sources.sqlite import connect


@pytest.mark.parametrize("kind", ["blob", "text", "blob in an INTEGER column"])
def test_read_page_stays_near_max_bytes_with_large_rows(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    decl = "INTEGER" if "INTEGER" in kind else "BLOB"
    con.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, payload {decl})")
    con.commit()
    agent_con = connect(db, 5.0)
    log = ChangeLog(agent_con, db)
    log.install(["t"], 0, 1_764_000_000_000, snapshot_new=False)
    row_bytes = 256 * 1024
    value: str | bytes = "x" * row_bytes if kind == "text" else b"x" * row_bytes
    con.executemany("INSERT INTO t (id, payload) VALUES (?, ?)",
                    [(i, value) for i in range(1, 201)])
    con.commit()
    max_bytes = 1024 * 1024  # the agent's page_bytes for a 4 MiB memory budget
    rows = log.read_page(0, 500, max_bytes)
    read = sum(len(r[5]) for r in rows if isinstance(r[5], (bytes, str)))
    assert rows and read >= max_bytes  # the budget is reached, not undercounted
    # at most one row past the budget; today the whole first fetchmany(256) is kept
    assert read <= max_bytes + row_bytes, f"{len(rows)} rows, {read} bytes for a {max_bytes} page"
    agent_con.close()
    con.close()
