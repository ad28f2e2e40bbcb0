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


@dataclass(frozen=True)
class Net:
    truncate: bool  # the batch holds a `t` marker: the device's rows start over
    rows: pa.Table  # one row per key: `_op` says set (c, u, r) or remove (d)
    keep: dict[str, str]  # column -> its `__keep_<n>` flag column in ``rows``


def silver_frame(bronze: pa.Table) -> pa.Table:
    """A bronze file's rows with the columns silver keeps, in types Delta Lake holds
    (a time of day becomes its ISO text)."""
    table = bronze.drop_columns([c for c in DROPPED if c in bronze.column_names])
    for i, f in enumerate(table.schema):
        if pa.types.is_time(f.type):
            table = table.set_column(i, f.name, pc.cast(table.column(i), pa.string()))
    return table


def concat(frames: list[pa.Table], where: str) -> pa.Table:
    """Files of one table in ordinal order; a column added later is null before."""
    try:
        return pa.concat_tables(frames, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise EdgeAgentError(
            f"{where}: a column changed its type between bronze files ({exc}); silver "
            "keeps one type per column: rename the column on the device (a new column), "
            "or rebuild this silver table from a lake whose old files you exclude"
        ) from exc


def net_changes(frame: pa.Table, key: list[str]) -> Net:
    frame = frame.sort_by("_pos")
    ops = frame.column("_op")
    markers = pc.filter(frame.column("_pos"), pc.equal(ops, "t"))
    truncate = len(markers) > 0
    if truncate:
        frame = frame.filter(pc.greater(frame.column("_pos"), pc.max(markers)))
    if not len(frame):
        return Net(truncate, frame, {})
    numbered = frame.append_column("__i", pa.array(range(len(frame)), pa.int64()))
    last = numbered.group_by(key, use_threads=False).aggregate([("__i", "max")])
    chosen = pc.sort_indices(last.column("__i_max"))
    rows = frame.take(pc.take(last.column("__i_max"), chosen))
    if UNCHANGED in frame.column_names and rows.column(UNCHANGED).null_count < len(rows):
        return _fill_unchanged(frame, rows, key, truncate)
    if UNCHANGED in rows.column_names:
        rows = rows.drop_columns([UNCHANGED])
    return Net(truncate, rows, {})


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
