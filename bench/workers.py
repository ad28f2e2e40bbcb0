"""Capture programs run in their own processes, so each one's CPU and memory are its own.

    python -m bench.workers agent CONFIG [--profile OUT]   in-process Agent, DirShipper
    python -m bench.workers floor DB OUTDIR [--chunk ROWS]  sqlite3 -> Arrow -> 1 Parquet/table
    python -m bench.workers naive DB OUTDIR [--poll ROWS]   cron style: 1 Parquet per poll

Each prints one JSON line: the changes it wrote, and the wall and CPU seconds of
its work alone (after imports and set-up), measured with time.process_time().
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

LOG = "_edge_cdc_log"
META = "_edge_cdc_tables"


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def agent(config: Path, profile: Path | None) -> dict[str, Any]:
    from edge_agent.clock import SystemClock
    from edge_agent.config import load_config
    from edge_agent.runtime.agent import Agent
    from edge_agent.shippers.dir import DirShipper
    from edge_agent.spool.statedir import StateDir

    cfg = load_config(config, {})
    statedir = StateDir(cfg.agent.state_dir)
    statedir.lock()
    agent = Agent(cfg, SystemClock(), DirShipper(cfg.sink.path, cfg.sink.create), statedir)
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
    wall0, cpu0 = _clock()
    if profiler is not None:
        profiler.enable()
    result = agent.flush(agent.clock.monotonic() + 3600)
    if profiler is not None:
        profiler.disable()
    wall1, cpu1 = _clock()
    peak_buffered = agent.writer.peak_buffered_bytes
    agent.close()
    statedir.unlock()
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    return {"wall": wall1 - wall0, "cpu": cpu1 - cpu0, "ok": result.ok,
            "errors": result.errors, "peak_buffered_bytes": peak_buffered}


def _shapes(con: sqlite3.Connection) -> dict[int, tuple[str, list[list[Any]]]]:
    return {tid: (name, json.loads(cols)) for tid, name, cols in
            con.execute(f"SELECT tid, name, columns FROM {META}")}


def _arrow_type(decltype: str) -> Any:
    import pyarrow as pa

    t = decltype.upper()
    if "INT" in t:
        return pa.int64()
    if any(k in t for k in ("CHAR", "CLOB", "TEXT")):
        return pa.string()
    return pa.float64()


def floor(db: Path, out: Path, chunk: int = 100_000) -> dict[str, Any]:
    """The least work that gets the change log into typed Parquet: one scan, one file per
    table, no envelope columns, no fsync, no state, no pruning. Rows are converted in
    chunks of ``chunk`` rows (large for the least CPU; 5,000 for a memory baseline)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wall0, cpu0 = _clock()
    con = sqlite3.connect(db, isolation_level=None)
    shapes = _shapes(con)
    width = max(len(cols) for _, cols in shapes.values())
    schemas = {}
    for tid, (_, cols) in shapes.items():
        fields = [pa.field("_op", pa.string()), pa.field("_pos", pa.int64()),
                  pa.field("_ts_ms", pa.int64())]
        fields += [pa.field(c[0], _arrow_type(c[1])) for c in cols]
        schemas[tid] = pa.schema(fields)
    writers: dict[int, Any] = {}
    values = ", ".join(f"c{i}" for i in range(width))
    cur = con.execute(f"SELECT tid, op, seq, ts_ms, {values} FROM {LOG} WHERE tid != 0 "
                      "ORDER BY seq")
    changes = 0
    while True:
        rows = cur.fetchmany(chunk)
        if not rows:
            break
        by_tid: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_tid.setdefault(row[0], []).append(row)
        for tid, part in by_tid.items():
            schema = schemas[tid]
            cols = list(zip(*part, strict=True))[1:1 + len(schema)]
            arrays = [pa.array(c, f.type) for c, f in zip(cols, schema, strict=True)]
            batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
            writer = writers.get(tid)
            if writer is None:
                name = shapes[tid][0]
                writer = writers[tid] = pq.ParquetWriter(
                    out / f"{name}.parquet", schema, compression="zstd", compression_level=1)
            writer.write_batch(batch)
            changes += len(part)
    for writer in writers.values():
        writer.close()
    con.close()
    wall1, cpu1 = _clock()
    return {"wall": wall1 - wall0, "cpu": cpu1 - cpu0, "changes": changes}


def naive(db: Path, out: Path, poll_rows: int) -> dict[str, Any]:
    """A cron-style script: each poll reads the next rows, lets pyarrow infer the types,
    writes one Parquet file for the poll, saves its position and deletes what it read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wall0, cpu0 = _clock()
    con = sqlite3.connect(db, isolation_level=None)
    width = sum(1 for r in con.execute(f"PRAGMA table_info({LOG})") if r[1][1:].isdigit())
    names = ["seq", "tid", "op", "ts_ms", *[f"c{i}" for i in range(width)]]
    state = out / "position"
    last = 0
    changes = 0
    polls = 0
    while True:
        rows = con.execute(f"SELECT {', '.join(names)} FROM {LOG} WHERE seq > ? AND tid != 0 "
                           "ORDER BY seq LIMIT ?", (last, poll_rows)).fetchall()
        if not rows:
            break
        table = pa.table(dict(zip(names, map(list, zip(*rows, strict=True)), strict=True)))
        pq.write_table(table, out / f"poll-{polls:06d}.parquet", compression="zstd",
                       compression_level=1)
        last = int(rows[-1][0])
        state.write_text(str(last))
        con.execute(f"DELETE FROM {LOG} WHERE seq <= ?", (last,))
        changes += len(rows)
        polls += 1
    con.close()
    wall1, cpu1 = _clock()
    return {"wall": wall1 - wall0, "cpu": cpu1 - cpu0, "changes": changes, "files": polls}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workers")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("agent")
    p.add_argument("config", type=Path)
    p.add_argument("--profile", type=Path)
    p = sub.add_parser("floor")
    p.add_argument("db", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--chunk", type=int, default=100_000)
    p = sub.add_parser("naive")
    p.add_argument("db", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--poll", type=int, default=5000)
    args = parser.parse_args()
    if args.cmd == "agent":
        result = agent(args.config, args.profile)
    elif args.cmd == "floor":
        result = floor(args.db, args.out, args.chunk)
    else:
        result = naive(args.db, args.out, args.poll)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
