"""A COMMIT that fails (SQLITE_BUSY in a rollback-journal app database) must not leave the
agent's write transaction open on the application's database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.capture.triggers import ChangeLog
from edge_agent.errors import EdgeAgentError
from edge_agent.sources.sqlite import connect


def test_failed_commit_rolls_back_and_releases_the_app_database(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    app = sqlite3.connect(db, isolation_level=None)
    app.execute("PRAGMA journal_mode = DELETE")  # no WAL: COMMIT waits for readers
    app.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    app.executemany("INSERT INTO t VALUES (?, 'x')", [(i,) for i in range(1, 50)])
    agent_con = connect(db, 0.2)
    log = ChangeLog(agent_con, db)

    reader = sqlite3.connect(db, isolation_level=None)
    cur = reader.execute("SELECT id FROM t")  # an app reader holds SHARED
    cur.fetchone()
    with pytest.raises(EdgeAgentError):
        log.install(["t"], 0, 1_764_000_000_000)  # BEGIN IMMEDIATE ... COMMIT -> busy
    cur.close()
    reader.close()
    # the agent must not keep the RESERVED lock: the application can write again
    assert not agent_con.in_transaction, "the failed transaction is still open"
    app.execute("PRAGMA busy_timeout = 200")
    app.execute("INSERT INTO t VALUES (100, 'y')")
    agent_con.close()
    app.close()
