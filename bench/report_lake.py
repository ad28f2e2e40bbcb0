"""BENCHMARKS.md and console lines of scenario 11 (`lake verify`)."""

from __future__ import annotations

from typing import Any


def _m(s: dict[str, Any], key: str) -> float:
    return float(s[key]["median"])


def markdown(sc: dict[str, Any]) -> list[str]:
    if "11" not in sc:
        return []
    s = sc["11"]
    return [
        "### 11. `lake verify`", "",
        f"A lake of {s['files']:,} bronze files ({s['bytes'] / 1e6:.1f} MB; each a Parquet "
        "file with its manifest) checked by `edge-agent lake verify` (manifests and sizes) and "
        "with `--deep` (every file read), against a floor script that only walks the tree "
        "and parses each manifest as JSON. Whole processes, interpreter start included.", "",
        "| program | wall s | CPU s | files/s |",
        "|---|---|---|---|",
        f"| `lake verify` | {_m(s, 'verify_wall'):.2f} | {_m(s, 'verify_cpu'):.2f} | "
        f"{_m(s, 'files_s'):,.0f} |",
        f"| `lake verify --deep` | {_m(s, 'deep_wall'):.2f} | {_m(s, 'deep_cpu'):.2f} | "
        f"{s['files'] / _m(s, 'deep_wall'):,.0f} |",
        f"| floor: walk + parse manifests | {_m(s, 'floor_wall'):.2f} | "
        f"{_m(s, 'floor_cpu'):.2f} | {s['files'] / _m(s, 'floor_wall'):,.0f} |", "",
        f"`lake verify` takes x{_m(s, 'ratio'):.2f} the floor's wall time.", "",
    ]


def console(sc: dict[str, Any]) -> list[str]:
    if "11" not in sc:
        return []
    s = sc["11"]
    return [f"  11 lake verify: {s['files']:,} files in {_m(s, 'verify_wall'):.2f} s "
            f"(x{_m(s, 'ratio'):.2f} of the floor), --deep {_m(s, 'deep_wall'):.2f} s"]
