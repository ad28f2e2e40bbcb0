"""Connecting to an application's SQLite database and reading its table shapes.

Connections run in autocommit mode so that every read is its own short
transaction: the agent never holds a read snapshot open between statements
(that would stop the application's WAL checkpoints).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from edge_agent.errors import SourceError, TransientError
from edge_agent.records import RESERVED_COLUMNS, ColumnSpec, TableSpec

# SQLite's affinity rules (https://sqlite.org/datatype3.html 3.1) in their order, refined:
# BOOLEAN -> bool; DATE/TIME -> text (ISO text in practice); an untyped column is text.
_KIND_RULES = (
    (("INT",), "int"),
    (("CHAR", "CLOB", "TEXT"), "str"),
    (("BLOB",), "bytes"),
    (("REAL", "FLOA", "DOUB"), "float"),
    (("BOOL",), "bool"),
    (("DATE", "TIME"), "str"),
)
_ARROW: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bytes": pa.binary(),
    "bool": pa.bool_(),
}


def column_kind(decltype: str) -> str:
    t = decltype.upper()
    if not t:
        return "str"
    for needles, kind in _KIND_RULES:
        if any(n in t for n in needles):
            return kind
    return "float"  # NUMERIC, DECIMAL(10,2), ...


def arrow_type(decltype: str) -> pa.DataType:
    """The Arrow type of a column declared ``decltype`` (docs/bronze-format.md)."""
    return _ARROW[column_kind(decltype)]


@dataclass(frozen=True)
class Column:
    name: str
    decltype: str
    pk: int  # position in the primary key, 1-based; 0 when not part of it


@dataclass(frozen=True)
class TableShape:
    name: str
    columns: tuple[Column, ...]

    @property
    def key(self) -> tuple[str, ...]:
        pks = sorted((c for c in self.columns if c.pk), key=lambda c: c.pk)
        return tuple(c.name for c in pks)

    def spec(self) -> TableSpec:
        """The neutral description the later stages read."""
        return TableSpec(
            self.name,
            tuple(
                ColumnSpec(c.name, arrow_type(c.decltype), c.decltype, c.pk) for c in self.columns
            ),
        )


def quote(identifier: str) -> str:
    """An SQL identifier quoted for SQLite, safe for any name."""
    return '"' + identifier.replace('"', '""') + '"'


def connect(path: Path, busy_timeout: float, read_only: bool = False) -> sqlite3.Connection:
    """Open an existing database (never create one) in autocommit mode."""
    if not path.exists():
        raise SourceError(
            f"source database {str(path)!r} does not exist: check sources.path, "
            "or start the application that creates it"
        )
    try:
        con = sqlite3.connect(
            f"file:{path}?mode={'ro' if read_only else 'rw'}",
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        con.execute(f"PRAGMA query_only = {int(read_only)}")
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise map_error(exc, path) from exc
    return con


def map_error(exc: sqlite3.Error, path: Path) -> Exception:
    """sqlite3's errors mapped into transient (retry) or source (explain) errors."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and (
        "locked" in text or "busy" in text or "disk I/O" in text or "full" in text
    ):
        return TransientError(f"source database {str(path)!r}: {text}; will retry")
    if "unable to open database file" in text and path.exists():
        reason = _unopenable(path)
        if reason:
            return SourceError(f"source database {str(path)!r} cannot be opened: {reason}")
    if "not a database" in text or "malformed" in text:
        return SourceError(
            f"source database {str(path)!r} is not a readable SQLite database ({text}): "
            "check sources.path"
        )
    return SourceError(f"source database {str(path)!r}: {text}")


def _unopenable(path: Path) -> str | None:
    """Why an existing file cannot be opened, when the cause is the usual one: a WAL
    database in a directory the agent may not write to."""
    directory = path.parent
    try:
        with path.open("rb") as f:
            header = f.read(20)
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return None
    wal = len(header) == 20 and header[18] == 2  # file format "write version" 2: WAL
    if not wal or not (read_only or not os.access(directory, os.W_OK)):
        return None
    return (
        f"it is in WAL mode and its directory {str(directory)!r} is read-only to the agent "
        "(a read-only mount, or systemd's ProtectSystem= without ReadWritePaths=); SQLite "
        f"must create or open {path.name}-wal and {path.name}-shm beside it, even to read. "
        f"Fix: make the directory writable for the agent (systemd: ReadWritePaths={directory}),"
        " or, if the agent may only read, have the application use "
        "PRAGMA journal_mode=DELETE"
    )


def table_shape(
    con: sqlite3.Connection, table: str, key: tuple[str, ...] | None = None
) -> TableShape:
    """Columns and key of a table, refusing what capture cannot handle.

    ``key`` overrides the declared primary key (timestamp mode may name one).
    """
    row = con.execute(
        "SELECT type, sql FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')",
        (table,),
    ).fetchone()
    if row is None:
        raise SourceError(
            f"table {table!r} not found: check sources.tables (names are case-sensitive "
            "as written in CREATE TABLE)"
        )
    if row[0] != "table" or (row[1] or "").upper().startswith("CREATE VIRTUAL"):
        raise SourceError(f"{table!r} is a {row[0]} or virtual table: only tables can be captured")
    columns = tuple(
        Column(name=r[1], decltype=r[2] or "", pk=r[5])
        for r in con.execute(f"PRAGMA table_xinfo({quote(table)})")
        if r[6] == 0  # hidden/generated columns are derived, not captured
    )
    if key:
        names = [c.name for c in columns]
        unknown = [k for k in key if k not in names]
        if unknown:
            raise SourceError(
                f"table {table!r} has no column {unknown[0]!r} named in its key: "
                f"use some of {names}"
            )
        columns = tuple(
            Column(c.name, c.decltype, key.index(c.name) + 1 if c.name in key else 0)
            for c in columns
        )
    shape = TableShape(table, columns)
    if not shape.key:
        raise SourceError(
            f"table {table!r} has no PRIMARY KEY: trigger capture needs a stable key to "
            "replay changes; declare one (e.g. rebuild it with an INTEGER PRIMARY KEY) "
            "or remove it from sources.tables"
        )
    reserved = [c.name for c in columns if c.name.startswith("_")]
    if any(name in RESERVED_COLUMNS for name in reserved):
        raise SourceError(
            f"table {table!r} has a column named like an envelope column ({reserved}): "
            f"rename it; reserved names are {sorted(RESERVED_COLUMNS)}"
        )
    return shape
