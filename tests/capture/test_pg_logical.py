"""PostgreSQL log-based capture (a logical slot, pgoutput) against a real server: the
lake rebuilds each table exactly, positions survive re-reads, gaps are said."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

from edge_agent.config import Config
from tests.capture.test_pg_trigger import lake_state, pg_config, rows_of, sql
from tests.lake import read_changes

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, name text, qty int)"


def logical_config(tmp: Path, dsn: str, tables: list[Any], source: dict[str, Any] | None = None,
                   **sections: Any) -> Config:
    cfg = pg_config(tmp, dsn, tables, **sections)
    src = {"slot": slot_of(dsn), **(source or {})}
    return replace(cfg, sources=(replace(cfg.sources[0], mode="logical", **src),))


def slot_of(dsn: str) -> str:
    """Slots are the cluster's, one per test database."""
    return "edge_agent_" + dsn.rsplit("/", 1)[1].lower()


def slot_lsn(dsn: str) -> str | None:
    slot = slot_of(dsn)
    with psycopg.connect(dsn) as con:
        row = con.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
        return None if row is None else str(row[0])


def test_snapshot_then_stream_rebuild_the_table(tmp_path: Path, pg_db: str,
                                                harness_factory: Any) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2)")
    h = harness_factory(logical_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    sql(pg_db, "UPDATE items SET qty = 10 WHERE id = 1", "DELETE FROM items WHERE id = 2",
        "INSERT INTO items VALUES (3, 'c', 3)", "UPDATE items SET id = 4 WHERE id = 3")
    h.step(0.1)
    assert h.flush().pending_files == 0

    changes = read_changes(tmp_path / "lake")
    assert [c["_op"] for c in changes] == ["r", "r", "u", "d", "c", "d", "u"]  # key 3 -> 4
    assert [c["_pos"] for c in changes] == list(range(1, 8))
    assert len({c["_tx"] for c in changes[2:]}) == 4
    assert all(c["_lsn"] > 0 for c in changes)
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")
