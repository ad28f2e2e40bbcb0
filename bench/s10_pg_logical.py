"""Scenario 10: PostgreSQL logical capture (a slot, pgoutput), side by side in the same run.

(a) What each capture mode costs the application's writes: the inserts, updates
    and deletes of scenario 9 (1,000-row transactions, single-row commits, fsync
    on) with no capture, with the agent's triggers, and with a logical slot and
    publication in place (made by the agent's first `edge-agent flush`; the agent
    is not running, so the slot holds the WAL back). wal_level = logical is on for
    all three: the server is the same.
(b) Capture: a backlog of changes made after the slot exists, captured by a
    one-shot `edge-agent flush` (CPU of the agent process; the server's decoding
    is not in it, its wall time is), against two floor scripts on the same
    backlog, run first because they only peek: psycopg reading
    ``pg_logical_slot_peek_binary_changes`` through a server-side cursor and
    discarding the messages, and the same decoding each one with
    ``edge_agent.capture.pgoutput.decode``. Neither writes anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import agent_cmd, log, runtime_python, summary, workdir, write_config
from bench.s9_postgres import OPS, fill, fresh, timed, workload

SIZES = {"quick": {"rows": 5_000, "single": 100, "capture": 20_000},
         "full": {"rows": 50_000, "single": 1_000, "capture": 200_000}}
SETUPS = ("plain", "triggers", "logical")
PUBLICATION = "edge_agent"
FLOOR = """
import json, sys, psycopg
from psycopg import sql
dsn, slot, pub, decode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "decode"
if decode:
    from edge_agent.capture import pgoutput as po
    kinds = (po.Insert, po.Update, po.Delete)
con = psycopg.connect(dsn)
cur = con.cursor(name="floor_peek")
cur.itersize = 2000
cur.execute(sql.SQL("SELECT data FROM pg_logical_slot_peek_binary_changes({}, NULL, NULL,"
                    " 'proto_version', '1', 'publication_names', {})"
                    ).format(sql.Literal(slot), sql.Literal(pub)))
messages = changes = 0
while rows := cur.fetchmany(2000):
    messages += len(rows)
    if decode:
        for (data,) in rows:
            changes += isinstance(po.decode(data), kinds)
cur.close()
con.rollback()
print(json.dumps({"messages": messages, "changes": changes}))
"""


def _config(work: Path, dsn: str, slot: str) -> Path:
    """The documented defaults of a logical source (the snapshot of an empty table
    included), its own slot: slots are the cluster's, one per database."""
    data = {
        "agent": {"device_id": "bench-gw", "state_dir": str(work / "state"),
                  "log_format": "json"},
        "buffer": {"max_memory": "16MiB"},
        "sources": [{"name": "app", "kind": "postgres", "mode": "logical", "dsn": dsn,
                     "tables": ["readings"], "slot": slot, "publication": PUBLICATION}],
        "sink": {"kind": "dir", "path": str(work / "lake"), "create": True},
    }
    return write_config(work, data)


def _flush(config: Path) -> Any:
    return timed("agent flush (logical)", agent_cmd("flush", "--config", str(config)))


def _sql(dsn: str, query: str, *params: Any) -> Any:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        row = con.execute(query, params).fetchone()
        return row[0] if row else None


def _drop_slot(dsn: str, slot: str) -> None:
    """A slot left behind keeps WAL forever (and max_replication_slots is 10)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE slot_name = %s", (slot,))


def _held(dsn: str, slot: str) -> float:
    """Bytes of WAL the slot holds back (from its confirmed position to the WAL's end)."""
    return float(_sql(dsn, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)"
                           " FROM pg_replication_slots WHERE slot_name = %s", slot))


def _slot_made(work: Path, dsn: str, slot: str) -> tuple[Path, Any]:
    """The agent's first run on an empty table: it creates the publication and the slot.
    Returns the config and that run's timing (start-up and set-up, no changes)."""
    work.mkdir()
    config = _config(work, dsn, slot)
    first = _flush(config)
    if not _sql(dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", slot):
        raise RuntimeError(f"the agent's first flush made no slot {slot!r}")
    return config, first


def writes(server: Any, work: Path, name: str, n: int, single: bool, setup: str
           ) -> dict[str, float]:
    """Scenario 9's workload on a fresh database prepared for one of SETUPS."""
    if setup != "logical":
        return workload(fresh(server, name, setup == "triggers"), n, single)
    dsn = fresh(server, name, triggers=False)
    _slot_made(work / name, dsn, name)
    try:
        return workload(dsn, n, single)
    finally:
        _drop_slot(dsn, name)


def _lake_changes(lake: Path) -> int:
    """Row changes (c, u, d) in the lake's files."""
    import pyarrow.parquet as pq

    return sum(sum(op in ("c", "u", "d") for op in pq.read_table(p, columns=["_op"])["_op"]
                   .to_pylist()) for p in lake.rglob("*.parquet"))


def capture(server: Any, work: Path, run_no: int, n: int) -> dict[str, float]:
    name = f"lcap{run_no}"
    dsn = fresh(server, name, triggers=False)
    config, first = _slot_made(work / name, dsn, name)
    try:
        fill(dsn, n)
        out: dict[str, float] = {"wal_bytes": _held(dsn, name), "empty_cpu": first.cpu,
                                 "empty_wall": first.wall}
        variants = ("discard", "decode") if run_no % 2 == 0 else ("decode", "discard")
        for variant in variants:  # peek only: the agent still sees the backlog after them
            done = timed(f"floor script ({variant})",
                         [runtime_python(), "-c", FLOOR, dsn, name, PUBLICATION, variant])
            seen = json.loads(done.stdout.strip().splitlines()[-1])
            if variant == "decode" and seen["changes"] != n:
                raise RuntimeError(f"the decoding floor saw {seen['changes']} of {n} changes")
            out.update({f"{variant}_cpu": done.cpu, f"{variant}_wall": done.wall,
                        "messages": float(seen["messages"])})
        agent = _flush(config)
        got = _lake_changes(work / name / "lake")
        if got != n:
            raise RuntimeError(f"the agent's flush put {got} of {n} changes in the lake")
        out.update({"agent_cpu": agent.cpu, "agent_wall": agent.wall,
                    "lag_after": _held(dsn, name)})
        return out
    finally:
        _drop_slot(dsn, name)


def run(mode: Any) -> dict[str, Any]:
    from tests.servers import Postgres

    sizes = SIZES["full" if mode.name == "full" else "quick"]
    server = Postgres(fsync=True)
    raw: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        raw.setdefault(key, []).append(value)

    try:
        with workdir("pg-logical") as work:
            for run_no in range(mode.runs):
                order = SETUPS[run_no % 3:] + SETUPS[:run_no % 3]
                for single in (False, True):
                    n = sizes["single"] if single else sizes["rows"]
                    shape = "single" if single else "batched"
                    for setup in order:
                        name = f"lw{run_no}{shape}{setup}"
                        for op, rate in writes(server, work, name, n, single, setup).items():
                            add(f"{shape}.{op}.{setup}", rate)
                for key, value in capture(server, work, run_no, sizes["capture"]).items():
                    add(f"capture.{key}", value)
                log(f"postgres logical: run {run_no + 1}/{mode.runs} done")
    finally:
        server.remove()
    return _summarise(raw, sizes)


def _ratio(a: list[float], b: list[float]) -> dict[str, Any]:
    return summary([x / y for x, y in zip(a, b, strict=True)])


def _summarise(raw: dict[str, list[float]], sizes: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": sizes, "writes": {}}
    for shape in ("batched", "single"):
        for op in OPS:
            got = {s: raw[f"{shape}.{op}.{s}"] for s in SETUPS}
            out["writes"][f"{shape} {op}"] = {
                **{s: summary(v) for s, v in got.items()},
                "triggers_ratio": _ratio(got["triggers"], got["plain"]),
                "logical_ratio": _ratio(got["logical"], got["plain"])}
    n = sizes["capture"]
    c = {k[len("capture."):]: v for k, v in raw.items() if k.startswith("capture.")}
    out["capture"] = {
        "changes": n,
        "messages": summary(c["messages"]),
        "wal_bytes_per_change": summary([w / n for w in c["wal_bytes"]]),
        "lag_after": summary(c["lag_after"]),
        "empty_flush_cpu": summary(c["empty_cpu"]),  # the first flush: no changes
        "empty_flush_wall": summary(c["empty_wall"]),
        **{f"{who}_changes_s": summary([n / w for w in c[f"{who}_wall"]])
           for who in ("agent", "discard", "decode")},
        **{f"{who}_cpu_s_per_1m": summary([x / n * 1e6 for x in c[f"{who}_cpu"]])
           for who in ("agent", "discard", "decode")},
        "cpu_ratio": _ratio(c["agent_cpu"], c["discard_cpu"]),
        "cpu_ratio_decode": _ratio(c["agent_cpu"], c["decode_cpu"]),
        "rate_ratio": _ratio(c["discard_wall"], c["agent_wall"]),  # agent ÷ floor changes/s
    }
    return out
