"""A writer process for timestamp-mode tests: upserts and soft deletes with updated_at.

    python -m tests.capture.ts_app DB SEED N [epoch_ms]

``epoch_ms``: updated_at holds Unix epoch milliseconds (EPOCH_SCHEMA, indexed).
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
"""
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
EPOCH_NOW = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
EPOCH_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL DEFAULT ({EPOCH_NOW}));
CREATE INDEX IF NOT EXISTS items_updated_at ON items (updated_at);
"""


def start(db: Path, seed: int, n: int, *fmt: str) -> subprocess.Popen[bytes]:
    """This writer in its own process, as the tests run it."""
    from tests.conftest import ROOT, agent_env

    return subprocess.Popen([sys.executable, "-m", "tests.capture.ts_app", str(db), str(seed),
                             str(n), *fmt], cwd=ROOT, env=agent_env())


def write_while_stepping(h: Any, db: Path, seed: int, n: int, *fmt: str) -> None:
    """Runs this writer to its end while the harness ``h`` captures (0.2 s clock steps)."""
    app = start(db, seed, n, *fmt)
    while app.poll() is None:
        h.step(advance=0.2)
    assert app.returncode == 0


def vendor_db(tmp_path: Path, schema: str) -> Path:
    """The tests' vendor database: WAL mode, the items table of ``schema``."""
    db = tmp_path / "vendor.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    con.executescript(schema)
    con.close()
    return db


def live_rows(db: Path) -> dict[tuple[int], dict[str, object]]:
    """The application's rows that are not soft-deleted, by key."""
    con = sqlite3.connect(db)
    cur = con.execute("SELECT * FROM items WHERE is_deleted = 0")
    names = [d[0] for d in cur.description]
    rows = {(r[0],): dict(zip(names, r, strict=True)) for r in cur}
    con.close()
    return rows


def run(db: str, seed: int, n: int, now: str = NOW) -> None:
    rng = random.Random(seed)
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    for _ in range(n):
        con.execute("BEGIN IMMEDIATE")
        for _ in range(rng.choice([1, 1, 3, 10])):
            key = rng.randint(1, 300)
            action = rng.random()
            if action < 0.6:
                con.execute(
                    "INSERT INTO items (id, name, qty, price, updated_at) "
                    f"VALUES (?, ?, ?, ?, {now}) ON CONFLICT (id) DO UPDATE SET "
                    "qty = excluded.qty, price = excluded.price, "
                    f"is_deleted = 0, updated_at = {now}",
                    (key, f"item {key} ü", rng.randint(0, 10**12), rng.random()))
            else:
                con.execute(f"UPDATE items SET is_deleted = 1, updated_at = {now} WHERE id = ?",
                            (key,))
        con.execute("COMMIT")
        time.sleep(0.001)
    con.close()


if __name__ == "__main__":
    epoch = sys.argv[4:] == ["epoch_ms"]
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), EPOCH_NOW if epoch else NOW)
