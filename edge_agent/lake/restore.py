"""`edge-agent lake restore`: a source's tables as they were at a position or a time,
rebuilt from bronze into a new SQLite database.

Each table's files are read in position order (a device's positions are one
order across its source's tables) and replayed up to the cut: a change sets its
key's row, a delete removes it, a ``t`` marker forgets the table's rows (a
snapshot follows it), ``r`` rows are upserts. Values come back exactly: a value
that did not fit its column's type is taken from ``_unfit``. Columns added
later exist in the restored table; rows from before have NULL there. Memory is
the restored state, one record batch of a file at a time on top.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from edge_agent.bronze.layout import PARQUET, encode_name
from edge_agent.bronze.schema import decode_unfit
from edge_agent.errors import EdgeAgentError
from edge_agent.lake.store import LakeStore

ENVELOPE = {
    "_op",
    "_pos",
    "_ts_ms",
    "_captured_ms",
    "_device",
    "_source",
    "_table",
    "_unfit",
    "_tx",
    "_before",
    "_lsn",
    "_unchanged",
}


@dataclass
class TableState:
    name: str
    key: list[str] = field(default_factory=list)
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, declared type)
    rows: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)


def _files(store: LakeStore, source: str, device: str | None) -> list[tuple[int, str, str]]:
    """(first position, table, path) of every bronze file of ``source``, in position
    order (one device's: a source's positions are one order across its tables)."""
    prefix = f"bronze/{encode_name(source)}/"
    found: list[tuple[str, int, str, str]] = []
    for rel, _ in store.listing():
        parts = rel[len(prefix) :].split("/") if rel.startswith(prefix) else []
        if len(parts) != 3 or not parts[1].startswith("date=") or not rel.endswith(PARQUET):
            continue
        dev, first, _ = parts[2][: -len(PARQUET)].rsplit("-", 2)
        if device is None or dev == device:
            found.append((dev, int(first), unquote(parts[0]), rel))
    if not found:
        raise EdgeAgentError(f"--source {source!r}: no bronze files of it in {store.name}")
    devices = sorted({f[0] for f in found})
    if len(devices) > 1:
        raise EdgeAgentError(
            f"source {source!r} has files of several devices ({', '.join(devices)}): "
            "choose one with --device"
        )
    return sorted((first, table, rel) for _, first, table, rel in found)


def _parquet(store: LakeStore, rel: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.ParquetFile(pa.BufferReader(store.read(rel)))


def _rows(file: Any, cut: int) -> Iterator[dict[str, Any]]:
    for batch in file.iter_batches():
        for row in batch.to_pylist():
            if row["_pos"] > cut:
                return
            yield row


def cut_of(store: LakeStore, source: str, device: str | None, at_ms: int) -> int:
    """The last position whose change time is at or before ``at_ms``."""
    cut = 0
    for _, _, rel in _files(store, source, device):
        table = _parquet(store, rel).read(columns=["_pos", "_ts_ms"])
        for pos, ts in zip(table["_pos"].to_pylist(), table["_ts_ms"].to_pylist(), strict=True):
            if ts is not None and ts <= at_ms:
                cut = max(cut, pos)
    return cut


def replay(
    store: LakeStore, source: str, device: str | None, cut: int, only: str | None = None
) -> dict[str, TableState]:
    """Every table of the source (empty when nothing of it is at or before ``cut``), or
    only the table ``only``."""
    tables: dict[str, TableState] = {}
    for first, name, rel in _files(store, source, device):
        if only is not None and name != only:
            continue
        state = tables.setdefault(name, TableState(name))
        if first > cut and state.columns:
            continue
        file = _parquet(store, rel)
        _shape(state, file.schema_arrow)
        for row in _rows(file, cut):
            _apply(state, row)
    if only is not None and not tables:
        raise EdgeAgentError(f"--table {only!r}: no bronze files of it in source {source!r}")
    return tables


def _shape(state: TableState, schema: Any) -> None:
    """The table's key and columns: the newest file's, keeping columns seen before."""
    meta = schema.metadata or {}
    state.key = json.loads(meta.get(b"edge_agent.key", b"[]"))
    types = json.loads(meta.get(b"edge_agent.decltypes", b"[]"))
    names = [n for n in schema.names if n not in ENVELOPE]
    known = {n for n, _ in state.columns}
    for name, decl in zip(names, types, strict=False):
        if name not in known:
            state.columns.append((name, decl))


def _apply(state: TableState, row: dict[str, Any]) -> None:
    op = row["_op"]
    if op == "t":
        state.rows.clear()
        return
    values = {
        k: (int(v) if isinstance(v, bool) else v) for k, v in row.items() if k not in ENVELOPE
    }
    values.update(decode_unfit(row.get("_unfit")))
    key = tuple(values.get(k) for k in state.key)
    if op == "d":
        state.rows.pop(key, None)
        return
    before = state.rows.get(key, {})
    for column in row.get("_unchanged") or ():  # logical mode: a TOASTed value not sent
        values[column] = before.get(column)
    state.rows[key] = values


def write_sqlite(tables: dict[str, TableState], to: Path) -> dict[str, int]:
    """The restored tables into a new SQLite file; rows per table."""
    if to.exists():
        raise EdgeAgentError(f"--to {str(to)!r} exists: restore writes a new file only")
    con = sqlite3.connect(to)
    counts: dict[str, int] = {}
    try:
        with con:
            for t in tables.values():
                _create(con, t)
                cols = [n for n, _ in t.columns]
                sql = (
                    f"INSERT INTO {_q(t.name)} ({', '.join(map(_q, cols))}) "
                    f"VALUES ({', '.join('?' * len(cols))})"
                )
                con.executemany(sql, ([_sqlite(r.get(c)) for c in cols] for r in t.rows.values()))
                counts[t.name] = len(t.rows)
    finally:
        con.close()
    return counts


def _sqlite(value: Any) -> Any:
    """A value SQLite stores as is; others (dates, decimals, lists of a PostgreSQL
    source) as their text."""
    if value is None or isinstance(value, int | float | str | bytes):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    iso = getattr(value, "isoformat", None)
    return iso() if callable(iso) else str(value)


def _create(con: sqlite3.Connection, t: TableState) -> None:
    defs = [f"{_q(n)} {_decl(decl)}".rstrip() for n, decl in t.columns]
    if t.key:
        defs.append(f"PRIMARY KEY ({', '.join(map(_q, t.key))})")
    con.execute(f"CREATE TABLE {_q(t.name)} ({', '.join(defs)})")


def _decl(decl: str) -> str:
    """A declared type SQLite's grammar takes (``integer[]`` and the like: none)."""
    return (
        decl if re.fullmatch(r"[A-Za-z][A-Za-z0-9 _]*(\(\s*\d+(\s*,\s*\d+)?\s*\))?", decl) else ""
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_parquet(
    store: LakeStore,
    source: str,
    device: str | None,
    cut: int,
    to: Path,
    only: str | None = None,
) -> dict[str, int]:
    """Each table's rows at ``cut`` as ``<to>/<table>.parquet`` (a new directory):
    typed as in bronze, with ``_unfit`` as in bronze and the ``_pos`` and ``_ts_ms`` of
    the change that set each row. Rows per table."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from edge_agent.lake.silver_reduce import conform, net_changes, silver_frame

    if to.exists():
        raise EdgeAgentError(f"--to {str(to)!r} exists: restore writes a new directory only")
    frames: dict[str, list[Any]] = {}
    keys: dict[str, list[str]] = {}
    for first, name, rel in _files(store, source, device):
        if (only is not None and name != only) or (first > cut and name in frames):
            continue
        table = _parquet(store, rel).read()
        keys[name] = json.loads((table.schema.metadata or {}).get(b"edge_agent.key", b"[]"))
        frames.setdefault(name, []).append(
            silver_frame(table.filter(pc.less_equal(table.column("_pos"), cut)), False)
        )
    if only is not None and not frames:
        raise EdgeAgentError(f"--table {only!r}: no bronze files of it in source {source!r}")
    to.mkdir(parents=True)
    counts: dict[str, int] = {}
    for name, parts in frames.items():
        where = f"{source}.{name}"
        net = net_changes(conform(parts, None, where), keys[name], where)
        rows = net.rows.filter(pc.not_equal(net.rows.column("_op"), "d"))
        rows = rows.drop_columns(["_op", "_device", *net.keep.values()])
        pq.write_table(rows, to / f"{encode_name(name)}.parquet", compression="zstd")
        counts[name] = len(rows)
    return counts
