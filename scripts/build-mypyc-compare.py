#!/usr/bin/env python3
"""`make bench-mypyc`: the agent's CPU per captured change with the pure wheel against
the mypyc-compiled wheel (packaging/mypyc-modules.txt), in one run on this machine.

Both wheels are built from this checkout with the project's build backend
(EDGE_AGENT_MYPYC=0/1) and unpacked side by side; each measured run is
`python -m bench.workers agent` (bench scenario 2's agent: read the change log,
build batches, write and seal Parquet, record, ship to a dir lake, prune) on a fresh
copy of the same change log, the variants alternating. Reported per variant: the
median CPU seconds of the capture work per million changes and, where valgrind runs,
the marginal instructions per change counted by callgrind (instructions at N changes
minus at N/5, over the difference, so start-up and imports cancel out). Under qemu,
CPU time stands in for instruction counts (valgrind does not run there).

    python scripts/build-mypyc-compare.py [--changes N] [--runs R] [--no-callgrind]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("pure", "mypyc")


def build_wheel(variant: str, dest: Path) -> Path:
    env = {**os.environ, "EDGE_AGENT_MYPYC": "1" if variant == "mypyc" else "0"}
    out = dest / f"wheel-{variant}"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        env=env,
        check=True,
    )
    (wheel,) = out.glob("edge_agent-*.whl")
    return wheel


def unpack(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(dest)
    return dest


def fill_template(work: Path, changes: int, tables: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from bench import app

    db = work / f"template-{changes}" / "app.db"
    db.parent.mkdir(parents=True)
    app.filled_log(db, app.table_names(tables), changes)
    return db


def prepare_run(work: Path, template: Path, tables: int) -> Path:
    from bench import app
    from bench.common import agent_config, write_config

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    db = app.copy_db(template, work / "app.db")
    return write_config(work, agent_config(work, db, app.table_names(tables)))


def worker_env(code: Path, bench_copy: Path) -> dict[str, str]:
    # The unpacked wheel first, so its edge_agent (compiled or not) is the one imported;
    # the checkout is not on the path (the worker runs from a scratch directory).
    return {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{bench_copy}"}


def check_variant(code: Path, bench_copy: Path, variant: str) -> None:
    probe = (
        "import edge_agent.capture.triggers as m, sys; print(m.__file__); "
        "sys.exit(0 if m.__file__.endswith('.so') == (sys.argv[1] == 'mypyc') else 1)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, variant],
        check=False,
        env=worker_env(code, bench_copy),
        cwd=code.parent,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not done.stdout.startswith(str(code)):
        raise SystemExit(
            f"{variant}: edge_agent is not imported from {code}: {done.stdout}{done.stderr}"
        )


def run_agent(config: Path, code: Path, bench_copy: Path, prefix: list[str]) -> dict[str, float]:
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "bench.workers", "agent", str(config)],
        check=False,
        env=worker_env(code, bench_copy),
        cwd=config.parent,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench.workers agent failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if not result.get("ok"):
        raise SystemExit(f"the agent's flush failed: {result}")
    return result


def callgrind_instructions(config: Path, code: Path, bench_copy: Path) -> int:
    out = config.parent / "callgrind.out"
    run_agent(
        config,
        code,
        bench_copy,
        [
            "valgrind",
            "--tool=callgrind",
            "--trace-children=no",
            "--dump-instr=no",
            f"--callgrind-out-file={out}",
        ],
    )
    totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    if totals is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(totals.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--tables", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--callgrind-changes", type=int, default=50_000)
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    callgrind = not args.no_callgrind and shutil.which("valgrind") is not None

    work = Path(tempfile.mkdtemp(prefix="mypyc-compare-"))
    bench_copy = work / "benchpkg"
    shutil.copytree(
        ROOT / "bench",
        bench_copy / "bench",
        ignore=shutil.ignore_patterns("results", "__pycache__"),
    )
    code: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    for variant in VARIANTS:
        wheel = build_wheel(variant, work)
        sizes[variant] = wheel.stat().st_size
        code[variant] = unpack(wheel, work / f"code-{variant}")
        check_variant(code[variant], bench_copy, variant)
    template = fill_template(work, args.changes, args.tables)

    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for run in range(args.runs):
        for variant in VARIANTS if run % 2 == 0 else VARIANTS[::-1]:
            config = prepare_run(work / "run", template, args.tables)
            cpu[variant].append(run_agent(config, code[variant], bench_copy, [])["cpu"])
    result: dict[str, object] = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "changes": args.changes,
        "runs": args.runs,
        "wheel_bytes": sizes,
        "cpu_s_per_million": {v: statistics.median(c) / args.changes * 1e6 for v, c in cpu.items()},
        "cpu_runs": cpu,
    }
    per_million = result["cpu_s_per_million"]
    assert isinstance(per_million, dict)
    result["cpu_cut"] = 1 - per_million["mypyc"] / per_million["pure"]

    if callgrind:
        small = fill_template(work, args.callgrind_changes // 5, args.tables)
        large = fill_template(work, args.callgrind_changes, args.tables)
        per_change: dict[str, float] = {}
        for variant in VARIANTS:
            counts = [
                callgrind_instructions(
                    prepare_run(work / "run", db, args.tables), code[variant], bench_copy
                )
                for db in (small, large)
            ]
            per_change[variant] = (counts[1] - counts[0]) / (args.callgrind_changes * 4 / 5)
        result["instructions_per_change"] = per_change
        result["instruction_cut"] = 1 - per_change["mypyc"] / per_change["pure"]

    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
