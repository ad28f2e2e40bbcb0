"""SQLite declared types to Arrow, and rows of the change log to Arrow batches.

SQLite stores any value in any column; a file column has one type. A value
that does not fit its column's Arrow type is never dropped and never crashes
capture: the typed cell is NULL and the exact value goes to the ``_unfit``
JSON column ({"column": {"t": "integer|real|text|blob", "v": value}}, blobs
base64). docs/bronze-format.md documents the mapping.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from edge_agent.sources.sqlite import TableShape

FORMAT_VERSION = "1"
FLOAT_EXACT = 2**53

ENVELOPE: tuple[tuple[str, pa.DataType], ...] = (
    ("_op", pa.string()),
    ("_pos", pa.int64()),
    ("_ts_ms", pa.int64()),
    ("_captured_ms", pa.int64()),
    ("_device", pa.string()),
    ("_source", pa.string()),
    ("_table", pa.string()),
)
UNFIT = "_unfit"
_KIND_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(), "float": pa.float64(), "str": pa.string(),
    "bytes": pa.binary(), "bool": pa.bool_(),
}
_NONE = type(None)
_ALLOWED: dict[str, frozenset[type]] = {
    "int": frozenset({int, _NONE}), "float": frozenset({float, _NONE}),
    "str": frozenset({str, _NONE}), "bytes": frozenset({bytes, _NONE}),
    "bool": frozenset({int, _NONE}),
}
_SQLITE_TYPE_NAMES = {int: "integer", float: "real", str: "text", bytes: "blob"}


# SQLite's affinity rules (https://sqlite.org/datatype3.html 3.1) in their order, refined:
# BOOLEAN -> bool; DATE/TIME -> text (ISO text in practice); an untyped column is text.
_KIND_RULES = (
    (("INT",), "int"), (("CHAR", "CLOB", "TEXT"), "str"), (("BLOB",), "bytes"),
    (("REAL", "FLOA", "DOUB"), "float"), (("BOOL",), "bool"), (("DATE", "TIME"), "str"),
)


def column_kind(decltype: str) -> str:
    t = decltype.upper()
    if not t:
        return "str"
    for needles, kind in _KIND_RULES:
        if any(n in t for n in needles):
            return kind
    return "float"  # NUMERIC, DECIMAL(10,2), ...


@dataclass(frozen=True)
class BatchSchema:
    """The Arrow schema of one capture's files, with its fingerprint."""

    shape: TableShape
    schema: pa.Schema
    kinds: tuple[str, ...]
    fingerprint: str


def batch_schema(shape: TableShape) -> BatchSchema:
    kinds = tuple(column_kind(c.decltype) for c in shape.columns)
    fields = [pa.field(n, t) for n, t in ENVELOPE]
    fields += [pa.field(c.name, _KIND_TYPES[k]) for c, k in zip(shape.columns, kinds, strict=True)]
    fields.append(pa.field(UNFIT, pa.string()))
    canonical = json.dumps({
        "format": FORMAT_VERSION, "key": list(shape.key),
        "columns": [[c.name, c.decltype, k] for c, k in zip(shape.columns, kinds, strict=True)],
    })
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    metadata = {
        b"edge_agent.format": FORMAT_VERSION.encode(),
        b"edge_agent.key": json.dumps(list(shape.key)).encode(),
        b"edge_agent.decltypes": json.dumps([c.decltype for c in shape.columns]).encode(),
        b"edge_agent.schema_fingerprint": fingerprint.encode(),
    }
    schema = pa.schema(fields, metadata=metadata)
    return BatchSchema(shape, schema, kinds, fingerprint)


def _fits(value: object, kind: str) -> bool:
    if value is None:
        return True
    vtype = type(value)
    if kind == "float":
        return vtype is float or (isinstance(value, int) and abs(value) <= FLOAT_EXACT)
    if kind == "bool":
        return vtype is int and value in (0, 1)
    return vtype in _ALLOWED[kind]


def _unfit_entry(value: Any) -> dict[str, Any]:
    name = _SQLITE_TYPE_NAMES[type(value)]
    if isinstance(value, bytes):
        return {"t": name, "v": base64.b64encode(value).decode()}
    return {"t": name, "v": value}


def column_array(
    values: Sequence[object], kind: str, name: str, unfit: dict[int, dict[str, Any]]
) -> pa.Array:
    """An Arrow array of one column; values that do not fit go into ``unfit`` by row."""
    types = set(map(type, values))
    clean = types <= _ALLOWED[kind] and (
        kind != "bool" or set(values) <= {0, 1, None}
    )
    if kind == "float" and types <= {int, float, _NONE}:
        clean = all(not isinstance(v, int) or abs(v) <= FLOAT_EXACT for v in values)
    if not clean:
        fitted: list[object] = []
        for i, v in enumerate(values):
            if _fits(v, kind):
                fitted.append(v)
            else:
                unfit.setdefault(i, {})[name] = _unfit_entry(v)
                fitted.append(None)
        values = fitted
    if kind == "bool":
        return pa.array([None if v is None else bool(v) for v in values], pa.bool_())
    return pa.array(values, _KIND_TYPES[kind])


@dataclass(frozen=True)
class Envelope:
    device: str
    source: str
    captured_ms: int


def to_batch(bs: BatchSchema, rows: Sequence[Sequence[object]], env: Envelope) -> pa.RecordBatch:
    """Change-log rows (seq, tid, op, ts_ms, c0..cN) of one capture as a RecordBatch."""
    n = len(rows)
    width = len(bs.shape.columns)
    cols = list(zip(*rows, strict=False)) if rows else [()] * (4 + width)
    unfit: dict[int, dict[str, Any]] = {}
    arrays: list[pa.Array] = [
        pa.array(cols[2], pa.string()),
        pa.array(cols[0], pa.int64()),
        pa.array(cols[3], pa.int64()),
        pa.repeat(env.captured_ms, n).cast(pa.int64()),
        pa.repeat(env.device, n).cast(pa.string()),
        pa.repeat(env.source, n).cast(pa.string()),
        pa.repeat(bs.shape.name, n).cast(pa.string()),
    ]
    for i, (column, kind) in enumerate(zip(bs.shape.columns, bs.kinds, strict=True)):
        values = cols[4 + i] if 4 + i < len(cols) else (None,) * n
        arrays.append(column_array(values, kind, column.name, unfit))
    unfit_json = [json.dumps(unfit[i], ensure_ascii=False) if i in unfit else None
                  for i in range(n)] if unfit else [None] * n
    arrays.append(pa.array(unfit_json, pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=bs.schema)


def decode_unfit(text: str | None) -> dict[str, object]:
    """The exact values held in an ``_unfit`` cell (the inverse of capture)."""
    if not text:
        return {}
    out: dict[str, object] = {}
    for name, entry in json.loads(text).items():
        value = entry["v"]
        out[name] = base64.b64decode(value) if entry["t"] == "blob" else value
    return out
