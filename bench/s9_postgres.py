"""Scenario 9: PostgreSQL trigger capture, side by side with baselines in the same run.

(a) What the triggers cost the application's writes: the same inserts, updates
    and deletes on a sensor table, without and with the agent's triggers
    (``PgChangeLog.install``, as `edge-agent triggers install` does), in
    1,000-row transactions and as single-row commits, on a server with fsync on.
(b) Capture: a backlog of changes in ``edge_cdc.log`` captured by a one-shot
    `edge-agent flush` (CPU seconds of the agent process; the server's work is
    not in it), against a floor script: the same driver (psycopg) reading the
    same change log with the same decoding query into zstd Parquet, with no
    positions, durability or spool.
(c) Snapshot: an existing table captured as op ``r`` rows by a one-shot flush
    (wall time, the server's copying included), against ADBC's binary COPY of
    the table into Parquet.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from bench.common import agent_cmd, log, run_timed, runtime_python, summary, workdir, write_config

TABLE = (
    "CREATE TABLE readings (id bigint PRIMARY KEY, sensor text NOT NULL, value double precision,"
    " unit text, quality int NOT NULL, taken_at timestamptz NOT NULL)"
)
INSERT = "INSERT INTO readings VALUES (%s, %s, %s, %s, %s, now())"
UPDATE = "UPDATE readings SET value = %s, quality = %s WHERE id = %s"
DELETE = "DELETE FROM readings WHERE id = %s"
OPS = ("insert", "update", "delete")
SIZES = {"quick": {"rows": 5_000, "single": 100, "capture": 20_000, "snapshot": 20_000},
         "full": {"rows": 50_000, "single": 1_000, "capture": 200_000, "snapshot": 200_000}}
FLOOR = """
import sys, psycopg, pyarrow as pa, pyarrow.parquet as pq
dsn, out = sys.argv[1], sys.argv[2]
con = psycopg.connect(dsn, autocommit=True)
query = ("SELECT l.seq, l.txid::text::bigint, l.op::text, l.ts_ms, r.id, r.sensor, r.value, r.unit,"
         " r.quality, r.taken_at FROM edge_cdc.log l LEFT JOIN LATERAL jsonb_populate_record("
         "NULL::edge_cdc.shape_1, l.data) r ON true WHERE l.seq > %s ORDER BY l.seq LIMIT 5000")
names = ["_pos", "_tx", "_op", "_ts_ms", "id", "sensor", "value", "unit", "quality", "taken_at"]
writer, last = None, 0
while True:
    rows = con.execute(query, (last,)).fetchall()
    if not rows:
        break
    table = pa.table(dict(zip(names, map(list, zip(*rows)))))
    writer = writer or pq.ParquetWriter(out, table.schema, compression="zstd",
                                        compression_level=1)
    writer.write_table(table)
    last = rows[-1][0]
writer.close()
"""


def _params(op: str, n: int, rng: random.Random) -> list[tuple[Any, ...]]:
    if op == "insert":
        return [(i, f"s{i % 50}", rng.uniform(-20, 80), "°C", 0) for i in range(1, n + 1)]
    ids = list(range(1, n + 1))
    rng.shuffle(ids)
    if op == "update":
        return [(rng.uniform(-20, 80), 1, i) for i in ids]
    return [(i,) for i in ids]


def fresh(server: Any, name: str, triggers: bool) -> str:
    import psycopg

    from edge_agent.capture.pg_log import PgChangeLog

    dsn = server.create_database(name)
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(TABLE)
        if triggers:
            PgChangeLog(con, dsn).install(["readings"], 0, 0, snapshot_new=False)
    return str(dsn)


def writes(server: Any, name: str, n: int, single: bool, triggers: bool) -> dict[str, float]:
    """Rows per second of each op: 1,000-row transactions, or one commit per row."""
    return workload(fresh(server, name, triggers), n, single)


def workload(dsn: str, n: int, single: bool) -> dict[str, float]:
    """The inserts, updates and deletes of ``writes`` on a prepared database."""
    import psycopg

    rng = random.Random(1)
    rates: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=single) as con:
        for op in OPS:
            params = _params(op, n, rng)
            sql = {"insert": INSERT, "update": UPDATE, "delete": DELETE}[op]
            t0 = time.perf_counter()
            if single:
                for p in params:
                    con.execute(sql, p)
            else:
                with con.cursor() as cur:
                    for start in range(0, n, 1000):
                        cur.executemany(sql, params[start:start + 1000])
                        con.commit()
            rates[op] = n / (time.perf_counter() - t0)
    return rates


def _backlog(server: Any, name: str, n: int) -> str:
    """A database whose change log holds n changes (80 % inserts, 15 % updates, 5 %
    deletes, 1,000-change transactions)."""
    return fill(fresh(server, name, triggers=True), n)


def fill(dsn: str, n: int) -> str:
    """The backlog's changes of ``_backlog``, made on a prepared database."""
    import psycopg

    rng = random.Random(2)
    inserts = int(n * 0.8)
    with psycopg.connect(dsn) as con, con.cursor() as cur:
        rows = _params("insert", inserts, rng)
        for start in range(0, inserts, 1000):
            cur.executemany(INSERT, rows[start:start + 1000])
            con.commit()
        cur.executemany(UPDATE, [(1.0, 1, i) for i in range(1, int(n * 0.15) + 1)])
        cur.executemany(DELETE, [(i,) for i in range(1, n - inserts - int(n * 0.15) + 1)])
        con.commit()
    return dsn


def _config(work: Path, dsn: str, snapshot: str) -> Path:
    data = {
        "agent": {"device_id": "bench-gw", "state_dir": str(work / "state"),
                  "log_format": "json"},
        "buffer": {"max_memory": "16MiB"},
        "sources": [{"name": "app", "kind": "postgres", "dsn": dsn, "tables": ["readings"],
                     "snapshot": snapshot}],
        "sink": {"kind": "dir", "path": str(work / "lake"), "create": True},
    }
    return write_config(work, data)


def timed(what: str, cmd: list[str]) -> Any:
    done = run_timed(cmd)
    if done.returncode:
        raise RuntimeError(f"{what} failed: {done.stderr[-500:]}")
    return done


def _agent_flush(run_dir: Path, dsn: str, snapshot: str) -> Any:
    """A one-shot `edge-agent flush` of the database into its own state and lake."""
    run_dir.mkdir()
    return timed("agent flush", agent_cmd("flush", "--config",
                                          str(_config(run_dir, dsn, snapshot))))


def capture(server: Any, work: Path, run_no: int, n: int) -> dict[str, float]:
    dsn = _backlog(server, f"cap{run_no}", n)
    floor = timed("floor script", [runtime_python(), "-c", FLOOR, dsn,
                                    str(work / f"floor{run_no}.parquet")])
    agent = _agent_flush(work / f"cap{run_no}", dsn, "never")
    return {"agent_cpu": agent.cpu, "agent_wall": agent.wall,
            "floor_cpu": floor.cpu, "floor_wall": floor.wall}


ADBC = """
import sys, adbc_driver_postgresql.dbapi as db, pyarrow.parquet as pq
with db.connect(sys.argv[1]) as con, con.cursor() as cur:
    cur.execute("SELECT * FROM readings")
    pq.write_table(cur.fetch_arrow_table(), sys.argv[2], compression="zstd", compression_level=1)
"""


def snapshot(server: Any, work: Path, run_no: int, n: int) -> dict[str, float]:
    import sys

    import psycopg

    dsn = fresh(server, f"snap{run_no}", triggers=False)
    with psycopg.connect(dsn) as con, con.cursor() as cur:
        rows = _params("insert", n, random.Random(3))
        for start in range(0, n, 1000):
            cur.executemany(INSERT, rows[start:start + 1000])
        con.commit()
    adbc = timed("ADBC baseline", [sys.executable, "-c", ADBC, dsn,
                                    str(work / f"adbc{run_no}.parquet")])
    agent = _agent_flush(work / f"snap{run_no}", dsn, "initial")
    return {"agent_rows_s": n / agent.wall, "adbc_rows_s": n / adbc.wall,
            "agent_cpu": agent.cpu, "adbc_cpu": adbc.cpu}


def run(mode: Any) -> dict[str, Any]:
    from tests.servers import Postgres

    sizes = SIZES["full" if mode.name == "full" else "quick"]
    server = Postgres(fsync=True)
    raw: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        raw.setdefault(key, []).append(value)

    try:
        with workdir("postgres") as work:
            for run_no in range(mode.runs):
                order = (False, True) if run_no % 2 == 0 else (True, False)
                for single in (False, True):
                    n = sizes["single"] if single else sizes["rows"]
                    shape = "single" if single else "batched"
                    for trig in order:
                        name = f"w{run_no}{shape}{int(trig)}"
                        for op, rate in writes(server, name, n, single, trig).items():
                            add(f"{shape}.{op}.{'triggers' if trig else 'plain'}", rate)
                for key, value in capture(server, work, run_no, sizes["capture"]).items():
                    add(f"capture.{key}", value)
                for key, value in snapshot(server, work, run_no, sizes["snapshot"]).items():
                    add(f"snapshot.{key}", value)
                log(f"postgres: run {run_no + 1}/{mode.runs} done")
    finally:
        server.remove()
    return _summarise(raw, sizes)


def _summarise(raw: dict[str, list[float]], sizes: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": sizes, "writes": {}}
    for shape in ("batched", "single"):
        for op in OPS:
            plain, trig = raw[f"{shape}.{op}.plain"], raw[f"{shape}.{op}.triggers"]
            out["writes"][f"{shape} {op}"] = {
                "plain": summary(plain), "triggers": summary(trig),
                "ratio": summary([t / p for t, p in zip(trig, plain, strict=True)])}
    n = sizes["capture"]
    cap = {k: raw[f"capture.{k}"] for k in ("agent_cpu", "agent_wall", "floor_cpu",
                                            "floor_wall")}
    out["capture"] = {
        "changes": n,
        "agent_cpu_s_per_1m": summary([c / n * 1e6 for c in cap["agent_cpu"]]),
        "floor_cpu_s_per_1m": summary([c / n * 1e6 for c in cap["floor_cpu"]]),
        "agent_changes_s": summary([n / w for w in cap["agent_wall"]]),
        "floor_changes_s": summary([n / w for w in cap["floor_wall"]]),
        "cpu_ratio": summary([a / f for a, f in zip(cap["agent_cpu"], cap["floor_cpu"],
                                                      strict=True)]),
    }
    snap = {k: raw[f"snapshot.{k}"] for k in ("agent_rows_s", "adbc_rows_s", "agent_cpu",
                                             "adbc_cpu")}
    out["snapshot"] = {
        "rows": sizes["snapshot"],
        **{k: summary(v) for k, v in snap.items()},
        "ratio": summary([a / b for a, b in zip(snap["agent_rows_s"], snap["adbc_rows_s"],
                                                  strict=True)]),
    }
    return out
