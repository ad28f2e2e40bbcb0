"""A random mixed application workload on real SQLite files (run as its own process).

    python -m tests.workload DB SEED TRANSACTIONS [--pause SECONDS]

Creates the tables if needed, then commits TRANSACTIONS random transactions of
inserts, updates (some moving the key), deletes, NULLs, unicode, blobs, 64-bit
integers and values that do not fit their column's declared type. Prints the
number of captured changes it committed (a key-moving update counts twice).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from pathlib import Path

TABLES = {
    "readings": (
        "CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY, sensor TEXT, "
        "value REAL, big INTEGER, payload BLOB, note)"
    ),
    'odd "table" ü': (
        'CREATE TABLE IF NOT EXISTS "odd ""table"" ü" ("key part" TEXT NOT NULL, '
        '"qu""ote" INTEGER NOT NULL, "vål ue" NUMERIC, flag BOOLEAN, '
        'PRIMARY KEY ("key part", "qu""ote"))'
    ),
    "events": (
        "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at DATETIME, kind TEXT) "
    ),
}
WORDS = ["alpha", "βeta", "гамма", "δέλτα", "😀 emoji", "", "tab\tnew\nline", "quote'\""]


def create(db: Path) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    for sql in TABLES.values():
        con.execute(sql)
    con.commit()
    con.close()


class Workload:
    def __init__(self, con: sqlite3.Connection, rng: random.Random) -> None:
        self.con = con
        self.rng = rng
        self.changes = 0

    def text(self) -> str | None:
        r = self.rng.random()
        return None if r < 0.1 else self.rng.choice(WORDS) + str(self.rng.randint(0, 999))

    def any_value(self) -> object:
        """Mostly fitting values, sometimes ones that do not fit the column's type."""
        return self.rng.choice([
            None, self.rng.randint(-(2**63), 2**63 - 1), self.rng.random() * 1e6,
            self.text() or "x", bytes(self.rng.randbytes(self.rng.randint(0, 64))),
        ])

    def reading(self) -> tuple[object, ...]:
        r = self.rng.random()
        value: object = self.rng.uniform(-50, 50) if r > 0.05 else "not a number"
        big: object = self.rng.randint(-(2**63), 2**63 - 1) if r > 0.1 else 1.5
        payload = self.rng.randbytes(self.rng.randint(0, 300)) if r > 0.3 else None
        return (self.text(), value, big, payload, self.any_value())

    def one_change(self) -> None:
        table = self.rng.choice(list(TABLES))
        op = self.rng.choices(["insert", "update", "delete"], [6, 3, 1])[0]
        getattr(self, f"{op}_{'odd' if table.startswith('odd') else table}")()

    def insert_readings(self) -> None:
        self.con.execute("INSERT INTO readings (sensor, value, big, payload, note) "
                         "VALUES (?, ?, ?, ?, ?)", self.reading())
        self.changes += 1

    def update_readings(self) -> None:
        n = self.con.execute("UPDATE readings SET value = ?, note = ? WHERE id IN "
                             "(SELECT id FROM readings ORDER BY random() LIMIT ?)",
                             (self.rng.uniform(-1, 1), self.any_value(),
                              self.rng.randint(1, 3))).rowcount
        self.changes += n

    def delete_readings(self) -> None:
        self.changes += self.con.execute(
            "DELETE FROM readings WHERE id IN (SELECT id FROM readings ORDER BY random() "
            "LIMIT ?)", (self.rng.randint(1, 2),)).rowcount

    def insert_odd(self) -> None:
        key = (self.rng.choice(WORDS), self.rng.randint(-5, 5))
        cur = self.con.execute(
            'INSERT OR IGNORE INTO "odd ""table"" ü" VALUES (?, ?, ?, ?)',
            (*key, self.rng.choice([1, 2.5, "12abc", None, 2**62]), self.rng.choice([0, 1, None])))
        self.changes += cur.rowcount

    def update_odd(self) -> None:
        row = self.con.execute('SELECT "key part", "qu""ote" FROM "odd ""table"" ü" '
                               "ORDER BY random() LIMIT 1").fetchone()
        if row is None:
            return
        if self.rng.random() < 0.3:  # move the key: a delete plus the new row
            moved = self.con.execute(
                'UPDATE OR IGNORE "odd ""table"" ü" SET "qu""ote" = "qu""ote" + 100 '
                'WHERE "key part" = ? AND "qu""ote" = ?', row).rowcount
            self.changes += 2 * moved
            return
        self.changes += self.con.execute(
            'UPDATE "odd ""table"" ü" SET flag = ?, "vål ue" = ? WHERE "key part" = ? '
            'AND "qu""ote" = ?', (self.rng.choice([0, 1, 7, "yes"]), self.rng.random(), *row)
        ).rowcount

    def delete_odd(self) -> None:
        self.changes += self.con.execute(
            'DELETE FROM "odd ""table"" ü" WHERE rowid IN (SELECT rowid FROM '
            '"odd ""table"" ü" ORDER BY random() LIMIT 1)').rowcount

    def insert_events(self) -> None:
        at = self.rng.choice(["2024-02-29T12:00:00Z", "2026-11-25 10:00:00", 1732530000, None])
        self.con.execute("INSERT INTO events (at, kind) VALUES (?, ?)", (at, self.text()))
        self.changes += 1

    def update_events(self) -> None:
        self.changes += self.con.execute(
            "UPDATE events SET kind = ? WHERE id = (SELECT max(id) FROM events)",
            (self.text(),)).rowcount

    def delete_events(self) -> None:
        self.changes += self.con.execute(
            "DELETE FROM events WHERE id = (SELECT min(id) FROM events)").rowcount

    def transaction(self) -> None:
        before = self.changes
        self.con.execute("BEGIN IMMEDIATE")
        try:
            for _ in range(self.rng.choice([1, 1, 2, 5, 20])):
                self.one_change()
            if self.rng.random() < 0.05:  # a rolled-back transaction captures nothing
                self.con.execute("ROLLBACK")
                self.changes = before
                return
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            self.changes = before
            raise


def run(db: Path, seed: int, transactions: int, pause: float = 0.0) -> int:
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    work = Workload(con, random.Random(seed))
    for _ in range(transactions):
        work.transaction()
        if pause:
            time.sleep(pause)
    con.close()
    return work.changes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db", type=Path)
    parser.add_argument("seed", type=int)
    parser.add_argument("transactions", type=int)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()
    print(run(args.db, args.seed, args.transactions, args.pause))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
