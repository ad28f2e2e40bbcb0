"""Bronze changes of one device and table reduced to what a merge applies: the last
change of each key, after the last ``t`` marker.

A ``t`` marker (TRUNCATE, or the start of a re-snapshot) empties the device's
rows of the table; the changes after it fill them again. A ``d`` removes its key;
``c``, ``u`` and ``r`` set the key's row. A logical-mode ``u`` may leave columns
out (``_unchanged``: a TOASTed value the update did not touch): their value is
the key's previous one, taken from an earlier change of the same batch when
there is one, else kept from the silver row (the ``__keep_<n>`` flags).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from edge_agent.errors import EdgeAgentError

# Kept from the bronze envelope: who, when, and what the change did.
KEPT = ("_device", "_op", "_pos", "_ts_ms")
DROPPED = ("_captured_ms", "_source", "_table", "_tx", "_before", "_lsn")
UNCHANGED = "_unchanged"
KEEP = "__keep_"
_INDEX = "__edge_agent_index"


@dataclass(frozen=True)
class Net:
    truncate: bool  # the batch holds a `t` marker: the device's rows start over
    rows: pa.Table  # one row per key: `_op` says set (c, u, r) or remove (d)
    keep: dict[str, str]  # column -> its `__keep_<n>` flag column in ``rows``


def silver_frame(bronze: pa.Table, delta_types: bool = True) -> pa.Table:
    """A bronze file's rows with the columns silver keeps; with ``delta_types`` a time of
    day becomes its ISO text (Delta Lake has no such type)."""
    table = bronze.drop_columns([c for c in DROPPED if c in bronze.column_names])
    for i, f in enumerate(table.schema):
        if delta_types and pa.types.is_time(f.type):
            table = table.set_column(i, f.name, pc.cast(table.column(i), pa.string()))
    return table


def conform(frames: list[pa.Table], reference: pa.Schema | None, where: str) -> pa.Table:
    """Files of one table in ordinal order as one table. A column keeps the type it had
    first (in the silver table, else in the oldest file): a later file's values are cast
    to it when the cast is exact, else refused. So one run and many give the same
    answer. A column added later is null before."""
    types = {f.name: f.type for f in reference} if reference is not None else {}
    out = []
    for original in frames:
        frame = original
        for i, f in enumerate(original.schema):
            want = types.setdefault(f.name, f.type)
            if want == f.type:
                continue
            try:
                frame = frame.set_column(i, f.name, pc.cast(frame.column(i), want, safe=True))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise EdgeAgentError(
                    f"{where}: column {f.name!r} was {want} and is {f.type} in a later bronze "
                    f"file, with values that do not fit {want} ({exc}); silver keeps a "
                    "column's first type: give the new type a new column name on the device"
                ) from exc
        out.append(frame)
    return pa.concat_tables(out, promote_options="default")


def net_changes(frame: pa.Table, key: list[str], where: str = "") -> Net:
    frame = frame.sort_by("_pos")
    ops = frame.column("_op")
    markers = pc.filter(frame.column("_pos"), pc.equal(ops, "t"))
    truncate = len(markers) > 0
    if truncate:
        frame = frame.filter(pc.greater(frame.column("_pos"), pc.max(markers)))
    if UNCHANGED in frame.column_names and not len(frame):
        frame = frame.drop_columns([UNCHANGED])
    if not len(frame):
        return Net(truncate, frame, {})
    _check_keys(frame, key, where)
    numbered = frame.append_column(_INDEX, pa.array(range(len(frame)), pa.int64()))
    last = numbered.group_by(key, use_threads=False).aggregate([(_INDEX, "max")])
    chosen = pc.sort_indices(last.column(f"{_INDEX}_max"))
    rows = frame.take(pc.take(last.column(f"{_INDEX}_max"), chosen))
    if UNCHANGED in frame.column_names and rows.column(UNCHANGED).null_count < len(rows):
        return _fill_unchanged(frame, rows, key, truncate)
    if UNCHANGED in rows.column_names:
        rows = rows.drop_columns([UNCHANGED])
    return Net(truncate, rows, {})


def _check_keys(frame: pa.Table, key: list[str], where: str) -> None:
    """A NULL key cell: the value did not fit the key column's type (it is in
    ``_unfit``). Merging by it would fold distinct keys into one: refused, loudly."""
    for k in key:
        if k not in frame.column_names or frame.column(k).null_count:
            nulls = pc.is_null(frame.column(k)) if k in frame.column_names else None
            pos = pc.filter(frame.column("_pos"), nulls)[0] if nulls is not None else "?"
            raise EdgeAgentError(
                f"{where}: key column {k!r} has no typed value at position {pos} (its value "
                "did not fit the column's declared type and is in _unfit): silver and Parquet "
                "restores merge by typed keys; restore this table to SQLite instead "
                "(`lake restore --format sqlite`), and declare the key column with the "
                "type its values have"
            )


def _fill_unchanged(frame: pa.Table, rows: pa.Table, key: list[str], truncate: bool) -> Net:
    """Columns a chosen ``u`` left out: from the key's latest earlier change in the
    batch that had them, else flagged to keep the silver row's value."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in frame.to_pylist():  # only batches that hold such an update come here
        k = tuple(row[c] for c in key)
        if row["_op"] == "d":
            latest.pop(k, None)
            continue
        missing = set(row[UNCHANGED] or ())
        latest.setdefault(k, {}).update((c, v) for c, v in row.items() if c not in missing)
    chosen = rows.to_pylist()
    flags: dict[str, str] = {}
    marks: list[set[str]] = []
    for row in chosen:
        known = latest.get(tuple(row[c] for c in key), {})
        left_out = list(row.pop(UNCHANGED) or ())
        row.update((c, known[c]) for c in left_out if c in known)
        marks.append({c for c in left_out if c not in known})
        for c in marks[-1]:
            flags.setdefault(c, f"{KEEP}{len(flags)}")
    schema = rows.schema.remove(rows.schema.get_field_index(UNCHANGED))
    table = pa.Table.from_pylist(chosen, schema=schema)
    for c, flag in flags.items():
        table = table.append_column(flag, pa.array([c in m for m in marks], pa.bool_()))
    return Net(truncate, table, flags)
