"""Scenario 5: from a commit in the application to the file visible in the lake.

The real daemon (`edge-agent run`, dir sink) runs with a latency-tuned config
(max_file_age 200ms, debounce 20ms, poll_interval 1s). The app commits single
rows, spaced 0.3-0.7 s apart at random; after each commit the bench polls the
lake's partition directory every 2 ms until a new Parquet file appears (a file
appears whole: the sink renames it into place).

The cost of that setting is files: a second part streams a steady 10 changes/s
for a while, with the tuned config and (full mode) the default one (max_file_age
30s, debounce 200ms, poll_interval 5s), and counts the files, their sizes and
the daemon's CPU.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import app
from bench.common import (
    agent_config,
    dir_bytes,
    log,
    percentile,
    proc_cpu,
    start_daemon,
    summary,
    write_config,
)
from bench.session import Session

TABLE = "readings_00"
TUNED = {"agent": {"poll_interval": "1s", "debounce": "20ms"},
         "buffer": {"max_file_age": "200ms"}}
DEFAULT = {"agent": {"poll_interval": "5s", "debounce": "200ms"},
           "buffer": {"max_file_age": "30s"}}
STREAM_RATE = 10.0  # changes per second


def _setup(work: Path, settings: dict[str, dict[str, str]]) -> tuple[Path, Path, Path]:
    db = work / "app" / "app.db"
    db.parent.mkdir(parents=True)
    con = app.create(db, [TABLE])
    app.install_triggers(con, db, [TABLE])
    con.close()
    config = write_config(work, agent_config(work, db, [TABLE], **settings))
    return db, config, work / "lake"


def _partition(lake: Path) -> Path:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    return lake / "bronze" / "app" / TABLE / f"date={day}"


def _parquet_count(directory: Path) -> int:
    try:
        return sum(1 for e in os.scandir(directory) if e.name.endswith(".parquet"))
    except FileNotFoundError:
        return 0


def latency_run(session: Session, run_no: int, commits: int) -> list[float]:
    work = session.scratch(f"latency-{run_no}")
    db, config, lake = _setup(work, TUNED)
    daemon = start_daemon(work, config)
    rng = random.Random(run_no)
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    con.execute("PRAGMA synchronous = NORMAL")
    latencies: list[float] = []
    try:
        time.sleep(1.0)
        for i in range(commits):
            time.sleep(rng.uniform(0.3, 0.7))
            part = _partition(lake)
            before = _parquet_count(part)
            con.execute(app.INSERT.format(name=TABLE), app.reading(rng, i + 1))
            committed = time.perf_counter()
            deadline = committed + 15
            while _parquet_count(part) <= before and time.perf_counter() < deadline:
                time.sleep(0.002)
            seen = time.perf_counter()
            latencies.append(seen - committed if seen < deadline else float("inf"))
    finally:
        con.close()
        daemon.stop()
    return latencies


def stream_run(session: Session, name: str, settings: dict[str, dict[str, str]],
               seconds: float) -> dict[str, Any]:
    work = session.scratch(f"stream-{name}")
    db, config, lake = _setup(work, settings)
    daemon = start_daemon(work, config)
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    con.execute("PRAGMA synchronous = NORMAL")
    rng = random.Random(5)
    written = 0
    try:
        time.sleep(1.0)
        cpu0 = proc_cpu(daemon.proc.pid)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            written += 1
            con.execute(app.INSERT.format(name=TABLE), app.reading(rng, written))
            next_at = start + written / STREAM_RATE
            time.sleep(max(0.0, next_at - time.perf_counter()))
        elapsed = time.perf_counter() - start
        cpu = proc_cpu(daemon.proc.pid) - cpu0
        files, size = dir_bytes(lake, ".parquet")  # sealed and shipped during the stream
    finally:
        con.close()
        daemon.stop()
    return {"seconds": elapsed, "changes": written, "files": files, "bytes": size,
            "files_per_hour": files / elapsed * 3600,
            "bytes_per_file": size / files if files else None,
            "bytes_per_change": size / max(1, written) if files else None,
            "cpu_s": cpu, "cpu_share": cpu / elapsed}


def run(session: Session) -> dict[str, Any]:
    mode = session.mode
    runs: list[list[float]] = []
    for run_no in range(mode.runs):
        runs.append(latency_run(session, run_no, mode.latency_commits))
        log(f"latency: run {run_no + 1}/{mode.runs} done")
    pooled = [x for r in runs for x in r]
    out: dict[str, Any] = {
        "config": TUNED, "commits_per_run": mode.latency_commits,
        "p50": summary([percentile(r, 50) for r in runs]),
        "p99": summary([percentile(r, 99) for r in runs]),
        "max": summary([max(r) for r in runs]),
        "pooled_p50": percentile(pooled, 50), "pooled_p99": percentile(pooled, 99),
        "samples": pooled,
        "stream_rate": STREAM_RATE,
        "stream": {"tuned": stream_run(session, "tuned", TUNED, mode.stream_seconds)},
    }
    if mode.stream_default:
        out["stream"]["default"] = stream_run(session, "default", DEFAULT, mode.stream_seconds)
    log("latency: streams done")
    return out
