"""Scenario 2: the cost of capturing a backlog of changes into sealed zstd Parquet.

A change log pre-filled by the app (trigger mode, N changes over 5 tables) is
captured by four programs, each in its own process on a fresh copy:

- agent: the in-process ``Agent`` with a ``DirShipper``, ``agent.flush()``: read
  pages, build typed batches, write row groups, seal (fsync, sha256), publish
  into the spool, record in the state DB, ship into the lake, prune the log;
- edge-agent flush: the same through the real CLI, whole process (start-up,
  imports and set-up included), CPU from RUSAGE_CHILDREN deltas;
- floor: one sqlite3 scan into typed Arrow, one Parquet file per table, no
  envelope columns, no durability work, no state, no pruning;
- naive: a cron-style script, one Parquet file per poll of 5,000 rows with
  pyarrow's inferred types, its position in a text file, the log pruned per poll.

The first three report the CPU of their work alone (after imports), so the
comparison is of the capture path, not of interpreter start-up.
"""

from __future__ import annotations

import json
import pstats
import shutil
from pathlib import Path
from typing import Any

from bench import app
from bench.common import (
    Mode,
    agent_cmd,
    agent_config,
    dir_bytes,
    log,
    run_timed,
    runtime_python,
    summary,
    verdict,
    write_config,
)
from bench.session import Session

PROGRAMS = ("floor", "naive", "agent", "cli")
TARGET = 1.2  # agent CPU per change <= 1.2x the floor's (issue 14)


def _lake_rows(lake: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in lake.rglob("*.parquet"))


def _worker(*args: str) -> tuple[dict[str, Any], float, float]:
    t = run_timed([runtime_python(), "-m", "bench.workers", *args])
    if t.returncode != 0:
        raise RuntimeError(f"bench.workers {args[0]} failed: {t.stderr[-2000:]}")
    return json.loads(t.stdout.strip().splitlines()[-1]), t.wall, t.cpu


def one(program: str, session: Session, work: Path, tables: list[str], n: int,
        profile: Path | None = None) -> dict[str, Any]:
    db = session.fresh_db(len(tables), n, work)
    out = work / "out"
    out.mkdir()
    if program in ("agent", "cli"):
        config = write_config(work, agent_config(work, db, tables))
        if program == "agent":
            extra = ("--profile", str(profile)) if profile else ()
            res, wall, cpu = _worker("agent", str(config), *extra)
        else:
            t = run_timed(agent_cmd("flush", "--config", str(config), "--timeout", "3600"))
            if t.returncode != 0:
                raise RuntimeError(f"edge-agent flush failed: {t.stderr[-2000:]}")
            res, wall, cpu = {"wall": t.wall, "cpu": t.cpu}, t.wall, t.cpu
        res["changes"] = _lake_rows(work / "lake")
        res["files"], res["bytes"] = dir_bytes(work / "lake", ".parquet")
        res["manifests"], res["manifest_bytes"] = dir_bytes(work / "lake", ".manifest.json")
    else:
        res, wall, cpu = _worker(program, str(db), str(out))
        res["files"], res["bytes"] = dir_bytes(out, ".parquet")
    res["process_wall"] = wall
    res["process_cpu"] = cpu
    if res["changes"] != n:
        raise RuntimeError(f"{program} captured {res['changes']} changes, expected {n}")
    return res


def run(mode: Mode, session: Session) -> dict[str, Any]:
    n = mode.capture_changes
    tables = app.table_names(mode.capture_tables)
    raw: dict[str, list[dict[str, Any]]] = {p: [] for p in PROGRAMS}
    for run_no in range(mode.runs):
        order = PROGRAMS[run_no % len(PROGRAMS):] + PROGRAMS[:run_no % len(PROGRAMS)]
        for program in order:
            work = session.scratch(f"capture-{program}-{run_no}")
            raw[program].append(one(program, session, work, tables, n))
            if program == "agent" and "capture_lake" not in session.kept:
                kept = session.root / "kept-capture-lake"
                shutil.copytree(work / "lake", kept)
                session.kept["capture_lake"] = kept
            shutil.rmtree(work)
        log(f"capture: run {run_no + 1}/{mode.runs} done")
    out: dict[str, Any] = {"changes": n, "tables": len(tables), "programs": {}}
    for program, results in raw.items():
        # The CLI has no work-only figure: compare whole processes for it.
        key = "process_cpu" if program == "cli" else "cpu"
        cpu = [r[key] for r in results]
        floor_cpu = [r[key] for r in raw["floor"]]
        entry = {
            "changes_per_s": summary([n / r["wall"] for r in results]),
            "cpu_s_per_million": summary([r["cpu"] / n * 1e6 for r in results]),
            "process_cpu_s_per_million": summary([r["process_cpu"] / n * 1e6 for r in results]),
            "process_wall": summary([r["process_wall"] for r in results]),
            "ratio_to_floor": summary([c / f for c, f in zip(cpu, floor_cpu, strict=True)]),
            "files": results[0]["files"],
            "bytes": results[0]["bytes"],
        }
        if program == "agent":
            entry["peak_buffered_bytes"] = results[0].get("peak_buffered_bytes")
        out["programs"][program] = entry
    agent_ratio = out["programs"]["agent"]["ratio_to_floor"]["median"]
    out["target"] = TARGET
    out["verdict"] = verdict(agent_ratio, TARGET, higher_is_better=False)
    out["profile"] = profile_capture(mode, session)
    return out


# -- where the time goes ---------------------------------------------------------
# Parts of the capture path: (label, file, function, nested parts to subtract), so the
# shares do not overlap.
AREAS = (
    ("read the change log (sqlite3 -> tuples)", "capture/triggers.py", "read_page", ()),
    ("group rows by table (runs of one table)", "capture/sqlite_trigger.py", "read",
     (("capture/triggers.py", "read_page"), ("capture/pages.py", "of"))),
    ("split by day (min/max of the batch; a per-row walk only across midnight)",
     "runtime/pipeline.py", "day_runs", ()),
    ("rows -> typed Arrow batches", "bronze/schema.py", "to_batch", ()),
    ("buffer + Parquet encode/write (zstd)", "bronze/writer.py", "add", ()),
    ("seal: close, fsync, sha256", "bronze/writer.py", "seal", ()),
    ("publish into the spool + manifest", "spool/outbox.py", "publish", ()),
    ("record in the state DB", "runtime/trigger_pipeline.py", "record", ()),
    ("ship into the lake (copy, fsync)", "runtime/shipping.py", "step", ()),
    ("prune the change log", "capture/triggers.py", "prune", ()),
    ("spool quota check (quota.make_room)", "spool/quota.py", "make_room", ()),
)


def _short(path: str) -> str:
    marker = "edge_agent/"
    if marker in path:
        return path[path.index(marker):]
    if "site-packages/" in path:
        return path[path.index("site-packages/") + len("site-packages/"):]
    return path.rsplit("/", 1)[-1]


def profile_capture(mode: Mode, session: Session) -> dict[str, Any]:
    """cProfile of the agent's capture path (agent.flush) on a backlog."""
    n = min(mode.profile_changes, mode.capture_changes)
    tables = app.table_names(mode.capture_tables)
    work = session.scratch("capture-profile")
    prof = work / "agent.prof"
    res = one("agent", session, work, tables, n, profile=prof)
    stats = pstats.Stats(str(prof))
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    entries = stats.stats  # type: ignore[attr-defined]
    def cum(path: str, func: str) -> float:
        return float(sum(v[3] for (f, _, name), v in entries.items()
                         if f.endswith(path) and name == func))

    areas = []
    for label, path, func, nested in AREAS:
        own = cum(path, func) - sum(cum(p, f) for p, f in nested)
        areas.append({"area": label, "cum_s": own, "share": own / total})
    rest = total - sum(a["cum_s"] for a in areas)
    areas.append({"area": "everything else (step loop, logging, ...)", "cum_s": rest,
                  "share": rest / total})
    top = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:15]
    hot = [{"function": f"{_short(f)}:{line}({name})", "calls": v[1], "tottime": v[2],
            "cumtime": v[3], "share": v[2] / total} for (f, line, name), v in top]
    shutil.rmtree(work)
    return {"changes": n, "profiled_cpu": res["cpu"], "total_tt": total, "areas": areas,
            "top_tottime": hot}
