"""Scenario 13: `edge-agent lake silver` on a lake of many bronze files, side by side
with a floor in the same run.

A lake of N real bronze files (one device, one source, four tables, 10 changes a
file: inserts, updates and deletes over 5,000 keys a table) with manifests, as the
dir sink writes them. Then: a first `lake silver` (every file merged into four new
Delta tables), an incremental run after 10 % more files landed, and a run with
nothing new. The floor is the least any current-state build must do: one pyarrow
script that reads every file of a table and keeps the last change per key (no
merge, no Delta, not incremental), writing one Parquet file per table. Wall time,
CPU and peak RSS of each whole process.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
from pathlib import Path
from typing import Any

from bench.common import agent_cmd, log, run_timed, runtime_python, summary, workdir

SIZES = {"quick": [400], "full": [10_000, 100_000]}
RUNS = {"quick": 1, "full": 3}
ROWS, KEYS, TABLES = 10, 5_000, 4
# Peak RSS of a child: the wrapper runs it and prints ru_maxrss (KiB) last.
MAXRSS = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
if done.returncode:
    sys.stderr.write(done.stderr.decode()[-2000:])
    sys.exit(done.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
FLOOR = """
import glob, os, sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
lake, out = sys.argv[1], sys.argv[2]
for table in sorted(os.listdir(os.path.join(lake, "bronze", "src"))):
    files = sorted(glob.glob(os.path.join(lake, "bronze", "src", table, "*", "*.parquet")))
    t = pa.concat_tables([pq.ParquetFile(f).read() for f in files]).sort_by("_pos")
    t = t.append_column("__i", pa.array(range(len(t)), pa.int64()))
    last = t.group_by(["id"], use_threads=False).aggregate([("__i", "max")])
    t = t.take(last["__i_max"]).drop_columns(["__i"])
    t = t.filter(pc.not_equal(t["_op"], "d"))
    pq.write_table(t, os.path.join(out, table + ".parquet"))
"""


def _file(rng: random.Random, first: int) -> Any:
    import pyarrow as pa

    ops = rng.choices("cud", weights=(3, 6, 1), k=ROWS)
    schema = pa.schema([("_op", pa.string()), ("_pos", pa.int64()), ("_ts_ms", pa.int64()),
                        ("_captured_ms", pa.int64()), ("_device", pa.string()),
                        ("_source", pa.string()), ("_table", pa.string()),
                        ("id", pa.int64()), ("v", pa.string()), ("n", pa.float64()),
                        ("_unfit", pa.string())])
    return pa.table({
        "_op": ops, "_pos": list(range(first, first + ROWS)),
        "_ts_ms": [1_764_000_000_000 + first + i for i in range(ROWS)],
        "_captured_ms": [1_764_000_000_000] * ROWS, "_device": ["bench-gw"] * ROWS,
        "_source": ["src"] * ROWS, "_table": ["t"] * ROWS,
        "id": [rng.randrange(KEYS) for _ in range(ROWS)],
        "v": [f"value {rng.random():.6f}" for _ in range(ROWS)],
        "n": [rng.random() for _ in range(ROWS)], "_unfit": [None] * ROWS,
    }, schema=schema).replace_schema_metadata({b"edge_agent.key": b'["id"]',
                                               b"edge_agent.schema_fingerprint": b"0" * 16})


def make_lake(lake: Path, first_ordinal: int, files: int, seed: int) -> int:
    """Files ``first_ordinal`` .. ``first_ordinal + files - 1``; their bytes."""
    import pyarrow.parquet as pq

    from edge_agent.bronze.layout import FileKey

    rng = random.Random(seed)
    total = 0
    for ordinal in range(first_ordinal, first_ordinal + files):
        first = (ordinal - 1) * ROWS + 1
        key = FileKey("bench-gw", "src", f"t{ordinal % TABLES}", "2026-12-05", first,
                      first + ROWS - 1)
        buf = io.BytesIO()
        pq.write_table(_file(rng, first), buf, compression="zstd")
        data = buf.getvalue()
        path = lake / key.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        manifest = {"format": "1", "id": key.file_id, "ordinal": ordinal, "device": "bench-gw",
                    "source": "src", "table": key.table, "partition": {"date": "2026-12-05"},
                    "rows": ROWS, "first_pos": first, "last_pos": first + ROWS - 1,
                    "schema_fingerprint": "0" * 16,
                    "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                    "created_ms": 0, "clock": {"synced": True}}
        (lake / key.manifest_relpath).write_text(json.dumps(manifest))
        total += len(data)
    return total


def _timed(name: str, cmd: list[str]) -> tuple[float, float, float]:
    timed = run_timed([sys.executable, "-c", MAXRSS, *cmd])
    if timed.returncode != 0:
        raise RuntimeError(f"{name} failed: {timed.stderr[-800:]}")
    return timed.wall, timed.cpu, int(timed.stdout.split()[-1]) / 1024


def _size(files: int, runs: int) -> dict[str, Any]:
    keys = ("first", "incremental", "nothing", "floor")
    out: dict[str, dict[str, list[float]]] = {
        k: {"wall": [], "cpu": [], "rss": []} for k in keys}
    extra = max(files // 10, 1)
    for i in range(runs):
        with workdir("lake-silver") as work:
            lake = work / "lake"
            make_lake(lake, 1, files, seed=i)
            log(f"lake silver: a lake of {files:,} files made (run {i + 1}/{runs})")
            (work / "floor").mkdir()
            silver = ["lake", "silver", "--lake", str(lake), "--to", str(work / "silver")]
            steps = [("floor", [runtime_python(), "-c", FLOOR, str(lake), str(work / "floor")]),
                     ("first", agent_cmd(*silver))]
            for name, cmd in steps:
                for k, v in zip(("wall", "cpu", "rss"), _timed(name, cmd), strict=True):
                    out[name][k].append(v)
            make_lake(lake, files + 1, extra, seed=1000 + i)
            for name in ("incremental", "nothing"):
                for k, v in zip(("wall", "cpu", "rss"), _timed(name, agent_cmd(*silver)),
                                strict=True):
                    out[name][k].append(v)
    result: dict[str, Any] = {"files": files, "changes": files * ROWS, "extra": extra}
    for name, figures in out.items():
        result[name] = {k: summary(v) for k, v in figures.items()}
    result["ratio"] = summary([s / f for s, f in zip(out["first"]["wall"],
                                                      out["floor"]["wall"], strict=True)])
    return result


def run(mode: Any) -> dict[str, Any]:
    sizes = SIZES[mode.name]
    return {"sizes": [_size(n, RUNS[mode.name] if n <= 10_000 else 1) for n in sizes]}
