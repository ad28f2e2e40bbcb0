"""Neutral table descriptions to Arrow schemas, and rows of changes to Arrow batches.

Bronze sees only the Arrow types of a ``records.TableSpec``; each source module
maps its database's types (sources/sqlite.py, sources/postgres.py). A source
may hand over values that do not fit their column's type (SQLite stores any
value in any column). Such a value is never dropped and never crashes capture:
the typed cell is NULL and the exact value goes to the ``_unfit`` JSON column
({"column": {"t": "integer|real|text|blob", "v": value}}, blobs base64; other
types by their source type name and text). docs/bronze-format.md documents it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from edge_agent.records import ColumnSpec, TableSpec

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
TX = ("_tx", pa.int64())  # the source's transaction id, where the database has one
BEFORE = ("_before", pa.string())  # the old row of an update as JSON, where asked for
# Log-based capture: the commit's LSN, and the columns whose value the log left out
# (an unchanged TOASTed value with no old row to take it from: NULL in its column).
LOGICAL = (("_lsn", pa.int64()), ("_unchanged", pa.list_(pa.string())))
UNFIT = "_unfit"
_KIND_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bytes": pa.binary(),
    "bool": pa.bool_(),
}
_NONE = type(None)
_ALLOWED: dict[str, frozenset[type]] = {
    "int": frozenset({int, _NONE}),
    "float": frozenset({float, _NONE}),
    "str": frozenset({str, _NONE}),
    "bytes": frozenset({bytes, _NONE}),
    "bool": frozenset({int, bool, _NONE}),
}
_SQLITE_TYPE_NAMES = {int: "integer", float: "real", str: "text", bytes: "blob"}


def kind_of(arrow: pa.DataType) -> str:
    """The fitting rule a column's values go through: one of the plain kinds, or
    "arrow" (any other Arrow type: values are converted by pyarrow, one by one
    when a page does not convert as a whole)."""
    for kind, t in _KIND_TYPES.items():
        if arrow == t:
            return kind
    return "arrow"


@dataclass(frozen=True)
class BatchSchema:
    """The Arrow schema of one capture's files, with its fingerprint."""

    shape: TableSpec
    schema: pa.Schema
    kinds: tuple[str, ...]
    fingerprint: str
    tx: bool = False
    before: bool = False
    logical: bool = False


def batch_schema(
    shape: TableSpec, tx: bool = False, before: bool = False, logical: bool = False
) -> BatchSchema:
    """``tx``: the envelope carries ``_tx`` (slot 1 of each change row); ``before``:
    it carries ``_before`` (the slot after the row's values); ``logical``: ``_lsn`` and
    ``_unchanged`` (the two slots after that)."""
    kinds = tuple(kind_of(c.arrow) for c in shape.columns)
    extra = ((TX,) if tx else ()) + ((BEFORE,) if before else ()) + (LOGICAL if logical else ())
    fields = [pa.field(n, t) for n, t in ENVELOPE + extra]
    fields += [pa.field(c.name, c.arrow) for c in shape.columns]
    fields.append(pa.field(UNFIT, pa.string()))
    canonical = json.dumps(
        {
            "format": FORMAT_VERSION,
            **({"tx": True} if tx else {}),
            **({"before": True} if before else {}),
            **({"logical": True} if logical else {}),
            "key": list(shape.key),
            "columns": [
                [c.name, c.source_type, str(c.arrow) if k == "arrow" else k]
                for c, k in zip(shape.columns, kinds, strict=True)
            ],
        }
    )
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    metadata = {
        b"edge_agent.format": FORMAT_VERSION.encode(),
        b"edge_agent.key": json.dumps(list(shape.key)).encode(),
        b"edge_agent.decltypes": json.dumps([c.source_type for c in shape.columns]).encode(),
        b"edge_agent.schema_fingerprint": fingerprint.encode(),
    }
    schema = pa.schema(fields, metadata=metadata)
    return BatchSchema(shape, schema, kinds, fingerprint, tx, before, logical)


def _fits(value: object, kind: str) -> bool:
    if value is None:
        return True
    vtype = type(value)
    if kind == "float":
        return vtype is float or (isinstance(value, int) and abs(value) <= FLOAT_EXACT)
    if kind == "bool":
        return vtype in (int, bool) and value in (0, 1)
    return vtype in _ALLOWED[kind]


def _unfit_entry(value: Any) -> dict[str, Any]:
    name = _SQLITE_TYPE_NAMES.get(type(value))
    if name is None:  # not a SQLite storage class: kept as its text
        return {"t": type(value).__name__, "v": str(value)}
    if isinstance(value, bytes):
        return {"t": name, "v": base64.b64encode(value).decode()}
    return {"t": name, "v": value}


def _arrow_array(
    values: Sequence[object], column: ColumnSpec, unfit: dict[int, dict[str, Any]]
) -> pa.Array:
    """Any other Arrow type: converted by pyarrow; a value it refuses (a NaN numeric
    for a decimal, a date out of range...) goes exactly into ``unfit`` as text."""
    try:
        return pa.array(values, column.arrow)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    fitted: list[object] = []
    for i, v in enumerate(values):
        try:
            pa.array([v], column.arrow)
            fitted.append(v)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            unfit.setdefault(i, {})[column.name] = {"t": column.source_type, "v": str(v)}
            fitted.append(None)
    return pa.array(fitted, column.arrow)


def _inferred(values: Sequence[object], kind: str) -> pa.Array | None:
    """The column as pyarrow infers it, when that is exactly the kind's type: every value
    has the kind's Python type (integers in a float column only up to 2**53, which
    pyarrow refuses beyond) or is None. None when a value needs the per-value rules."""
    if kind in ("bool", "bytes"):
        return None  # 0/1 integers become booleans one by one; str and bytes infer binary
    try:
        arr = pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    if arr.type == _KIND_TYPES[kind]:
        return arr
    if arr.type == pa.null():
        return pa.nulls(len(values), _KIND_TYPES[kind])
    return None


def column_array(
    values: Sequence[object], kind: str, name: str, unfit: dict[int, dict[str, Any]]
) -> pa.Array:
    """An Arrow array of one plain-kind column; values that do not fit go into
    ``unfit`` by row."""
    inferred = _inferred(values, kind)
    if inferred is not None:
        return inferred
    types = set(map(type, values))
    clean = types <= _ALLOWED[kind] and (kind != "bool" or set(values) <= {0, 1, None})
    if kind == "float" and int in types and types <= {int, float, _NONE}:
        # integers land exactly in float64 up to 2**53 (only they need a per-value look)
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
    """Change rows (pos, tx, op, ts_ms, value...[, before][, lsn, unchanged]) of one
    capture as a RecordBatch."""
    n = len(rows)
    width = len(bs.shape.columns)
    cols = list(zip(*rows, strict=False)) if rows else [()] * (4 + width)
    unfit: dict[int, dict[str, Any]] = {}
    arrays: list[pa.Array] = [
        pa.array(cols[2], pa.string()),
        pa.array(cols[0], pa.int64()),
        pa.array(cols[3], pa.int64()),
        # Typed scalars, not .cast(): a cast imports pyarrow.compute (+8.5 MiB RSS).
        pa.repeat(pa.scalar(env.captured_ms, pa.int64()), n),
        pa.repeat(pa.scalar(env.device, pa.string()), n),
        pa.repeat(pa.scalar(env.source, pa.string()), n),
        pa.repeat(pa.scalar(bs.shape.name, pa.string()), n),
    ]
    if bs.tx:
        arrays.append(pa.array(cols[1], pa.int64()))
    after = 4 + width
    if bs.before:
        arrays.append(pa.array(cols[after] if rows else [], pa.string()))
        after += 1
    if bs.logical:
        arrays.append(pa.array(cols[after] if rows else [], pa.int64()))
        arrays.append(pa.array(cols[after + 1] if rows else [], LOGICAL[1][1]))
    for i, (column, kind) in enumerate(zip(bs.shape.columns, bs.kinds, strict=True)):
        values = cols[4 + i] if 4 + i < len(cols) else (None,) * n
        if kind == "arrow":
            arrays.append(_arrow_array(values, column, unfit))
        else:
            arrays.append(column_array(values, kind, column.name, unfit))
    if unfit:
        unfit_json = [
            json.dumps(unfit[i], ensure_ascii=False) if i in unfit else None for i in range(n)
        ]
        arrays.append(pa.array(unfit_json, pa.string()))
    else:
        arrays.append(pa.nulls(n, pa.string()))
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
