"""The bench application: sensor-like tables written with plain sqlite3, as an app would.

Every table has the same 6-column shape (an integer key, a sensor name, a
reading, a unit, a quality flag and an ISO timestamp): a 7-column row once the
change log adds its op. The change mix is 80 % inserts, 15 % updates of the
reading and 5 % deletes of the oldest rows; every statement changes exactly one
row, so the number of captured changes is known without reading the log.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS {name} (id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, "
    "value REAL, unit TEXT, quality INTEGER NOT NULL, taken_at TEXT NOT NULL)"
)
INSERT = "INSERT INTO {name} (id, sensor, value, unit, quality, taken_at) VALUES (?, ?, ?, ?, ?, ?)"
UPDATE = "UPDATE {name} SET value = ?, quality = ? WHERE id = ?"
DELETE = "DELETE FROM {name} WHERE id = ?"
UNITS = ("°C", "%RH", "hPa", "V", "A", "l/min")


def table_names(count: int) -> list[str]:
    return [f"readings_{i:02d}" for i in range(count)]


def create(db: Path, tables: Sequence[str], synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A new WAL database with the tables; returns the app's autocommit connection."""
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute(f"PRAGMA synchronous = {synchronous}")
    for name in tables:
        con.execute(TABLE_SQL.format(name=name))
    return con


def install_triggers(
    con: sqlite3.Connection, db: Path, tables: Sequence[str], delete_key_only: bool = False
) -> None:
    """The agent's own trigger installer (`edge-agent triggers install` does the same)."""
    from edge_agent.capture.triggers import ChangeLog

    ChangeLog(con, db, delete_key_only).install(
        list(tables), seed=0, now_ms=int(time.time() * 1000)
    )


def reading(rng: random.Random, i: int) -> tuple[object, ...]:
    sensor = i % 97
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{i % 1000:03d}Z"
    return (i, f"plant-1/line-{sensor % 4}/sensor-{sensor:02d}", round(rng.uniform(-20, 80), 3),
            UNITS[sensor % len(UNITS)], 0 if rng.random() < 0.98 else 1, ts)


class Writer:
    """Writes the change mix into a set of tables, tracking live ids per table."""

    def __init__(self, con: sqlite3.Connection, tables: Sequence[str], seed: int = 7) -> None:
        self.con = con
        self.tables = list(tables)
        self.rng = random.Random(seed)
        self.next_id = dict.fromkeys(self.tables, 1)
        self.oldest = dict.fromkeys(self.tables, 1)  # ids below this were deleted

    def _statements(self, table: str, count: int) -> tuple[list[tuple[object, ...]],
                                                           list[tuple[object, ...]],
                                                           list[tuple[object, ...]]]:
        inserts: list[tuple[object, ...]] = []
        updates: list[tuple[object, ...]] = []
        deletes: list[tuple[object, ...]] = []
        for _ in range(count):
            live = self.next_id[table] - self.oldest[table]
            r = self.rng.random()
            if r < 0.80 or live < 20:
                inserts.append(reading(self.rng, self.next_id[table]))
                self.next_id[table] += 1
            elif r < 0.95:
                target = self.rng.randrange(self.oldest[table] + 5, self.next_id[table])
                updates.append((round(self.rng.uniform(-20, 80), 3), 0, target))
            else:
                deletes.append((self.oldest[table],))
                self.oldest[table] += 1
        return inserts, updates, deletes

    def transaction(self, changes: int) -> None:
        """One transaction of ``changes`` changes spread over the tables in runs."""
        per_table = max(1, changes // len(self.tables))
        self.con.execute("BEGIN")
        try:
            left = changes
            start = self.rng.randrange(len(self.tables))
            for k in range(len(self.tables)):
                if left <= 0:
                    break
                table = self.tables[(start + k) % len(self.tables)]
                n = left if k == len(self.tables) - 1 else min(per_table, left)
                ins, upd, dele = self._statements(table, n)
                # Updates and deletes only touch ids below those inserted in this run.
                self.con.executemany(INSERT.format(name=table), ins)
                self.con.executemany(UPDATE.format(name=table), upd)
                self.con.executemany(DELETE.format(name=table), dele)
                left -= n
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def write(self, changes: int, per_transaction: int = 1000) -> int:
        done = 0
        while done < changes:
            n = min(per_transaction, changes - done)
            self.transaction(n)
            done += n
        return done


def filled_log(db: Path, tables: Sequence[str], changes: int, seed: int = 7) -> float:
    """A database whose change log holds ``changes`` changes; returns seconds it took."""
    t0 = time.perf_counter()
    con = create(db, tables)
    install_triggers(con, db, tables)
    Writer(con, tables, seed).write(changes)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return time.perf_counter() - t0


def copy_db(template: Path, dest: Path) -> Path:
    """A fresh copy of a closed (checkpointed) database file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, dest)
    return dest


def log_count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(
            "SELECT count(*) FROM _edge_cdc_log WHERE tid != 0 AND op != 's'").fetchone()[0])
    finally:
        con.close()
