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

from edge_agent.bronze.layout import encode_name
from edge_agent.bronze.schema import decode_unfit
from edge_agent.errors import EdgeAgentError

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


def _files(lake: Path, source: str, device: str | None) -> list[tuple[str, int, Path]]:
    """(device, first position, path) of every bronze file of ``source``."""
    root = lake / "bronze" / encode_name(source)
    if not root.is_dir():
        raise EdgeAgentError(f"--source {source!r}: no {root} in the lake")
    found = []
    for path in root.glob("*/date=*/*.parquet"):
        dev, first, _ = path.stem.rsplit("-", 2)
        if device is None or dev == device:
            found.append((dev, int(first), path))
    devices = sorted({f[0] for f in found})
    if len(devices) > 1:
        raise EdgeAgentError(
            f"source {source!r} has files of several devices ({', '.join(devices)}): "
            "choose one with --device"
        )
    return sorted(found, key=lambda f: f[1])


def _rows(path: Path, cut: int) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches():
        for row in batch.to_pylist():
            if row["_pos"] > cut:
                return
            yield row


def cut_of(lake: Path, source: str, device: str | None, at_ms: int) -> int:
    """The last position whose change time is at or before ``at_ms``."""
    import pyarrow.parquet as pq

    cut = 0
    for _, _, path in _files(lake, source, device):
        table = pq.read_table(path, columns=["_pos", "_ts_ms"])
        for pos, ts in zip(table["_pos"].to_pylist(), table["_ts_ms"].to_pylist(), strict=True):
            if ts is not None and ts <= at_ms:
                cut = max(cut, pos)
    return cut


def replay(lake: Path, source: str, device: str | None, cut: int) -> dict[str, TableState]:
    """Every table of the source (empty when nothing of it is at or before ``cut``)."""
    import pyarrow.parquet as pq

    tables: dict[str, TableState] = {}
    for _, first, path in _files(lake, source, device):
        name = unquote(path.parent.parent.name)  # the table's directory (layout.encode_name)
        state = tables.setdefault(name, TableState(name))
        if first > cut and state.columns:
            continue
        _shape(state, pq.read_schema(path))
        for row in _rows(path, cut):
            _apply(state, row)
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
    else:
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
