"""Scenario 4: memory of a burst, idle memory and start-up time.

Burst: `edge-agent flush` one-shot (the CLI's own ``main``) on a pre-filled change
log, buffer.max_memory = 16MiB, 1 table and 20 tables. The peak is the process's
VmHWM from /proc/self/status, read by the process itself just before it exits
(exact), and VmRSS is sampled every 10 ms from /proc/<pid>/status for the
timeline. ``ru_maxrss`` of children is not used: it inherits the parent's peak.

Baselines: the same wrapper around ``import pyarrow.parquet, structlog, watchdog``
(the brief's baseline), the same plus a first use of pyarrow (a tiny array, a
cast, a Parquet write: code that allocates once, on first use), and the floor
program of scenario 2 converting the same burst in 5,000-row chunks.

Allocator variants (1 table, same burst): pyarrow's default pool is mimalloc, which
commits its arenas eagerly; the agent sets MIMALLOC_ARENA_EAGER_COMMIT=0 unless the
environment has it. The same run with eager commit on (pyarrow's default) and with
ARROW_DEFAULT_MEMORY_POOL=system shows what the choice is worth.

Idle RSS of `edge-agent run` and the time from process start to READY=1 are
measured in scenario 8 (the same daemons), and reported here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import app
from bench.common import (
    ROOT,
    MiB,
    agent_config,
    env,
    log,
    median,
    proc_status,
    summary,
    verdict,
    write_config,
)
from bench.session import Session

MAX_MEMORY = 16 * MiB
TARGET = MAX_MEMORY + 64 * MiB

WRAP = (
    "import os, sys\n"
    "{body}\n"
    "open(os.environ['BENCH_STATUS_OUT'], 'w').write(open('/proc/self/status').read())\n"
    "sys.exit(rc)\n"
)
CLI_BODY = "from edge_agent.cli import main\nrc = main(sys.argv[1:])"
BASELINE_BODY = "import pyarrow.parquet, structlog, watchdog\nrc = 0"
FIRST_USE_BODY = (
    "import pyarrow as pa, pyarrow.parquet as pq, structlog, watchdog\n"
    "t = pa.table({'a': pa.array([1, 2], pa.int64()).cast(pa.float64()), "
    "'b': pa.array(['x', 'y'], pa.string())})\n"
    "pq.write_table(t, pa.BufferOutputStream(), compression='zstd')\nrc = 0"
)
FLOOR_BODY = (
    "import structlog, watchdog\nfrom pathlib import Path\nfrom bench.workers import floor\n"
    "floor(Path(sys.argv[1]), Path(sys.argv[2]), 5000)\nrc = 0"
)
# The agent turns mimalloc's eager arena commit off itself (edge_agent/__init__.py)
# unless the variable is set: the variants measure pyarrow's default and the system
# allocator against it.
VARIANTS = {
    "mimalloc, eager commit on (pyarrow's default)": {"MIMALLOC_ARENA_EAGER_COMMIT": "1"},
    "system allocator": {"ARROW_DEFAULT_MEMORY_POOL": "system"},
}


def _status_kib(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measured(body: str, args: list[str], work: Path, timeout: float = 900,
             **extra_env: str) -> dict[str, Any]:
    """Run a wrapped Python program; its exact VmHWM and a sampled VmRSS timeline."""
    out = work / "status.txt"
    cmd = [sys.executable, "-c", WRAP.format(body=body), *args]
    samples: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    errors = (work / "stderr.txt").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(BENCH_STATUS_OUT=str(out), **extra_env),
                            stdout=subprocess.DEVNULL, stderr=errors)
    try:
        while proc.poll() is None:
            rss = proc_status(proc.pid).get("VmRSS")
            if rss:
                samples.append((time.perf_counter() - t0, rss))
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{args} did not finish in {timeout}s")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        errors.close()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        err = (work / "stderr.txt").read_text(errors="replace")
        raise RuntimeError(f"wrapped program failed ({proc.returncode}): {err[-2000:]}")
    text = out.read_text()
    return {"hwm": _status_kib(text, "VmHWM"), "rss_end": _status_kib(text, "VmRSS"),
            "wall": wall, "timeline": samples}


def burst(session: Session, tables: int, run_no: int, name: str = "",
          **extra_env: str) -> dict[str, Any]:
    n = session.mode.burst_changes
    work = session.scratch(f"memory-t{tables}-{run_no}{name}")
    db = session.fresh_db(tables, n, work)
    config = write_config(work, agent_config(work, db, app.table_names(tables)))
    res = measured(CLI_BODY, ["flush", "--config", str(config), "--timeout", "3600"], work,
                   **extra_env)
    shutil.rmtree(work)
    return res


def floor_burst(session: Session, run_no: int) -> dict[str, Any]:
    work = session.scratch(f"memory-floor-{run_no}")
    db = session.fresh_db(1, session.mode.burst_changes, work)
    (work / "out").mkdir()
    res = measured(FLOOR_BODY, [str(db), str(work / "out")], work)
    shutil.rmtree(work)
    return res


def _thin(timeline: list[tuple[float, int]], points: int = 400) -> list[tuple[float, int]]:
    step = max(1, len(timeline) // points)
    return timeline[::step]


def run(session: Session) -> dict[str, Any]:
    mode = session.mode
    baseline: list[dict[str, Any]] = []
    first_use: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    bursts: dict[int, list[dict[str, Any]]] = {1: [], 20: []}
    variants: dict[str, list[dict[str, Any]]] = {k: [] for k in VARIANTS}
    for run_no in range(mode.runs):
        work = session.scratch(f"memory-baseline-{run_no}")
        baseline.append(measured(BASELINE_BODY, [], work))
        first_use.append(measured(FIRST_USE_BODY, [], work))
        floors.append(floor_burst(session, run_no))
        for tables, results in bursts.items():
            results.append(burst(session, tables, run_no))
        for i, (name, extra) in enumerate(VARIANTS.items()):
            variants[name].append(burst(session, 1, run_no, f"-v{i}", **extra))
        log(f"memory: run {run_no + 1}/{mode.runs} done")
    base = summary([b["hwm"] for b in baseline])
    out: dict[str, Any] = {
        "changes": mode.burst_changes, "max_memory": MAX_MEMORY, "target": TARGET,
        "baseline_hwm": base, "baseline_wall": summary([b["wall"] for b in baseline]),
        "first_use_hwm": summary([f["hwm"] for f in first_use]),
        "floor_hwm": summary([f["hwm"] for f in floors]),
        "floor_timeline": _thin(floors[0]["timeline"]),
        "variants": {name: {"env": VARIANTS[name], "hwm": summary([r["hwm"] for r in rs]),
                            "verdict": verdict(median([r["hwm"] for r in rs]), TARGET,
                                               higher_is_better=False)}
                     for name, rs in variants.items()},
        "bursts": {},
    }
    for tables, results in bursts.items():
        hwm = summary([r["hwm"] for r in results])
        out["bursts"][str(tables)] = {
            "hwm": hwm,
            "above_baseline": summary([r["hwm"] - base["median"] for r in results]),
            "ratio_to_baseline": hwm["median"] / base["median"],
            "wall": summary([r["wall"] for r in results]),
            "changes_per_s": summary([mode.burst_changes / r["wall"] for r in results]),
            "verdict": verdict(hwm["median"], TARGET, higher_is_better=False),
            "timeline": _thin(results[0]["timeline"]),
        }
    return out
