"""Scenario 12, second part: `edge-agent lake verify` on fleet-shaped lakes (many
gateways, small files, one source and table each), against scenario 11's floor
(walk the tree, parse every manifest). Whole processes; wall time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import agent_cmd, log, run_timed, runtime_python, summary
from bench.common import workdir as scratch_dir


def _verify_lake(lake: Path, gateways: int, per: int, date: str) -> int:
    """A lake as `gateways` gateways x `per` files leave it (small files, scenario 11's)."""
    import hashlib

    from bench.s11_verify import _parquet
    from edge_agent.bronze.layout import FileKey

    data, fingerprint = _parquet(10)
    sha = hashlib.sha256(data).hexdigest()
    for g in range(gateways):
        device = f"gw{g:04d}"
        for ordinal in range(1, per + 1):
            first = (ordinal - 1) * 10 + 1
            key = FileKey(device, "app", "readings", date, first, first + 9)
            path = lake / key.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            (lake / key.manifest_relpath).write_text(json.dumps({
                "format": "1", "id": key.file_id, "ordinal": ordinal, "device": device,
                "source": "app", "table": "readings", "partition": {"date": date},
                "rows": 10, "first_pos": first, "last_pos": first + 9,
                "schema_fingerprint": fingerprint, "sha256": sha, "bytes": len(data),
                "created_ms": 0, "clock": {"synced": True}}))
    return gateways * per


def verify_lakes(lakes: list[tuple[int, int]], date: str, runs: int) -> dict[str, Any]:
    from bench.s11_verify import FLOOR

    out: dict[str, Any] = {}
    for gateways, per in lakes:
        with scratch_dir("fleet-verify") as work:
            files = _verify_lake(work / "lake", gateways, per, date)
            walls: dict[str, list[float]] = {"verify": [], "deep": [], "floor": []}
            for _ in range(runs):
                for name, cmd in (
                    ("floor", [runtime_python(), "-c", FLOOR, str(work / "lake")]),
                    ("verify", agent_cmd("lake", "verify", "--lake", str(work / "lake"))),
                    ("deep", agent_cmd("lake", "verify", "--lake", str(work / "lake"),
                                       "--deep")),
                ):
                    timed = run_timed(cmd)
                    if timed.returncode != 0:
                        raise RuntimeError(f"{name} on {files} files: rc {timed.returncode}")
                    walls[name].append(timed.wall)
        out[str(files)] = {"gateways": gateways, "files": files,
                           **{k: summary(v) for k, v in walls.items()},
                           "files_s": summary([files / w for w in walls["verify"]])}
        log(f"fleet: lake verify on {files:,} files: {min(walls['verify']):.2f} s")
    return out
