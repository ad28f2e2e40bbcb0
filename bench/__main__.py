"""python -m bench [--quick] [--only 1,2,...] [--render RESULTS.json]

Full mode (no flag) runs every scenario with medians of 3 runs, writes
bench/results/full-*.json, and renders BENCHMARKS.md and docs/bench-*.png.
--quick is the CI smoke run: smaller sizes, 1 run, results and a rendered
report under bench/results/quick/ (the committed docs are left alone).
The bench reports; it never fails on a missed target.

The agent under test (and the baselines it is held to) runs from a runtime-only
venv, bench/results/runtime-venv: `pip install .` of the project with its own
extras, none of the bench's packages; rebuilt when edge_agent/ or pyproject change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.common import FULL, QUICK, RESULTS, ROOT, code_version, log, machine, runtime_env
from bench.session import Session

# 6 reads what 2 shipped
SCENARIOS = ("1", "2", "6", "3", "4", "5", "7", "8", "9", "10", "11", "12", "13")


def _runners(session: Session) -> dict[str, Callable[[], dict[str, Any]]]:
    from bench import (
        s1_triggers,
        s2_capture,
        s3_peer,
        s4_memory,
        s5_latency,
        s6_bandwidth,
        s7_transports,
        s8_idle,
        s9_postgres,
        s10_pg_logical,
        s11_verify,
        s12_fleet,
        s13_silver,
    )

    mode = session.mode
    return {
        "1": lambda: s1_triggers.run(mode),
        "2": lambda: s2_capture.run(mode, session),
        "6": lambda: s6_bandwidth.run(session),
        "3": lambda: s3_peer.run(session),
        "4": lambda: s4_memory.run(session),
        "5": lambda: s5_latency.run(session),
        "7": lambda: s7_transports.run(session),
        "8": lambda: s8_idle.run(session),
        "9": lambda: s9_postgres.run(mode),
        "10": lambda: s10_pg_logical.run(mode),
        "11": lambda: s11_verify.run(mode),
        "12": lambda: s12_fleet.run(mode),
        "13": lambda: s13_silver.run(mode),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke mode (small, 1 run)")
    parser.add_argument("--only", help="comma-separated scenarios to run, e.g. 1,2,6 "
                        "(6 needs 2)")
    parser.add_argument("--render", type=Path, help="only render a saved results JSON")
    parser.add_argument("--out", type=Path,
                        help="where to render (default: the repo for full runs, "
                             "bench/results/quick for quick runs)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)

    if args.render:
        results = json.loads(args.render.read_text())
        target = args.out or (ROOT if results["mode"] == "full" else RESULTS / "quick")
        written = report.render(results, target)
        print("\n".join(f"wrote {p}" for p in written))
        return 0

    mode = QUICK if args.quick else FULL
    wanted = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]
    if "6" in wanted and "2" not in wanted:
        wanted.insert(wanted.index("6"), "2")
    scratch = Path(tempfile.mkdtemp(prefix=f"edge-bench-{mode.name}-"))
    session = Session(mode, scratch)
    runtime = runtime_env()  # built before the clock starts; every scenario reuses it
    results: dict[str, Any] = {
        "mode": mode.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(scratch), "code": code_version(), "sizes": vars(mode),
        "runtime": {k: runtime[k] for k in ("extras", "key", "packages")},
        "scenarios": {},
        "scenario_seconds": {}, "errors": {},
    }
    log(f"{mode.name} mode: scenarios {', '.join(wanted)}; scratch {scratch}")
    t_all = time.perf_counter()
    runners = _runners(session)
    try:
        for name in wanted:
            t0 = time.perf_counter()
            log(f"scenario {name}: start")
            try:
                results["scenarios"][name] = runners[name]()
            except Exception as exc:  # report it and go on: one broken scenario is no reason
                results["errors"][name] = f"{type(exc).__name__}: {exc}"  # to lose the others
                log(f"scenario {name}: FAILED: {exc}")
            results["scenario_seconds"][name] = time.perf_counter() - t0
            log(f"scenario {name}: {results['scenario_seconds'][name]:.1f}s")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    results["fill_seconds"] = session.fill_seconds
    results["code_after"] = code_version()
    results["duration_s"] = time.perf_counter() - t_all

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    saved = RESULTS / f"{mode.name}-{stamp}.json"
    text = json.dumps(results, indent=1, default=str)
    saved.write_text(text)
    (RESULTS / f"{mode.name}-latest.json").write_text(text)
    target = args.out or (ROOT if mode is FULL and not args.only else RESULTS / mode.name)
    written = report.render(results, target)
    print()
    print(report.console(results))
    print(f"results: {saved}")
    print("\n".join(f"wrote {p}" for p in written))
    print(f"{mode.name} bench finished in {results['duration_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
