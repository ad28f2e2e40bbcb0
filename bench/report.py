"""Rendering results: BENCHMARKS.md tables, docs/bench-*.png charts, a console summary.

BENCHMARKS.md keeps its hand-written text; only the part between the
``bench:generated`` markers is replaced on each render.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import MiB

BEGIN = "<!-- bench:generated:begin (python -m bench rewrites this part) -->"
END = "<!-- bench:generated:end -->"
SKELETON = f"""# Benchmarks

How edge-agent performs on its target jobs, each measured side by side with a
baseline in the same run. `make bench` runs the quick smoke mode (CI);
`make bench-full` runs the full mode and rewrites the tables and charts below.

{BEGIN}
{END}
"""
OP_NAMES = {"insert": "insert", "update": "update", "delete": "delete"}
SHAPE_NAMES = {
    "batched": "(a) 1,000-row transactions, executemany, WAL, synchronous=NORMAL",
    "batched_execute": "(a') 1,000-row transactions, one execute() per row",
    "single_full": "(b) single-row commits, WAL, synchronous=FULL",
}
PROGRAM_NAMES = {
    "floor": "floor: sqlite3 -> Arrow -> 1 Parquet per table, no durability",
    "naive": "naive cron script: 1 Parquet per 5,000-row poll",
    "agent": "edge-agent (in-process Agent.flush, work only)",
    "cli": "`edge-agent flush` CLI, whole process",
}


# -- formatting ---------------------------------------------------------------------
def n(x: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "—"
    return f"{x:,.{digits}f}"


def mib(x: float) -> str:
    return f"{x / MiB:,.1f} MiB"


EN_DASH = "\u2013"  # between min and max: reads clearly next to a minus sign


def spread(s: dict[str, Any], fmt: Any = n, runs: bool = True) -> str:
    """Median, with the range of the runs when there was more than one."""
    if len(s["runs"]) > 1 and runs:
        return f"{fmt(s['median'])} ({fmt(s['min'])}{EN_DASH}{fmt(s['max'])})"
    return fmt(s["median"])


def mark(v: str) -> str:
    return "ok" if v == "ok" else "**miss**"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


# -- targets ------------------------------------------------------------------------
Path_ = tuple[str, ...]  # keys into one scenario's result dict


@dataclass(frozen=True)
class Target:
    """One figure a scenario is held to: where it is in the scenario's result, its bound
    and the chart that shows it. A figure is a summary ({median, min, max, runs}) or a
    number; with ``over`` it is ``value`` ÷ ``over`` run by run (same run index)."""

    row: str
    scenario: str
    figure: str
    value: Path_
    op: str  # "<=", "<" or ">="
    bound: float | Path_  # a number, or where the scenario stored its bound
    unit: str  # "x" (a ratio), "MiB", "CPU-s/h"
    chart: str  # docs/bench-<chart>.png
    held_to: str = ""  # what the bound is, in words, when it is not a plain number
    over: Path_ | None = None


# Issue 14's targets. A scenario that renames a field changes its row here only.
TARGETS = (
    Target("1a", "1", "app deletes, 1,000-row transactions: with triggers ÷ without",
           ("shapes", "batched", "delete", "ratio"), ">=", 0.5, "x", "triggers"),
    Target("2", "2", "capture CPU per change ÷ floor script",
           ("programs", "agent", "ratio_to_floor"), "<=", 1.2, "x", "capture"),
    Target("3", "3", "timestamp one-shot load: changes/s ÷ dlt",
           ("programs", "agent", "changes_per_s"), ">=", 3.0, "x", "peer",
           over=("programs", "dlt", "changes_per_s")),
    Target("3", "3", "timestamp one-shot load: peak RSS ÷ dlt",
           ("programs", "agent", "hwm"), "<=", 0.5, "x", "peer",
           over=("programs", "dlt", "hwm")),
    Target("4", "4", "peak RSS, 1M-change burst, max_memory 16 MiB, 1 table",
           ("bursts", "1", "hwm"), "<=", ("bursts", "1", "bound_peak"), "MiB", "memory",
           "floor program + 8 MiB"),
    Target("4", "4", "peak RSS, 1M-change burst, max_memory 16 MiB, 20 tables",
           ("bursts", "20", "hwm"), "<=", ("bursts", "20", "bound_peak"), "MiB", "memory",
           "floor program + 8 MiB"),
    Target("4", "4", "anonymous memory at the peak, 1 table",
           ("bursts", "1", "anon_at_peak"), "<=", ("bursts", "1", "bound_anon"), "MiB",
           "memory", "max_memory + 24 MiB"),
    Target("4", "4", "anonymous memory at the peak, 20 tables",
           ("bursts", "20", "anon_at_peak"), "<=", ("bursts", "20", "bound_anon"), "MiB",
           "memory", "max_memory + 24 MiB"),
    Target("7a", "7", "MQTT agent + collector ÷ the durable floor (MB/s)",
           ("mqtt_durable", "ratio"), ">=", 0.8, "x", "transports"),
    Target("8", "8", "idle CPU, default config", ("default", "cpu_s_per_hour"), "<", 1.0,
           "CPU-s/h", "idle"),
)


def _at(data: Any, path: Path_) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _as_summary(x: Any) -> dict[str, Any] | None:
    if isinstance(x, dict) and "median" in x:
        return x
    if isinstance(x, int | float):
        return {"median": float(x), "min": float(x), "max": float(x), "runs": [float(x)]}
    return None


def _ratio_runs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    runs = [x / y for x, y in zip(a["runs"], b["runs"], strict=True)]
    ordered = sorted(runs)
    mid = len(ordered) // 2
    med = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"median": med, "min": ordered[0], "max": ordered[-1], "runs": runs}


def target_value(t: Target, s: dict[str, Any]) -> dict[str, Any] | None:
    value = _as_summary(_at(s, t.value))
    if value is None or t.over is None:
        return value
    over = _as_summary(_at(s, t.over))
    return _ratio_runs(value, over) if over else None


def _unit(unit: str) -> Callable[[float], str]:
    if unit == "MiB":
        return lambda x: f"{x / MiB:,.1f}"
    if unit == "x":
        return lambda x: f"x{x:.2f}"
    return lambda x: n(x, 2)


def met(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, "<": value < bound, ">=": value >= bound}[op]


def target_rows(sc: dict[str, Any]) -> list[list[str]]:
    """One row per target whose scenario ran: measured (min-max), bound, met, chart."""
    rows = []
    for t in TARGETS:
        s = sc.get(t.scenario)
        if s is None:
            continue
        value = target_value(t, s)
        bound = t.bound if isinstance(t.bound, int | float) else _at(s, t.bound)
        fmt = _unit(t.unit)
        unit = "" if t.unit == "x" else f" {t.unit}"
        op = {"<=": "≤", "<": "<", ">=": "≥"}[t.op]
        bound_text = f"{op} {fmt(bound)}{unit}" if isinstance(bound, int | float) else "?"
        if t.held_to:
            bound_text += f" ({t.held_to})"
        chart = f"docs/bench-{t.chart}.png"
        if value is None or not isinstance(bound, int | float):
            rows.append([t.row, t.figure, "not in this run's results", bound_text, "", chart])
            continue
        verdict = "ok" if met(value["median"], t.op, bound) else "**miss**"
        worst = value["min"] if t.op == ">=" else value["max"]
        if verdict == "ok" and not met(worst, t.op, bound):
            verdict = "ok (median; not every run)"
        rows.append([t.row, t.figure, spread(value, fmt) + unit, bound_text, verdict, chart])
    return rows


def _targets(r: dict[str, Any]) -> list[str]:
    rows = target_rows(r["scenarios"])
    if not rows:
        return []
    runs = r["sizes"]["runs"]
    return ["### Targets", "",
            f"Each figure is the median of {runs} run(s) with the min-max of the runs in "
            "brackets; \"met\" judges the median (and says so when a run missed).", "",
            *table(["#", "figure", "measured", "target", "met", "chart"], rows)]


# -- markdown ---------------------------------------------------------------------
def _code(r: dict[str, Any]) -> str:
    code = r.get("code", {})
    after = r.get("code_after", code)
    text = f"commit {code.get('commit', '?')}"
    if code.get("edge_agent_modified") or after.get("edge_agent_modified"):
        text += " with uncommitted changes in edge_agent/"
    if after.get("commit") != code.get("commit"):
        text += f" (HEAD moved to {after.get('commit')} during the run)"
    return text


def _runtime(r: dict[str, Any]) -> str:
    rt = r.get("runtime")
    if not rt:
        return "the bench's own venv (results from before the runtime-only venv)"
    return (f"a runtime-only venv: `pip install .[{rt['extras']}]`, {len(rt['packages'])} "
            "packages, no numpy or rich (the bench's matplotlib and dlt would add ~17 MiB "
            "to every RSS figure); the floor programs run from it too")


def _machine(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    return [
        "### Machine and method",
        "",
        *table(["", ""], [
            ["CPU", f"{m['cpu_count']} x {m['cpu_model'] or m['arch']} ({m['arch']})"],
            ["memory", f"{m['memory_gib']} GiB"],
            ["OS", f"{m['system']} {m['kernel']}"],
            ["Python / pyarrow / SQLite", f"{m['python']} / {m['pyarrow']} / {m['sqlite']}"],
            ["4 KiB write + fsync (median)", f"{m['fsync_ms']} ms"],
            ["mode", f"{r['mode']}: {r['sizes']['runs']} run(s) per measurement, medians "
                     "(with the min-max of the runs in brackets)"],
            ["run started / took", f"{r['started']} / {r['duration_s'] / 60:.1f} min"],
            ["code measured", _code(r)],
            ["agent under test", _runtime(r)],
        ]),
        "The machine is shared and noisy (2 cores); every comparison is made against a "
        "baseline measured in the same run, alternating order between runs.",
        "",
    ]


def _s1(s: dict[str, Any]) -> list[str]:
    out = ["### 1. Application slowdown from the capture triggers", "",
           f"Rows per second of the app's own writes on a fresh WAL database, without and "
           f"with the agent's triggers (`ChangeLog.install`): {n(s['rows_batched'])} rows per "
           f"operation in 1,000-row transactions; {n(s['commits_single'])} single-row commits "
           "per operation with synchronous=FULL. Ratio = with / without, per run, median. "
           "1,000-row transactions are timed in the app's CPU seconds (no fsync there; CPU "
           "time does not move with the machine's load), single-row commits by the wall "
           "clock (they wait for the disk).", ""]
    rows = []
    for shape, ops in s["shapes"].items():
        for op, v in ops.items():
            rows.append([SHAPE_NAMES[shape], OP_NAMES[op], spread(v["plain"]),
                         spread(v["triggers"]), spread(v["added_us"], lambda x: n(x, 1)),
                         spread(v["ratio"], lambda x: n(x, 2)),
                         f"≥ {v['target']}", mark(v["verdict"])])
    out += table(["shape", "op", "without triggers (rows/s)", "with triggers (rows/s)",
                  "added per row (µs)", "ratio", "target", ""], rows)
    anatomy = s.get("delete_anatomy")
    if anatomy:
        out += ["What a delete's trigger cost is made of (1,000-row delete transactions, "
                "the agent's trigger as installed, and experimental variants of it):", ""]
        out += table(["delete trigger", "rows/s", "added per row (µs)", "ratio"],
                     [[k, spread(v["rate"]), spread(v["added_us"], lambda x: n(x, 2)),
                       spread(v["ratio"], lambda x: n(x, 2))] for k, v in anatomy.items()])
    out += ["![triggers](docs/bench-triggers.png)", ""]
    return out


def _s2(s: dict[str, Any]) -> list[str]:
    out = ["### 2. Capture cost", "",
           f"{n(s['changes'])} changes (80 % inserts, 15 % updates, 5 % deletes) over "
           f"{s['tables']} tables, already in the change log, captured into sealed zstd-1 "
           "Parquet. Each program runs in its own process on a fresh copy of the database. "
           "\"work\" CPU is `time.process_time()` around the capture alone; \"process\" CPU is "
           "the whole child (interpreter start, imports) from RUSAGE_CHILDREN deltas. "
           "Ratio = CPU (work) per change against the floor's, per run.", ""]
    rows = []
    for prog, v in s["programs"].items():
        rows.append([PROGRAM_NAMES[prog], spread(v["changes_per_s"]),
                     spread(v["cpu_s_per_million"], lambda x: n(x, 2)),
                     spread(v["process_cpu_s_per_million"], lambda x: n(x, 2)),
                     spread(v["ratio_to_floor"], lambda x: n(x, 2)),
                     n(v["files"]), n(v["bytes"] / MiB, 1)])
    out += table(["program", "changes/s (work wall)", "CPU s per 1M changes (work)",
                  "CPU s per 1M (process)", "CPU ratio to floor (CLI: process to process)",
                  "files", "MiB"], rows)
    a = s["programs"]["agent"]["ratio_to_floor"]
    out += [f"Target: agent CPU per change ≤ {s['target']}x the floor: "
            f"{spread(a, lambda x: f'x{x:.2f}')} — {mark(s['verdict'])}.", ""]
    p = s.get("profile")
    if p:
        out += [f"**Where the agent's time goes** (cProfile of `agent.flush()` on "
                f"{n(p['changes'])} changes; profiled total {n(p['total_tt'], 2)} s; the "
                "profiler inflates Python-heavy parts; a part that calls another listed part is "
                "counted without it)",
                ""]
        out += table(["part of the capture path", "cumulative s", "share"],
                     [[a_["area"], n(a_["cum_s"], 3), f"{a_['share']:.0%}"]
                      for a_ in p["areas"]])
        out += table(["hottest functions (own time)", "calls", "own s", "share"],
                     [[f"`{h['function']}`", n(h["calls"]), n(h["tottime"], 3),
                       f"{h['share']:.0%}"] for h in p["top_tottime"][:10]])
    out += ["![capture](docs/bench-capture.png)", ""]
    return out


def _s4(s: dict[str, Any], idle: dict[str, Any] | None) -> list[str]:
    base = s["baseline_hwm"]["median"]
    out = ["### 4. Memory", "",
           f"Peak RSS (VmHWM) of `edge-agent flush` one-shot capturing a burst of "
           f"{n(s['changes'])} changes, buffer.max_memory = {mib(s['max_memory'])}, every "
           "program from the runtime-only venv. Baselines: a bare `python -c \"import "
           "pyarrow.parquet, structlog, watchdog\"`, and the floor program of scenario 2 on "
           "the same burst and tables. Targets: peak ≤ the floor's + "
           f"{mib(s['above_floor_target'])}; anonymous memory at the peak (RssAnon of the "
           f"highest 10 ms sample) ≤ max_memory + {mib(s['anon_above_budget_target'])}.", ""]
    rows = [["baseline: bare imports", spread(s["baseline_hwm"], mib), "—", "—", "—", "—", ""]]
    first = s.get("first_use_hwm")
    if first:
        rows.append(["baseline: bare imports + first use of pyarrow (one tiny array, cast, "
                     "Parquet write)", spread(first, mib), "—", "—",
                     mib(first["median"] - base), "—", ""])
    for tables, v in s["bursts"].items():
        rows.append([f"baseline: floor program, {tables} table(s), 5,000-row chunks",
                     spread(v["floor_hwm"], mib), spread(v["floor_anon_at_peak"], mib),
                     spread(v["floor_file_at_peak"], mib),
                     mib(v["floor_hwm"]["median"] - base), "—", ""])
    for tables, v in s["bursts"].items():
        rows.append([f"edge-agent flush, {tables} table(s) "
                     f"({n(v['changes_per_s']['median'])} changes/s)",
                     spread(v["hwm"], mib), spread(v["anon_at_peak"], mib),
                     spread(v["file_at_peak"], mib), mib(v["above_baseline"]["median"]),
                     f"peak ≤ {mib(v['bound_peak'])} {mark(v['verdict'])}; anon ≤ "
                     f"{mib(v['bound_anon'])} {mark(v['verdict_anon'])}",
                     spread(v["above_floor"], mib)])
    for name, v in s.get("variants", {}).items():
        env_text = " ".join(f"{k}={val}" for k, val in v["env"].items())
        speed = v.get("changes_per_s")
        speed_text = f", {n(speed['median'])} changes/s" if speed else ""
        rows.append([f"edge-agent flush, 1 table, {name} (`{env_text}`{speed_text})",
                     spread(v["hwm"], mib), spread(v["anon_at_peak"], mib), "—",
                     mib(v["hwm"]["median"] - base), mark(v["verdict"]), ""])
    out += table(["case", "peak RSS", "anon at peak", "file-backed at peak",
                  "above bare imports", "target", "agent above floor (per run)"], rows)
    if idle:
        out += _idle_rows(idle, base)
    out += ["![memory](docs/bench-memory.png)", ""]
    return out


def _idle_rows(idle: dict[str, Any], base: float) -> list[str]:
    d = idle["default"]
    out = ["Idle daemon and start-up (the daemons of scenario 8, default config):", ""]
    rows = [["RSS 2 s after READY", spread(d["rss_start"], mib), mib(base),
             n(d["rss_start"]["median"] / base, 2)],
            [f"RSS after {n(idle['seconds'])} s idle", spread(d["rss_end"], mib), mib(base),
             n(d["rss_end"]["median"] / base, 2)]]
    if "anon_end" in d:
        rows.append(["of which anonymous / file-backed",
                     f"{spread(d['anon_end'], mib)} / {spread(d['file_end'], mib)}", "", ""])
    rows.append(["process start → READY=1 (real NOTIFY_SOCKET)",
                 spread(d["ready_s"], lambda x: f"{x:.2f} s"),
                 f"{spread(idle['import_baseline_s'], lambda x: f'{x:.2f} s')} "
                 "(bare imports, to exit)",
                 n(d["ready_s"]["median"] / idle["import_baseline_s"]["median"], 2)])
    return out + table(["measure", "edge-agent run", "baseline", "ratio"], rows)


def _s5(s: dict[str, Any]) -> list[str]:
    cfg = s["config"]
    out = ["### 5. Latency: commit → file in the lake", "",
           f"The real daemon with max_file_age {cfg['buffer']['max_file_age']}, debounce "
           f"{cfg['agent']['debounce']}, poll_interval {cfg['agent']['poll_interval']}, dir "
           f"sink; {s['commits_per_run']} single-row commits per run, 0.3-0.7 s apart; the "
           "bench polls the lake partition every 2 ms.", ""]
    out += table(["", "p50", "p99", "max"], [[
        "commit → Parquet visible in the lake",
        spread(s["p50"], lambda x: f"{x * 1000:.0f} ms"),
        spread(s["p99"], lambda x: f"{x * 1000:.0f} ms"),
        spread(s["max"], lambda x: f"{x * 1000:.0f} ms"),
    ]])
    rows = []
    for name, v in s["stream"].items():
        label = ("tuned (max_file_age 200ms)" if name == "tuned"
                 else "default (max_file_age 30s)")
        steady = 3600 / (0.2 if name == "tuned" else 30.0)
        rows.append([label, n(v["seconds"], 0) + " s", n(v["changes"]), n(v["files"]),
                     n(v["files_per_hour"]), n(steady),
                     n(v["bytes_per_file"] or float("nan")),
                     n(v["bytes_per_change"] or float("nan"), 1),
                     f"{v['cpu_share']:.1%}"])
    if "default" not in s["stream"]:
        rows.append(["default (max_file_age 30s), not streamed in quick mode", "—", "—", "—",
                     "—", "120", "—", "—", "—"])
    out += [f"The price is files: a steady stream of {n(s['stream_rate'])} changes/s into one "
            "table (files sealed and shipped during the stream; CPU of the daemon):", ""]
    out += table(["setting", "streamed", "changes", "files", "files/hour (measured)",
                  "files/hour/table (steady, 3600 / max_file_age)", "bytes/file",
                  "bytes/change", "daemon CPU"], rows)
    out += ["![latency](docs/bench-latency.png)", ""]
    return out


def _s6(s: dict[str, Any]) -> list[str]:
    out = ["### 6. Bandwidth", "",
           f"Bytes per change of the {n(s['changes'])} changes of scenario 2: what the agent "
           f"shipped ({n(s['files'])} Parquet files) against a Debezium-style JSON envelope "
           "of the same changes (one compact JSON object per change: before/after images, op, "
           "ts_ms, source block, transaction).", ""]
    rows = [[k, n(v, 1), n(s["ratio_to_json"][k], 3)]
            for k, v in s["bytes_per_change"].items()]
    out += table(["encoding", "bytes per change", "ratio to JSON"], rows)
    out += ["![bandwidth](docs/bench-bandwidth.png)", ""]
    return out


def _s3(s: dict[str, Any]) -> list[str]:
    out = ["### 3. Peer: dlt", ""]
    if s.get("skipped"):
        return [*out, f"Not measured: {s['skipped']}.", ""]
    out += [f"One-shot load of one SQLite table of {n(s['rows'])} rows (id, 4 sensor columns, "
            "`updated_at` epoch ms, indexed) into local Parquet, each program in its own "
            "process on a fresh copy of the database. dlt "
            f"{s['dlt_version']}: `sql_table` with `incremental(\"updated_at\")`, pyarrow "
            "backend, `filesystem` destination, `loader_file_format=\"parquet\"`. "
            "edge-agent: timestamp mode (`cursor = \"updated_at\"`, `key = [\"id\"]`), "
            "`edge-agent flush`, dir sink. changes/s = rows / whole-process wall time "
            "(interpreter start and imports included for both); peak RSS = VmHWM read by the "
            "process before it exits. Rows are counted back from the Parquet written.", ""]
    rows = []
    for who, label in (("dlt", f"dlt {s['dlt_version']} (pyarrow backend)"),
                       ("agent", "edge-agent flush, timestamp mode")):
        v = s["programs"][who]
        rows.append([label, spread(v["changes_per_s"]),
                     spread(v["wall"], lambda x: f"{x:.2f} s"), spread(v["hwm"], mib),
                     n(v["rows_written"]), n(v["files"]), n(v["bytes"] / MiB, 1)])
    out += table(["program", "changes/s", "wall", "peak RSS", "rows written", "files", "MiB"],
                 rows)
    a, d = s["programs"]["agent"], s["programs"]["dlt"]
    rate = _ratio_runs(a["changes_per_s"], d["changes_per_s"])
    hwm = _ratio_runs(a["hwm"], d["hwm"])
    out += [f"edge-agent / dlt: {spread(rate, lambda x: f'x{x:.2f}')} changes/s, "
            f"{spread(hwm, lambda x: f'x{x:.2f}')} peak RSS (run by run).", "",
            "![peer](docs/bench-peer.png)", ""]
    return out


def _s7(s: dict[str, Any]) -> list[str]:
    out = ["### 7. Transports: MQTT and S3", "",
           f"{n(s['files'])} sealed bronze files of {mib(s['file_bytes'])} (random bytes, "
           "matching FileRecord and manifest) shipped one after the other on 127.0.0.1. "
           "(a) `MqttShipper.put()` to a real Mosquitto, a real `edge-agent collect` process "
           "writing them into a lake dir (put returns on the collector's ack); baseline: raw "
           f"paho, MQTT 5, QoS 1, the same {n(s['chunk_bytes'])}-byte chunks and in-flight "
           f"window of {s['max_inflight']}, waiting for every PUBACK, with a subscriber process "
           "draining the topic; the durable floor: the same raw paho publisher (with the "
           "collector's headers) to scenario 12's floor subscriber, which writes each file and "
           "its manifest with fsync (file, manifest, directory) and acks it, waiting for every "
           "ack; the same floor with its paho decoding MQTT 5 properties as the collector's "
           "does (`shippers/paho_speed.py`: paho's own decoding was most of a receiver's "
           "CPU per chunk), which leaves the collector's own work. (b) `S3Shipper.put()` "
           "to a moto server process; baseline: "
           "plain boto3 `put_object` of the same file and manifest to the same server. "
           "MB/s = file bytes (10^6) / wall time of the loop; both sides connected before "
           "timing.", ""]
    rows = []
    for key, label, base in (("mqtt_durable", "(a) MQTT", "durable floor, acks"),
                             ("mqtt_durable_fast", "(a) MQTT",
                              "durable floor, collector's paho decoding"),
                             ("mqtt", "(a) MQTT", "raw paho QoS 1, PUBACKs"),
                             ("s3", "(b) S3 (moto)", "boto3 put_object")):
        if key not in s:  # results from before the durable floor
            continue
        v = s[key]
        rows.append([label, spread(v["agent_mb_s"], lambda x: n(x, 1)),
                     f"{base}: {spread(v['baseline_mb_s'], lambda x: n(x, 1))}",
                     spread(v["ratio"], lambda x: n(x, 2))])
    out += table(["transport", "edge-agent MB/s", "baseline MB/s", "ratio"], rows)
    out += ["![transports](docs/bench-transports.png)", ""]
    return out


def _s8(s: dict[str, Any]) -> list[str]:
    secs = s["seconds"]
    out = ["### 8. Idle cost", "",
           f"CPU over {n(secs)} s with no changes, on a database with 5 captured tables, "
           "after a 2 s settle: utime+stime from /proc/<pid>/stat (10 ms ticks, as asked) "
           "and the exact sum of the threads' schedstat; wake-ups = context switches of all "
           "threads. Baseline: `sleep`.", ""]
    rows = []
    for name, label in (("default", "edge-agent run, default (poll 5s)"),
                        ("tuned", "edge-agent run, latency-tuned (poll 1s)"),
                        ("sleep", "baseline: sleep")):
        v = s[name]
        per_hour = v.get("cpu_s_per_hour") or {
            "median": v["sched_cpu_s"]["median"] * 3600 / secs, "runs": []}
        rows.append([label, spread(v["cpu_s"], lambda x: n(x, 2)),
                     spread(v["sched_cpu_s"], lambda x: n(x, 4)),
                     f"{v['cpu_share']:.3%}",
                     spread(per_hour, lambda x: n(x, 2)),
                     spread(v["wakeups_per_s"], lambda x: n(x, 2))])
    out += table(["process", f"CPU s in {n(secs)} s (stat)", "CPU s (schedstat)",
                  "of one core", "CPU s per hour", "wake-ups/s"], rows)
    if "cpu_s_per_hour_target" in s:
        out += [f"Target: idle CPU, default config, < {n(s['cpu_s_per_hour_target'], 1)} "
                f"CPU-s per hour — {mark(s['verdict'])}.", ""]
    out += ["![idle](docs/bench-idle.png)", ""]
    return out


def markdown(r: dict[str, Any]) -> str:
    from bench import report_fleet, report_lake, report_pg  # scenarios 9-12

    sc = r["scenarios"]
    out = [f"## Results ({r['mode']} mode)", ""]
    out += _targets(r)
    out += _machine(r)
    if r.get("fill_seconds"):
        fills = "; ".join(f"{k}: {v:.1f} s" for k, v in r["fill_seconds"].items())
        out += [f"Change logs are filled by the app with plain sqlite3 (triggers installed "
                f"first, 1,000-change transactions): {fills}.", ""]
    if "1" in sc:
        out += _s1(sc["1"])
    if "2" in sc:
        out += _s2(sc["2"])
    if "3" in sc:
        out += _s3(sc["3"])
    if "4" in sc:
        out += _s4(sc["4"], sc.get("8"))
    if "5" in sc:
        out += _s5(sc["5"])
    if "6" in sc:
        out += _s6(sc["6"])
    if "7" in sc:
        out += _s7(sc["7"])
    if "8" in sc:
        out += _s8(sc["8"])
    out += report_pg.markdown(sc)
    out += report_lake.markdown(sc)
    out += report_lake.silver_markdown(sc)
    out += report_fleet.markdown(sc)
    if r.get("errors"):
        out += ["### Scenarios that failed in this run", ""]
        out += [f"- {k}: {v}" for k, v in r["errors"].items()] + [""]
    secs = ", ".join(f"{k}: {v:.0f} s" for k, v in r["scenario_seconds"].items())
    out += [f"Time per scenario: {secs}.", ""]
    return "\n".join(out)


def write_markdown(r: dict[str, Any], path: Path, chart_prefix: str = "docs/") -> None:
    text = path.read_text() if path.exists() else SKELETON
    if BEGIN not in text or END not in text:
        text = text.rstrip() + "\n\n" + BEGIN + "\n" + END + "\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = markdown(r).replace("(docs/bench-", f"({chart_prefix}bench-")
    path.write_text(head + BEGIN + "\n\n" + body + "\n" + END + tail)


# -- charts ----------------------------------------------------------------------------
def _chart_1(s: dict[str, Any], plt: Any, save: Any) -> None:
    shapes = s["shapes"]
    fig, axes = plt.subplots(1, len(shapes), figsize=(13, 4))
    for ax, (shape, ops) in zip(axes, shapes.items(), strict=True):
        xs = range(len(ops))
        plain = [v["plain"]["median"] for v in ops.values()]
        trig = [v["triggers"]["median"] for v in ops.values()]
        ax.bar([x - 0.2 for x in xs], plain, 0.4, label="without triggers")
        ax.bar([x + 0.2 for x in xs], trig, 0.4, label="with triggers")
        for x, v in zip(xs, ops.values(), strict=True):
            ax.annotate(f"x{v['ratio']['median']:.2f}", (x + 0.2, v["triggers"]["median"]),
                        ha="center", va="bottom", fontsize=9)
        ax.set_xticks(list(xs), list(ops))
        ax.set_title(SHAPE_NAMES[shape].split(", ")[0] + "\n" +
                     ", ".join(SHAPE_NAMES[shape].split(", ")[1:]), fontsize=9)
        ax.set_ylabel("rows/s")
    axes[0].legend(fontsize=8)
    fig.suptitle("1. App write throughput with and without capture triggers")
    save(fig, "triggers")


def _chart_2(s: dict[str, Any], plt: Any, save: Any) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    progs = list(s["programs"])
    cpu = [float("nan") if p == "cli" else s["programs"][p]["cpu_s_per_million"]["median"]
           for p in progs]  # the CLI has no work-only figure
    pcpu = [s["programs"][p]["process_cpu_s_per_million"]["median"] for p in progs]
    ys = range(len(progs))
    axes[0].barh([y + 0.2 for y in ys], cpu, 0.4, label="work only")
    axes[0].barh([y - 0.2 for y in ys], pcpu, 0.4, label="whole process")
    axes[0].set_yticks(list(ys), [PROGRAM_NAMES[p].split(":")[0].split(" (")[0]
                                  for p in progs])
    axes[0].set_xlabel("CPU seconds per 1M changes")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"2. Capture cost, {n(s['changes'])} changes, {s['tables']} tables",
                      fontsize=10)
    p = s.get("profile")
    if p:
        areas = p["areas"]
        axes[1].barh([a["area"] for a in areas][::-1], [a["share"] for a in areas][::-1])
        axes[1].set_xlabel("share of profiled agent.flush() time")
        axes[1].set_title("Where the agent's time goes (cProfile)", fontsize=10)
    save(fig, "capture")


def _chart_4(s: dict[str, Any], plt: Any, save: Any) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, (tables, v) in enumerate(s["bursts"].items()):
        color = f"C{i}"
        tl = v["timeline"]
        ax.plot([t for t, _ in tl], [b / MiB for _, b in tl], color=color,
                label=f"edge-agent, {tables} table(s)")
        tl = v.get("floor_timeline", [])
        ax.plot([t for t, _ in tl], [b / MiB for _, b in tl], color=color, ls=":",
                label=f"floor program, {tables} table(s)")
        ax.axhline(v["bound_peak"] / MiB, color=color, ls="--", lw=0.8,
                   label=f"target, {tables} table(s): floor + {mib(s['above_floor_target'])}")
    ax.axhline(s["baseline_hwm"]["median"] / MiB, color="grey", ls=":",
               label="bare imports")
    ax.set_xlabel("seconds since process start")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(f"4. RSS of `edge-agent flush` on a burst of {n(s['changes'])} changes "
                 f"(max_memory {mib(s['max_memory'])})", fontsize=10)
    ax.legend(fontsize=7)
    save(fig, "memory")


def _chart_5(s: dict[str, Any], plt: Any, save: Any) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = sorted(x * 1000 for x in s["samples"] if math.isfinite(x))
    ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], marker=".")
    ax.axvline(s["pooled_p50"] * 1000, color="grey", ls=":", label="p50")
    ax.axvline(s["pooled_p99"] * 1000, color="red", ls="--", label="p99")
    ax.set_xlabel("commit → file in the lake (ms)")
    ax.set_ylabel("fraction of commits")
    ax.set_title("5. Latency, max_file_age 200ms, debounce 20ms (all runs pooled)",
                 fontsize=10)
    ax.legend(fontsize=8)
    save(fig, "latency")


def _chart_6(s: dict[str, Any], plt: Any, save: Any) -> None:
    fig, ax = plt.subplots(figsize=(9, 4))
    keys = list(s["bytes_per_change"])
    ax.barh(keys[::-1], [s["bytes_per_change"][k] for k in keys][::-1])
    for i, k in enumerate(keys[::-1]):
        ax.annotate(f" {s['bytes_per_change'][k]:.1f}", (s["bytes_per_change"][k], i),
                    va="center", fontsize=8)
    ax.set_xlabel("bytes per change")
    ax.set_title(f"6. Bandwidth, {n(s['changes'])} changes", fontsize=10)
    save(fig, "bandwidth")


def _chart_3(s: dict[str, Any], plt: Any, save: Any) -> None:
    if s.get("skipped"):
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    labels = ["dlt", "edge-agent"]
    progs = [s["programs"]["dlt"], s["programs"]["agent"]]
    axes[0].bar(labels, [p["changes_per_s"]["median"] for p in progs])
    axes[0].set_ylabel("changes/s (whole process)")
    axes[1].bar(labels, [p["hwm"]["median"] / MiB for p in progs])
    axes[1].set_ylabel("peak RSS (MiB)")
    fig.suptitle(f"3. One-shot load of {n(s['rows'])} rows by updated_at, dlt vs edge-agent",
                 fontsize=10)
    save(fig, "peer")


def _chart_7(s: dict[str, Any], plt: Any, save: Any) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    keys = [k for k in ("mqtt_durable", "mqtt_durable_fast", "mqtt", "s3") if k in s]
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [s[k]["baseline_mb_s"]["median"] for k in keys], 0.4,
           label="baseline (durable floor / raw paho / boto3 put_object)")
    ax.bar([x + 0.2 for x in xs], [s[k]["agent_mb_s"]["median"] for k in keys], 0.4,
           label="edge-agent shipper")
    for x, k in zip(xs, keys, strict=True):
        ax.annotate(f"x{s[k]['ratio']['median']:.2f}", (x + 0.2, s[k]["agent_mb_s"]["median"]),
                    ha="center", va="bottom", fontsize=9)
    names = {"mqtt_durable": "MQTT vs durable floor",
             "mqtt_durable_fast": "vs floor, fast decoding", "mqtt": "MQTT vs PUBACKs only",
             "s3": "S3 (moto)"}
    ax.set_xticks(list(xs), [names[k] for k in keys])
    ax.set_ylabel("MB/s")
    ax.legend(fontsize=8)
    ax.set_title(f"7. Shipping {s['files']} x {mib(s['file_bytes'])} files on 127.0.0.1",
                 fontsize=10)
    save(fig, "transports")


def _chart_8(s: dict[str, Any], plt: Any, save: Any) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    labels = ["edge-agent run (poll 5s)", "edge-agent run (poll 1s)", "sleep"]
    vals = [s[k]["sched_cpu_s"]["median"] * 1000 for k in ("default", "tuned", "sleep")]
    ax.barh(labels[::-1], vals[::-1])
    for i, v in enumerate(vals[::-1]):
        ax.annotate(f" {v:.1f} ms", (v, i), va="center", fontsize=8)
    ax.set_xlabel(f"CPU milliseconds in {n(s['seconds'])} s idle (schedstat)")
    ax.set_title("8. Idle cost", fontsize=10)
    save(fig, "idle")


def charts(r: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out_dir / f"bench-{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    makers = {"1": _chart_1, "2": _chart_2, "3": _chart_3, "4": _chart_4, "5": _chart_5,
              "6": _chart_6, "7": _chart_7, "8": _chart_8}
    for name, make in makers.items():
        if name in r["scenarios"]:
            make(r["scenarios"][name], plt, save)
    return written


def render(r: dict[str, Any], target: Path) -> list[Path]:
    """BENCHMARKS.md and charts into ``target`` (the repo root: charts go to docs/)."""
    target.mkdir(parents=True, exist_ok=True)
    in_docs = (target / "docs").is_dir()
    written = charts(r, target / "docs" if in_docs else target)
    md = target / "BENCHMARKS.md"
    write_markdown(r, md, "docs/" if in_docs else "")
    return [md, *written]


# -- console ------------------------------------------------------------------------
def _console_peer_transports(sc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "3" in sc:
        s = sc["3"]
        if s.get("skipped"):
            lines.append(f"  3 peer: skipped ({s['skipped']})")
        else:
            d, a = s["programs"]["dlt"], s["programs"]["agent"]
            lines.append(f"  3 peer: {s['rows']:,} rows: edge-agent "
                         f"{a['changes_per_s']['median']:,.0f}/s peak {mib(a['hwm']['median'])}; "
                         f"dlt {d['changes_per_s']['median']:,.0f}/s peak "
                         f"{mib(d['hwm']['median'])}")
    if "7" in sc:
        s = sc["7"]
        for k in (k for k in ("mqtt_durable", "mqtt_durable_fast", "mqtt", "s3") if k in s):
            lines.append(f"  7 {k}: {s[k]['agent_mb_s']['median']:.1f} MB/s vs baseline "
                         f"{s[k]['baseline_mb_s']['median']:.1f} MB/s "
                         f"(x{s[k]['ratio']['median']:.2f})")
    return lines


def console(r: dict[str, Any]) -> str:
    from bench import report_fleet, report_lake, report_pg  # scenarios 9-12

    sc = r["scenarios"]
    lines = [f"edge-agent bench ({r['mode']}), medians:"]
    lines += [f"  target {row[0]}: {row[1]}: {row[2]} (target {row[3]}) "
              f"{row[4].replace('*', '') or 'not measured'}" for row in target_rows(sc)]
    if "1" in sc:
        for shape, ops in sc["1"]["shapes"].items():
            parts = ", ".join(f"{op} x{v['ratio']['median']:.2f} {v['verdict']}"
                              for op, v in ops.items())
            lines.append(f"  1 triggers {shape}: {parts} (target ≥ "
                         f"{next(iter(ops.values()))['target']})")
    if "2" in sc:
        s = sc["2"]
        a = s["programs"]["agent"]
        f = s["programs"]["floor"]
        lines.append(f"  2 capture: agent {a['changes_per_s']['median']:,.0f} changes/s, "
                     f"{a['cpu_s_per_million']['median']:.2f} CPU s/1M; floor "
                     f"{f['cpu_s_per_million']['median']:.2f}; ratio "
                     f"{a['ratio_to_floor']['median']:.2f} (target ≤ {s['target']}) "
                     f"{s['verdict']}")
    if "4" in sc:
        s = sc["4"]
        for tables, v in s["bursts"].items():
            lines.append(f"  4 memory: burst {tables} table(s) peak {spread(v['hwm'], mib)} "
                         f"anon {spread(v['anon_at_peak'], mib)}, floor "
                         f"{spread(v['floor_hwm'], mib)}; targets peak ≤ "
                         f"{mib(v['bound_peak'])} {v['verdict']}, anon ≤ "
                         f"{mib(v['bound_anon'])} {v['verdict_anon']}")
        for name, v in s.get("variants", {}).items():
            lines.append(f"  4 memory: burst 1 table, {name}: peak {spread(v['hwm'], mib)} "
                         f"anon {spread(v['anon_at_peak'], mib)}")
    if "8" in sc:
        d = sc["8"]["default"]
        lines.append(f"  4 idle RSS {mib(d['rss_start']['median'])}, start → READY "
                     f"{d['ready_s']['median']:.2f} s")
    if "5" in sc:
        s = sc["5"]
        lines.append(f"  5 latency: p50 {s['p50']['median'] * 1000:.0f} ms, "
                     f"p99 {s['p99']['median'] * 1000:.0f} ms")
    if "6" in sc:
        b = sc["6"]["bytes_per_change"]
        lines.append("  6 bandwidth: " + ", ".join(f"{k} {v:.1f} B" for k, v in b.items()))
    lines += _console_peer_transports(sc)
    if "8" in sc:
        s = sc["8"]
        lines.append(f"  8 idle CPU over {s['seconds']:.0f} s: default "
                     f"{s['default']['sched_cpu_s']['median']:.4f} s, tuned "
                     f"{s['tuned']['sched_cpu_s']['median']:.4f} s, sleep "
                     f"{s['sleep']['sched_cpu_s']['median']:.4f} s")
    lines += report_pg.console(sc)
    lines += report_lake.console(sc)
    lines += report_lake.silver_console(sc)
    lines += report_fleet.console(sc)
    for k, v in r.get("errors", {}).items():
        lines.append(f"  scenario {k} FAILED: {v}")
    return "\n".join(lines)
