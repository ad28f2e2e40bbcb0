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


def silver_markdown(sc: dict[str, Any]) -> list[str]:
    if "13" not in sc:
        return []
    out = [
        "### 13. `lake silver`", "",
        "A lake of N bronze files (one device, four tables, 10 changes a file over 5,000 "
        "keys a table: inserts, updates, deletes) turned into four Delta tables by "
        "`edge-agent lake silver`: the first run (every file), an incremental run after "
        "10 % more files landed, and a run with nothing new. The floor reads every file "
        "with pyarrow and keeps the last change per key, in one process, into plain "
        "Parquet: no MERGE, no Delta log, not incremental. Whole processes; min-max over "
        "the runs in brackets.", "",
        "| files | program | wall s | CPU s | peak RSS MiB | changes/s |",
        "|---|---|---|---|---|---|",
    ]
    for s in sc["13"]["sizes"]:
        for name, label, changes in (
            ("floor", "floor: pyarrow last-per-key", s["changes"]),
            ("first", "`lake silver`, first run", s["changes"]),
            ("incremental", f"`lake silver`, {s['extra']:,} new files", s["extra"] * 10),
            ("nothing", "`lake silver`, nothing new", 0),
        ):
            f = s[name]
            rate = f"{changes / _m(f, 'wall'):,.0f}" if changes else "-"
            out.append(
                f"| {s['files']:,} | {label} | {_m(f, 'wall'):.2f} "
                f"({f['wall']['min']:.2f}-{f['wall']['max']:.2f}) | {_m(f, 'cpu'):.2f} | "
                f"{_m(f, 'rss'):.0f} | {rate} |")
    out += ["", "First run against the floor (wall): " + ", ".join(
        f"x{_m(s, 'ratio'):.2f} at {s['files']:,} files" for s in sc["13"]["sizes"]) + ".", ""]
    return out


def silver_console(sc: dict[str, Any]) -> list[str]:
    if "13" not in sc:
        return []
    return [f"  13 lake silver: {s['files']:,} files first {_m(s['first'], 'wall'):.2f} s "
            f"(x{_m(s, 'ratio'):.2f} of the floor), +{s['extra']:,} files "
            f"{_m(s['incremental'], 'wall'):.2f} s" for s in sc["13"]["sizes"]]
