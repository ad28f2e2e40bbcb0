"""Scenario 6: bytes shipped per change, Parquet against a Debezium-style JSON envelope.

The Parquet side is what the agent shipped in scenario 2 (first run). The JSON
side encodes the same change-log rows the way Kafka Connect's JsonConverter
prints a Debezium event without its schema: one compact JSON object per change
with ``before``/``after`` row images (full before images, as Debezium's MySQL
connector sends them; the trigger log has no before image of an update, so the
previous image of the key is tracked), ``op``, ``ts_ms``, a ``source`` block and
``transaction``. It is gzip-compressed once as one stream (the best case for
JSON) and once per 5,000-change batch (a message-sized unit). Sizes are
deterministic, so this runs once.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any

from bench.common import dir_bytes
from bench.session import Session

BATCH = 5000
DEBEZIUM_VERSION = "2.7.3.Final"


def _gzip_size(chunks: list[bytes]) -> int:
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip container, level 6
    return sum(len(comp.compress(c)) for c in chunks) + len(comp.flush())


def debezium_sizes(db: Path, device: str = "bench-gw") -> dict[str, int]:
    con = sqlite3.connect(db)
    shapes = {tid: (name, [c[0] for c in json.loads(cols)]) for tid, name, cols in
              con.execute("SELECT tid, name, columns FROM _edge_cdc_tables")}
    width = max(len(cols) for _, cols in shapes.values())
    values = ", ".join(f"c{i}" for i in range(width))
    state: dict[int, dict[Any, dict[str, Any]]] = {tid: {} for tid in shapes}
    raw = 0
    stream = zlib.compressobj(6, zlib.DEFLATED, 31)
    stream_bytes = 0
    batched_bytes = 0
    batch: list[bytes] = []
    changes = 0
    cur = con.execute(f"SELECT seq, tid, op, ts_ms, {values} FROM _edge_cdc_log "
                      "WHERE tid != 0 ORDER BY seq")
    for seq, tid, op, ts_ms, *cells in cur:
        name, cols = shapes[tid]
        row = dict(zip(cols, cells, strict=False))
        key = cells[0]
        if op == "c":
            before, after = None, row
        elif op == "u":
            before, after = state[tid].get(key), row
        else:
            before, after = row, None
        if after is None:
            state[tid].pop(key, None)
        else:
            state[tid][key] = after
        event = {
            "before": before, "after": after,
            "source": {"version": DEBEZIUM_VERSION, "connector": "sqlite", "name": device,
                       "ts_ms": ts_ms, "snapshot": "false", "db": "app", "sequence": None,
                       "table": name, "pos": seq, "txId": None},
            "op": op, "ts_ms": ts_ms + 5, "transaction": None,
        }
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        raw += len(line)
        stream_bytes += len(stream.compress(line))
        batch.append(line)
        changes += 1
        if len(batch) == BATCH:
            batched_bytes += _gzip_size(batch)
            batch = []
    if batch:
        batched_bytes += _gzip_size(batch)
    stream_bytes += len(stream.flush())
    con.close()
    return {"changes": changes, "json": raw, "json_gzip_stream": stream_bytes,
            "json_gzip_batches": batched_bytes}


def run(session: Session) -> dict[str, Any]:
    mode = session.mode
    db = session.template(mode.capture_tables, mode.capture_changes)
    lake = session.kept["capture_lake"]
    files, parquet = dir_bytes(lake, ".parquet")
    manifests, manifest_bytes = dir_bytes(lake, ".manifest.json")
    sizes = debezium_sizes(db)
    n = sizes["changes"]
    rows = {
        "parquet (zstd-1, shipped)": parquet,
        "parquet + manifests": parquet + manifest_bytes,
        "Debezium JSON": sizes["json"],
        "Debezium JSON, gzip per 5,000 changes": sizes["json_gzip_batches"],
        "Debezium JSON, gzip one stream": sizes["json_gzip_stream"],
    }
    per_change = {k: v / n for k, v in rows.items()}
    base = per_change["Debezium JSON"]
    return {"changes": n, "files": files, "manifests": manifests,
            "bytes": rows, "bytes_per_change": per_change,
            "ratio_to_json": {k: v / base for k, v in per_change.items()}}
