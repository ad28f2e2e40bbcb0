"""Invariants 1-3 on PostgreSQL under SIGKILL: concurrent writers with overlapping
transactions, contended keys, key moves and out-of-order commits, while the real daemon
is killed at random moments; the lake rebuilds both tables exactly, and positions run
1..N with neither a gap nor a repeat."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.capture.test_pg_trigger import rows_of
from tests.conftest import agent_cmd, agent_env, config_dict, run_cli, write_config
from tests.lake import read_changes, replay

BIG = "(SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 300) g)"
TABLES = ("CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL, note text)",
          "CREATE TABLE lines (id int PRIMARY KEY, order_id int, amount numeric(12,2))")


class Writers:
    """Threads that run random short transactions (some rolled back, some deadlocked)
    and count the changes they commit."""

    def __init__(self, dsn: str, seed: int, threads: int, transactions: int,
                 logical: bool = False) -> None:
        self.dsn = dsn
        self.logical = logical  # also TRUNCATE, TOASTed values and large transactions
        self.changes = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(seed + i, transactions))
                        for i in range(threads)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def join(self) -> None:
        for t in self.threads:
            t.join()

    def _run(self, seed: int, transactions: int) -> None:
        rng = random.Random(seed)
        with psycopg.connect(self.dsn) as con:
            for _ in range(transactions):
                try:
                    done = sum(self._statement(con, rng) for _ in range(rng.randint(1, 4)))
                    if self.logical:
                        done += self._logical_only(con, rng)
                    if rng.random() < 0.1:
                        con.rollback()
                        continue
                    con.commit()
                except (psycopg.errors.DeadlockDetected, psycopg.errors.UniqueViolation):
                    con.rollback()
                    continue
                with self.lock:
                    self.changes += done
                time.sleep(rng.uniform(0, 0.03))

    @staticmethod
    def _logical_only(con: psycopg.Connection[Any], rng: random.Random) -> int:
        pick = rng.random()
        if pick < 0.02:
            con.execute("TRUNCATE lines")
            return 1  # a "t" marker
        if pick < 0.05:  # one transaction touching every line
            return con.execute("UPDATE lines SET amount = amount + 1").rowcount
        if pick < 0.15:  # a value stored out of line (TOAST), kept by later updates
            return con.execute(f"UPDATE orders SET note = {BIG} WHERE id = %s",
                               (rng.randint(1, 60),)).rowcount
        return 0

    @staticmethod
    def _statement(con: psycopg.Connection[Any], rng: random.Random) -> int:
        key = rng.randint(1, 60)  # few keys: writers contend for the same rows
        pick = rng.random()
        if pick < 0.35:
            cur = con.execute("INSERT INTO orders VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                              (key, rng.randint(0, 9), "n" * rng.randint(0, 50)))
        elif pick < 0.6:
            cur = con.execute("UPDATE orders SET qty = qty + 1 WHERE id = %s", (key,))
        elif pick < 0.7:
            cur = con.execute("DELETE FROM orders WHERE id = %s", (key,))
        elif pick < 0.75:  # a key move logs a delete and the new row
            cur = con.execute("UPDATE orders SET id = id + 1000 WHERE id = %s", (key,))
            return 2 * cur.rowcount
        else:
            cur = con.execute(
                "INSERT INTO lines SELECT g, %s, g * 1.25 FROM generate_series(%s::int, %s::int) g"
                " ON CONFLICT (id) DO UPDATE SET amount = lines.amount + 1",
                (key, key * 10, key * 10 + rng.randint(0, 5)))
        return cur.rowcount


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["trigger", "logical"])
def test_sigkill_at_random_moments_on_postgres_loses_and_duplicates_nothing(
        tmp_path: Path, pg_db: str, mode: str) -> None:
    logical = mode == "logical"
    with psycopg.connect(pg_db, autocommit=True) as con:
        for ddl in TABLES:
            con.execute(ddl)
        if logical:  # unchanged TOASTed values then come from the old row
            con.execute("ALTER TABLE orders REPLICA IDENTITY FULL")
    data = config_dict(tmp_path, tmp_path / "unused.db", ["orders", "lines"],
                       buffer={"max_file_age": "300ms", "max_file_bytes": "64KiB",
                               "row_group_bytes": "16KiB"})
    src = data["sources"][0]
    del src["path"]
    src.update({"kind": "postgres", "dsn": pg_db, "page_rows": 200, "mode": mode})
    if logical:
        src["slot"] = "edge_agent_kill_" + pg_db.rsplit("/", 1)[1].lower()
    config = write_config(tmp_path, data)
    installed = run_cli("triggers", "install", "--config", str(config))
    assert installed.returncode == 0, installed.stderr
    if logical:  # the slot is made by the agent's first start: every change after it is streamed
        first = run_cli("flush", "--config", str(config), "--timeout", "60")
        assert first.returncode == 0, first.stdout + first.stderr

    writers = Writers(pg_db, seed=7, threads=4, transactions=600, logical=logical)
    writers.start()
    rng = random.Random(99)
    kills = 0
    with (tmp_path / "agent.log").open("ab") as log:
        while writers.alive() or kills < 8:
            daemon = subprocess.Popen(agent_cmd("run", "--config", str(config)),
                                      env=agent_env(), stdout=log, stderr=log)
            time.sleep(rng.uniform(0.5, 1.8))
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
            kills += 1
    writers.join()
    flushed = run_cli("flush", "--config", str(config), "--timeout", "60")
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr

    changes = read_changes(tmp_path / "lake")
    state = replay(changes)
    for table in ("orders", "lines"):
        assert state.get(f"public.{table}", {}) == rows_of(pg_db, table), table
    assert [c["_pos"] for c in changes] == list(range(1, len(changes) + 1))
    # Every committed change once; the initial snapshot (op r) ran while writers wrote
    # (a snapshot started over after a kill begins with a "t" marker of no transaction).
    assert sum(c["_op"] != "r" and c["_tx"] is not None for c in changes) == writers.changes
    assert kills >= 8
