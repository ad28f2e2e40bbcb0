"""Scenario 4: memory of a burst, idle memory and start-up time.

Burst: `edge-agent flush` one-shot (the CLI's own ``main``) on a pre-filled change
log, buffer.max_memory = 16MiB, 1 table and 20 tables. The peak is the process's
VmHWM from /proc/self/status, read by the process itself just before it exits
(exact), and VmRSS is sampled every 10 ms from /proc/<pid>/status for the
timeline. ``ru_maxrss`` of children is not used: it inherits the parent's peak.

Baselines: the same wrapper around ``import pyarrow.parquet, structlog, watchdog``
(the brief's baseline), the same plus a first use of pyarrow (a tiny array, a
cast, a Parquet write: code that allocates once, on first use), and the floor
program of scenario 2 converting the same burst in 5,000-row chunks, for 1 and for
20 tables (it keeps one ParquetWriter open per table, as the agent does). Every
program runs from the runtime-only venv (bench.common.runtime_python).

Targets (issue 14): peak RSS <= the floor program's peak for the same tables + 8 MiB;
anonymous memory at the peak <= max_memory + 24 MiB. RssAnon and RssFile are sampled
with VmRSS every 10 ms; the figures "at the peak" are those of the sample with the
highest VmRSS (file-backed = library pages mapped from disk).

Allocator variants (1 table, same burst): pyarrow's default pool is mimalloc, which
commits its arenas eagerly and returns freed pages after a 10 ms delay; the agent sets
MIMALLOC_ARENA_EAGER_COMMIT=0 and MIMALLOC_PURGE_DELAY=0 unless the environment has
them (edge_agent/__init__.py). The same run with pyarrow's settings, with the purge
delay back at 10 ms, and with ARROW_DEFAULT_MEMORY_POOL=system shows what each
choice is worth (peak, anonymous memory and changes/s).

Idle RSS of `edge-agent run` and the time from process start to READY=1 are
measured in scenario 8 (the same daemons), and reported here.
"""

from __future__ import annotations

import shutil
import subprocess
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
    runtime_python,
    summary,
    verdict,
    write_config,
)
from bench.session import Session

MAX_MEMORY = 16 * MiB
ABOVE_FLOOR = 8 * MiB  # peak RSS <= the floor program's + this
ANON_ABOVE_BUDGET = 24 * MiB  # anonymous memory at the peak <= max_memory + this
TABLES = (1, 20)

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
# The agent sets mimalloc's eager arena commit off and its purge delay to 0 itself
# (edge_agent/__init__.py) unless the variables are set: the variants measure
# pyarrow's defaults, each setting, and the system allocator against it.
VARIANTS = {
    "mimalloc as pyarrow sets it (eager commit, purge delay 10 ms)":
        {"MIMALLOC_ARENA_EAGER_COMMIT": "1", "MIMALLOC_PURGE_DELAY": "10"},
    "mimalloc, eager commit off, purge delay 10 ms": {"MIMALLOC_PURGE_DELAY": "10"},
    "system allocator": {"ARROW_DEFAULT_MEMORY_POOL": "system"},
}


def _status_kib(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measured(body: str, args: list[str], work: Path, timeout: float = 900,
             python: str | None = None, **extra_env: str) -> dict[str, Any]:
    """Run a wrapped Python program (the runtime-only venv's unless ``python`` is given);
    its exact VmHWM, a sampled VmRSS timeline and RssAnon / RssFile at the sampled peak."""
    out = work / "status.txt"
    cmd = [python or runtime_python(), "-c", WRAP.format(body=body), *args]
    samples: list[tuple[float, int]] = []
    peak: dict[str, int] = {}
    t0 = time.perf_counter()
    errors = (work / "stderr.txt").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(BENCH_STATUS_OUT=str(out), **extra_env),
                            stdout=subprocess.DEVNULL, stderr=errors)
    try:
        while proc.poll() is None:
            status = proc_status(proc.pid)
            rss = status.get("VmRSS")
            if rss:
                samples.append((time.perf_counter() - t0, rss))
                if rss >= peak.get("VmRSS", 0):
                    peak = status
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
            "anon_at_peak": peak.get("RssAnon", 0), "file_at_peak": peak.get("RssFile", 0),
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


def floor_burst(session: Session, tables: int, run_no: int) -> dict[str, Any]:
    work = session.scratch(f"memory-floor-t{tables}-{run_no}")
    db = session.fresh_db(tables, session.mode.burst_changes, work)
    (work / "out").mkdir()
    res = measured(FLOOR_BODY, [str(db), str(work / "out")], work)
    shutil.rmtree(work)
    return res


def _thin(timeline: list[tuple[float, int]], points: int = 400) -> list[tuple[float, int]]:
    step = max(1, len(timeline) // points)
    return timeline[::step]


def _burst_summary(results: list[dict[str, Any]], floors: list[dict[str, Any]],
                   base: float, changes: int) -> dict[str, Any]:
    hwm = summary([r["hwm"] for r in results])
    floor = summary([f["hwm"] for f in floors])
    bound_peak = floor["median"] + ABOVE_FLOOR
    bound_anon = MAX_MEMORY + ANON_ABOVE_BUDGET
    anon = summary([r["anon_at_peak"] for r in results])
    return {
        "hwm": hwm, "floor_hwm": floor,
        "anon_at_peak": anon, "file_at_peak": summary([r["file_at_peak"] for r in results]),
        "floor_anon_at_peak": summary([f["anon_at_peak"] for f in floors]),
        "floor_file_at_peak": summary([f["file_at_peak"] for f in floors]),
        # per run against the same run's floor: the machine drifts between runs
        "above_floor": summary([r["hwm"] - f["hwm"] for r, f in zip(results, floors,
                                                                    strict=True)]),
        "above_baseline": summary([r["hwm"] - base for r in results]),
        "ratio_to_baseline": summary([r["hwm"] / base for r in results]),
        "wall": summary([r["wall"] for r in results]),
        "changes_per_s": summary([changes / r["wall"] for r in results]),
        "bound_peak": bound_peak, "bound_anon": bound_anon,
        "verdict": verdict(hwm["median"], bound_peak, higher_is_better=False),
        "verdict_anon": verdict(anon["median"], bound_anon, higher_is_better=False),
        "timeline": _thin(results[0]["timeline"]),
        "floor_timeline": _thin(floors[0]["timeline"]),
    }


def run(session: Session) -> dict[str, Any]:
    mode = session.mode
    baseline: list[dict[str, Any]] = []
    first_use: list[dict[str, Any]] = []
    floors: dict[int, list[dict[str, Any]]] = {t: [] for t in TABLES}
    bursts: dict[int, list[dict[str, Any]]] = {t: [] for t in TABLES}
    variants: dict[str, list[dict[str, Any]]] = {k: [] for k in VARIANTS}
    for run_no in range(mode.runs):
        work = session.scratch(f"memory-baseline-{run_no}")
        baseline.append(measured(BASELINE_BODY, [], work))
        first_use.append(measured(FIRST_USE_BODY, [], work))
        for tables in TABLES:
            floors[tables].append(floor_burst(session, tables, run_no))
            bursts[tables].append(burst(session, tables, run_no))
        for i, (name, extra) in enumerate(VARIANTS.items()):
            variants[name].append(burst(session, 1, run_no, f"-v{i}", **extra))
        log(f"memory: run {run_no + 1}/{mode.runs} done")
    base = summary([b["hwm"] for b in baseline])
    bound_1 = median([f["hwm"] for f in floors[1]]) + ABOVE_FLOOR
    out: dict[str, Any] = {
        "changes": mode.burst_changes, "max_memory": MAX_MEMORY,
        "above_floor_target": ABOVE_FLOOR, "anon_above_budget_target": ANON_ABOVE_BUDGET,
        "baseline_hwm": base, "baseline_wall": summary([b["wall"] for b in baseline]),
        "first_use_hwm": summary([f["hwm"] for f in first_use]),
        "variants": {name: {"env": VARIANTS[name], "hwm": summary([r["hwm"] for r in rs]),
                            "anon_at_peak": summary([r["anon_at_peak"] for r in rs]),
                            "changes_per_s": summary([mode.burst_changes / r["wall"]
                                                      for r in rs]),
                            "verdict": verdict(median([r["hwm"] for r in rs]), bound_1,
                                               higher_is_better=False)}
                     for name, rs in variants.items()},
        "bursts": {str(t): _burst_summary(bursts[t], floors[t], base["median"],
                                          mode.burst_changes) for t in TABLES},
    }
    out["floor_hwm"] = out["bursts"]["1"]["floor_hwm"]
    out["floor_timeline"] = out["bursts"]["1"]["floor_timeline"]
    return out
