"""Scenario 1: what the capture triggers cost the application's writes.

The same inserts, updates and deletes run on a fresh database with and without
the agent's triggers (installed with ``ChangeLog.install``, as `edge-agent
triggers install` does), in two shapes:

(a) batched: 1,000-row transactions, WAL, synchronous=NORMAL (executemany, the
    engine-bound case where the trigger's extra row write shows most), plus the
    same with one ``execute`` call per row (a typical Python app);
(b) single-row commits, WAL, synchronous=FULL (every commit waits for fsync).

Shape (a) and the delete anatomy are timed in the app's CPU seconds
(``time.process_time``: user + system, so the WAL writes count): the work is all
CPU there (no fsync with synchronous=NORMAL), and CPU time does not move when other
processes share the machine, where wall time did by up to x2 between runs. Shape (b)
waits for the disk and is timed by the wall clock.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench import app
from bench.common import Mode, log, summary, verdict, workdir

OPS = ("insert", "update", "delete")
TABLE = "readings_00"
TARGETS = {"batched": 0.5, "batched_execute": 0.5, "single_full": 0.9}


def _sql(op: str) -> str:
    return {"insert": app.INSERT, "update": app.UPDATE, "delete": app.DELETE}[op].format(
        name=TABLE)


def _params(op: str, n: int, rng: random.Random) -> list[tuple[object, ...]]:
    if op == "insert":
        return [app.reading(rng, i) for i in range(1, n + 1)]
    if op == "update":
        ids = list(range(1, n + 1))
        rng.shuffle(ids)
        return [(rng.uniform(-20, 80), 0, i) for i in ids]
    return [(i,) for i in range(1, n + 1)]


def batched(db: Path, n: int, triggers: bool, per_row: bool) -> dict[str, float]:
    """Rows per second of each op, in 1,000-row transactions."""
    con = app.create(db, [TABLE], synchronous="NORMAL")
    if triggers:
        app.install_triggers(con, db, [TABLE])
    rng = random.Random(1)
    rates: dict[str, float] = {}
    for op in OPS:
        params = _params(op, n, rng)
        sql = _sql(op)
        t0 = time.process_time()
        for start in range(0, n, 1000):
            chunk = params[start:start + 1000]
            con.execute("BEGIN")
            if per_row:
                for p in chunk:
                    con.execute(sql, p)
            else:
                con.executemany(sql, chunk)
            con.execute("COMMIT")
        rates[op] = n / (time.process_time() - t0)
    con.close()
    return rates


def warm_wal(con: sqlite3.Connection) -> None:
    """Grow the WAL past its auto-checkpoint size, then restart it: the measured commits
    overwrite WAL space as in a running app, instead of extending the file (on ext4 an
    fsync that extends a file also commits the journal: slower, and more often for the
    side that writes fewer pages, which would skew the comparison)."""
    con.execute("CREATE TABLE _warm (b BLOB)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO _warm VALUES (?)", [(bytes(4000),) for _ in range(2500)])
    con.execute("COMMIT")
    con.execute("DROP TABLE _warm")
    con.execute("PRAGMA wal_checkpoint(RESTART)")


def single(db: Path, n: int, triggers: bool) -> dict[str, float]:
    """Commits per second of single-row transactions with synchronous=FULL."""
    con = app.create(db, [TABLE], synchronous="FULL")
    if triggers:
        app.install_triggers(con, db, [TABLE])
    warm_wal(con)
    rng = random.Random(2)
    rates: dict[str, float] = {}
    for op in OPS:
        params = _params(op, n, rng)
        sql = _sql(op)
        t0 = time.perf_counter()
        for p in params:
            con.execute(sql, p)  # autocommit: one transaction, one fsync, per row
        rates[op] = n / (time.perf_counter() - t0)
    con.close()
    return rates


# What a delete trigger's cost is made of: the agent's own trigger, the same with a
# constant change time (no julianday('now') per row), the one that logs only the key,
# that one with a constant change time (what a change-log row costs at the least), and
# a trigger that fires but writes nothing (the cost of firing at all).
# Each variant maps to its trigger body (a statement); None = as installed.
OLD_ROW = "OLD.id, OLD.sensor, OLD.value, OLD.unit, OLD.quality, OLD.taken_at"
KEY_ONLY = 'the agent\'s, delete_image = "key"'
ANATOMY: dict[str, str | None] = {
    "no trigger": None,
    "the agent's trigger": None,
    "same, constant ts_ms": "INSERT INTO {log} (tid, op, ts_ms, c0, c1, c2, c3, c4, c5) "
                            f"VALUES (1, 'd', 0, {OLD_ROW})",
    KEY_ONLY: None,  # installed by the agent with its key-only delete option
    "key only, constant ts_ms": "INSERT INTO {log} (tid, op, ts_ms, c0) VALUES (1, 'd', 0, OLD.id)",
    "a trigger that writes nothing": "SELECT 1 WHERE 0",
}


def delete_anatomy(db_dir: Path, n: int) -> dict[str, float]:
    """Rows/s of 1,000-row delete transactions under variants of the delete trigger."""
    from edge_agent.capture.triggers import LOG, trigger_names

    rates: dict[str, float] = {}
    for i, (variant, body) in enumerate(ANATOMY.items()):
        db = db_dir / f"anatomy-{i}.db"
        con = app.create(db, [TABLE])
        if variant != "no trigger":
            app.install_triggers(con, db, [TABLE], delete_key_only=variant == KEY_ONLY)
        if body is not None:
            dele = trigger_names(1)[2]
            con.execute(f"DROP TRIGGER {dele}")
            con.execute(f"CREATE TRIGGER {dele} AFTER DELETE ON {TABLE} BEGIN "
                        f"{body.format(log=LOG)}; END")
        params = _params("insert", n, random.Random(3))
        for start in range(0, n, 1000):
            con.execute("BEGIN")
            con.executemany(_sql("insert"), params[start:start + 1000])
            con.execute("COMMIT")
        t0 = time.process_time()
        for start in range(0, n, 1000):
            con.execute("BEGIN")
            con.executemany(_sql("delete"), [(k,) for k in range(start + 1, start + 1001)])
            con.execute("COMMIT")
        rates[variant] = n / (time.process_time() - t0)
        con.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    return rates


def run(mode: Mode) -> dict[str, Any]:
    shapes = {
        "batched": lambda db, trig: batched(db, mode.batch_rows, trig, per_row=False),
        "batched_execute": lambda db, trig: batched(db, mode.batch_rows, trig, per_row=True),
        "single_full": lambda db, trig: single(db, mode.single_commits, trig),
    }
    raw: dict[str, dict[str, dict[str, list[float]]]] = {
        s: {v: {op: [] for op in OPS} for v in ("plain", "triggers")} for s in shapes}
    anatomy: dict[str, list[float]] = {}
    with workdir("triggers") as work:
        for run_no in range(mode.runs):
            for variant, rate in delete_anatomy(work, mode.batch_rows).items():
                anatomy.setdefault(variant, []).append(rate)
            for shape, fn in shapes.items():
                # Alternate the order so drift on a noisy machine hits both sides.
                order = ("plain", "triggers") if run_no % 2 == 0 else ("triggers", "plain")
                for variant in order:
                    db = work / f"{shape}-{variant}-{run_no}.db"
                    rates = fn(db, variant == "triggers")
                    for op, rate in rates.items():
                        raw[shape][variant][op].append(rate)
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{db}{suffix}").unlink(missing_ok=True)
            log(f"triggers: run {run_no + 1}/{mode.runs} done")
    out: dict[str, Any] = {"rows_batched": mode.batch_rows,
                           "commits_single": mode.single_commits, "shapes": {}}
    for shape in shapes:
        target = TARGETS[shape]
        ops: dict[str, Any] = {}
        for op in OPS:
            plain = summary(raw[shape]["plain"][op])
            trig = summary(raw[shape]["triggers"][op])
            ratios = [t / p for t, p in zip(trig["runs"], plain["runs"], strict=True)]
            ratio = summary(ratios)
            # What the trigger adds to each row's write, in microseconds: portable to a
            # device whose fsync is slower (the ratio there is (t + fsync) / (t + d + fsync)).
            added = summary([1e6 / t - 1e6 / p
                             for t, p in zip(trig["runs"], plain["runs"], strict=True)])
            ops[op] = {"plain": plain, "triggers": trig, "ratio": ratio, "added_us": added,
                       "target": target,
                       "verdict": verdict(ratio["median"], target, higher_is_better=True)}
        out["shapes"][shape] = ops
    base = anatomy["no trigger"]
    out["delete_anatomy"] = {
        variant: {"rate": summary(rates),
                  "ratio": summary([r / b for r, b in zip(rates, base, strict=True)]),
                  "added_us": summary([1e6 / r - 1e6 / b for r, b in zip(rates, base,
                                                                        strict=True)])}
        for variant, rates in anatomy.items()}
    return out
