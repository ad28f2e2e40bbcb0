"""Scenario 11: `edge-agent lake verify` on a lake of many bronze files, side by side
with a floor in the same run.

A lake of N small, real bronze files (one device, one source, four tables, each file
a Parquet file with its manifest, as the dir sink writes them) is made once. Then:
`edge-agent lake verify --lake L` (manifests and file sizes), the same with
`--deep` (every file read: sha256, rows, schema), and a floor script that only
walks the tree and parses every manifest as JSON (what any check must do at
least). Wall time and CPU of each whole process.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from bench.common import agent_cmd, log, run_timed, runtime_python, summary, workdir

SIZES = {"quick": 2_000, "full": 100_000}
FLOOR = """
import json, os, sys
count = 0
for root, _, names in os.walk(os.path.join(sys.argv[1], "bronze")):
    for name in names:
        if name.endswith(".manifest.json"):
            with open(os.path.join(root, name), "rb") as f:
                json.loads(f.read())
            count += 1
print(count)
"""


def _parquet(rows: int) -> tuple[bytes, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fingerprint = "0123456789abcdef"
    table = pa.table({"_pos": pa.array(range(rows), pa.int64()),
                      "v": pa.array(["x"] * rows)}).replace_schema_metadata(
        {b"edge_agent.schema_fingerprint": fingerprint.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue(), fingerprint


def make_lake(lake: Path, files: int) -> int:
    from edge_agent.bronze.layout import FileKey

    data, fingerprint = _parquet(10)
    sha = hashlib.sha256(data).hexdigest()
    total = 0
    for ordinal in range(1, files + 1):
        table = f"t{ordinal % 4}"
        first = (ordinal - 1) * 10 + 1
        key = FileKey("bench-gw", "src", table, "2026-12-04", first, first + 9)
        path = lake / key.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        manifest = {"format": "1", "id": key.file_id, "ordinal": ordinal, "device": "bench-gw",
                    "source": "src", "table": table, "partition": {"date": "2026-12-04"},
                    "rows": 10, "first_pos": first, "last_pos": first + 9,
                    "schema_fingerprint": fingerprint, "sha256": sha, "bytes": len(data),
                    "created_ms": 0, "clock": {"synced": True}}
        (lake / key.manifest_relpath).write_text(json.dumps(manifest))
        total += len(data)
    return total


def run(mode: Any) -> dict[str, Any]:
    files, runs = SIZES[mode.name], mode.runs
    out: dict[str, list[float]] = {k: [] for k in (
        "verify_wall", "verify_cpu", "deep_wall", "deep_cpu", "floor_wall", "floor_cpu")}
    with workdir("lake-verify") as work:
        lake = work / "lake"
        size = make_lake(lake, files)
        log(f"lake verify: a lake of {files:,} files ({size / 1e6:.1f} MB) made")
        for i in range(runs):
            for name, cmd in (
                ("floor", [runtime_python(), "-c", FLOOR, str(lake)]),
                ("verify", agent_cmd("lake", "verify", "--lake", str(lake))),
                ("deep", agent_cmd("lake", "verify", "--lake", str(lake), "--deep")),
            ):
                timed = run_timed(cmd)
                if timed.returncode != 0:
                    raise RuntimeError(f"{name} failed: {timed.stderr[-500:]}")
                out[f"{name}_wall"].append(timed.wall)
                out[f"{name}_cpu"].append(timed.cpu)
            log(f"lake verify: run {i + 1}/{runs} done")
    result: dict[str, Any] = {"files": files, "bytes": size}
    result.update({k: summary(v) for k, v in out.items()})
    result["files_s"] = summary([files / w for w in out["verify_wall"]])
    result["ratio"] = summary([v / f for v, f in zip(out["verify_wall"], out["floor_wall"],
                                                      strict=True)])
    return result
