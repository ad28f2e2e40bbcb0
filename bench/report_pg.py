"""Rendering the PostgreSQL scenarios (9: triggers, 10: logical) for BENCHMARKS.md and the
console; bench/report.py calls these when the results hold them."""

from __future__ import annotations

from typing import Any

from bench.report import n, spread, table


def _r(x: float) -> str:
    return n(x, 2)


def s9(s: dict[str, Any]) -> list[str]:
    z = s["sizes"]
    out = ["### 9. PostgreSQL trigger capture", "",
           f"(a) The application's writes on PostgreSQL (fsync on) without and with the "
           f"agent's triggers: {n(z['rows'])} rows per operation in 1,000-row transactions, "
           f"{n(z['single'])} single-row commits per operation. Ratio = with / without.", ""]
    out += table(["shape and op", "without (rows/s)", "with triggers (rows/s)", "ratio"],
                 [[k, spread(v["plain"]), spread(v["triggers"]),
                   spread(v["ratio"], _r)] for k, v in s["writes"].items()])
    c = s["capture"]
    out += [f"(b) Capture of a {n(c['changes'])}-change backlog by a one-shot flush, against "
            "the floor script (psycopg reading the same change log with the same decoding "
            "query into Parquet, no positions or durability). CPU of the reading process "
            "only; the server's work is not counted.", ""]
    out += table(["program", "changes/s", "CPU s per 1M changes"],
                 [["agent", spread(c["agent_changes_s"]),
                   spread(c["agent_cpu_s_per_1m"], lambda x: n(x, 2))],
                  ["floor script", spread(c["floor_changes_s"]),
                   spread(c["floor_cpu_s_per_1m"], lambda x: n(x, 2))]])
    out += [f"CPU ratio agent / floor: {spread(c['cpu_ratio'], lambda x: n(x, 2))}.", ""]
    p = s["snapshot"]
    out += [f"(c) Snapshot of a {n(p['rows'])}-row table (op `r`, through the change log) "
            "against ADBC's binary COPY of the table into Parquet; wall time, the server's "
            "work included.", ""]
    out += table(["program", "rows/s", "client CPU s"],
                 [["agent snapshot", spread(p["agent_rows_s"]),
                   spread(p["agent_cpu"], lambda x: n(x, 2))],
                  ["ADBC COPY → Parquet", spread(p["adbc_rows_s"]),
                   spread(p["adbc_cpu"], lambda x: n(x, 2))]])
    out += [f"Ratio agent / ADBC: {spread(p['ratio'], lambda x: n(x, 2))}.", ""]
    return out


def s10(s: dict[str, Any]) -> list[str]:
    z, c = s["sizes"], s["capture"]
    out = ["### 10. PostgreSQL logical capture", "",
           f"(a) The application's writes (fsync on, wal_level = logical for all three) with "
           "no capture, with the agent's triggers, and with the agent's slot and publication "
           f"in place and the agent stopped (the slot holds the WAL back): {n(z['rows'])} rows "
           f"per operation in 1,000-row transactions, {n(z['single'])} single-row commits per "
           "operation. Ratio = with / without, per run.", ""]
    out += table(["shape and op", "no capture (rows/s)", "triggers (rows/s)",
                  "logical slot (rows/s)", "triggers ratio", "logical ratio"],
                 [[k, spread(v["plain"]), spread(v["triggers"]), spread(v["logical"]),
                   spread(v["triggers_ratio"], _r), spread(v["logical_ratio"], _r)]
                  for k, v in s["writes"].items()])
    out += [f"(b) Capture of a {n(c['changes'])}-change backlog ({n(c['messages']['median'])} "
            "pgoutput messages, "
            f"{n(c['wal_bytes_per_change']['median'])} bytes of WAL per change held by the "
            "slot) by a one-shot `edge-agent flush`, against floor scripts that only peek the "
            "same slot (psycopg, server-side cursor, proto_version 1) and were run first. "
            "changes/s = changes / whole-process wall time (the server's decoding included); "
            "CPU = the reading process only.", ""]
    rows = []
    for who, label in (("agent", "edge-agent flush (logical)"),
                       ("discard", "floor: peek, discard"),
                       ("decode", "floor: peek, pgoutput.decode")):
        ratio = {"agent": "1.00", "discard": spread(c["cpu_ratio"], _r),
                 "decode": spread(c["cpu_ratio_decode"], _r)}[who]
        rows.append([label, spread(c[f"{who}_changes_s"]),
                     spread(c[f"{who}_cpu_s_per_1m"], _r), ratio])
    out += table(["program", "changes/s", "CPU s per 1M changes", "CPU ratio agent ÷ this"],
                 rows)
    out += [f"Rate ratio agent ÷ floor (discard): {spread(c['rate_ratio'], _r)}. The agent's "
            "first flush of the same database (no changes yet: start-up, publication and slot "
            f"created, empty snapshot) took {spread(c['empty_flush_wall'], _r)} s wall, "
            f"{spread(c['empty_flush_cpu'], _r)} CPU s.", ""]
    return out


def markdown(sc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "9" in sc:
        out += s9(sc["9"])
    if "10" in sc:
        out += s10(sc["10"])
    return out


def console(sc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "9" in sc:
        s = sc["9"]
        ratios = ", ".join(f"{k} x{v['ratio']['median']:.2f}" for k, v in s["writes"].items())
        lines += [f"  9 postgres writes with triggers: {ratios}",
                  f"  9 postgres capture: CPU x{s['capture']['cpu_ratio']['median']:.2f} "
                  f"of the floor; snapshot x{s['snapshot']['ratio']['median']:.2f} of ADBC"]
    if "10" in sc:
        s = sc["10"]
        c = s["capture"]
        ratios = ", ".join(f"{k} x{v['logical_ratio']['median']:.2f}"
                           for k, v in s["writes"].items())
        lines += [f"  10 postgres writes with a logical slot: {ratios}",
                  f"  10 logical capture: agent {c['agent_changes_s']['median']:,.0f} changes/s,"
                  f" floor {c['discard_changes_s']['median']:,.0f}/s; CPU x"
                  f"{c['cpu_ratio']['median']:.2f} of the floor, x"
                  f"{c['cpu_ratio_decode']['median']:.2f} of the decoding floor"]
    return lines
