"""Connecting to a PostgreSQL database and describing its tables in Arrow terms.

Used by PostgreSQL capture (capture/pg_*.py). A bare table name means schema ``public``; the
TableSpec name is always schema-qualified (``public.orders``). Columns come in
attnum order, dropped and generated columns skipped; the key is the primary key.

Type mapping (from pg_type; domains resolve to their base type, enums are
strings, arrays become ``list_`` of the element type):

smallint int16, integer int32, bigint int64, numeric(p,s) p<=38 decimal128(p,s),
other numeric string, real float32, double precision float64, boolean bool,
text/varchar/char/name/citext string, bytea binary, uuid string, date date32,
time time64(us), timetz string, timestamp timestamp(us), timestamptz
timestamp(us, UTC), interval string (ISO 8601, e.g. ``P1M2DT3H4M5S``: Parquet has
no exact interval type that pyarrow writes), json/jsonb string,
arrays of date/time types list of string (the ISO text), anything else string.
``source_type`` is format_type's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import psycopg
import pyarrow as pa

from edge_agent.errors import SourceError, TransientError
from edge_agent.records import RESERVED_COLUMNS, ColumnSpec, TableSpec

# Server going away, connection failures, and a deadlock or lock timeout (a retry works).
_TRANSIENT = {
    "57P01",
    "57P02",
    "57P03",
    "57P05",
    "08001",
    "08006",
    "08004",
    "40P01",
    "40001",
    "55P03",
}
_SIMPLE: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "bytea": pa.binary(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}
_FIX_PASSWORD = "set password_file, EDGE_AGENT__SOURCES__N__PASSWORD or PGPASSFILE"  # noqa: S105


def _safe_dsn(dsn: str) -> str:
    """The DSN for messages: never its password, never an exception of its own."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        hidden = re.sub(r"password=\S*", "password=***", dsn)
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", hidden)
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


def execute(con: Con, query: str, params: Sequence[Any] | None = None) -> list[tuple[object, ...]]:
    """A catalog query with the driver's errors mapped (a lost connection is transient)."""
    try:
        cur = con.execute(query, params)
        return cur.fetchall() if cur.description else []
    except psycopg.Error as exc:
        raise map_error(exc, _safe_dsn(con.info.dsn)) from exc


Con = psycopg.Connection[tuple[object, ...]]


def connect(dsn: str, password: str | None, connect_timeout: float) -> Con:
    """Open an autocommit connection; psycopg's errors mapped into the project's."""
    extra: dict[str, str] = {"application_name": "edge-agent"}
    if password is not None:
        extra["password"] = password
    try:
        conninfo = psycopg.conninfo.make_conninfo(
            dsn, connect_timeout=str(max(1, round(connect_timeout))), **extra
        )
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise map_error(exc, _safe_dsn(dsn)) from exc


def map_error(exc: psycopg.Error, where: str) -> Exception:
    """Failed connects carry no sqlstate in psycopg, so the server's text is matched too."""
    state = exc.sqlstate or ""
    if state == "28P01" or "password authentication failed" in str(exc):
        return SourceError(f"postgres {where!r}: wrong password: {_FIX_PASSWORD}")
    if state == "3D000" or ("database" in str(exc) and "does not exist" in str(exc)):
        return SourceError(f"postgres {where!r}: database does not exist: check sources.dsn")
    if state == "42501":
        return SourceError(_privilege_message(exc.diag.message_primary or str(exc), where))
    if state in ("40P01", "40001", "55P03"):
        return TransientError(f"postgres {where!r}: lock conflict ({state}), will retry")
    if state in _TRANSIENT or isinstance(exc, psycopg.OperationalError):
        return TransientError(f"postgres {where!r} unreachable, will retry: {state or '-'}")
    return SourceError(f"postgres {where!r}: {exc.diag.message_primary or type(exc).__name__}")


_DENIED = re.compile(r"permission denied for (database|table|relation|schema) (\S+)")
_GRANTS = {
    "database": "GRANT CREATE ON DATABASE {name} TO {role}",
    "schema": "GRANT USAGE ON SCHEMA {name} TO {role}",
    "table": "GRANT SELECT, UPDATE, TRIGGER ON {name} TO {role}",
    "relation": "GRANT SELECT, UPDATE, TRIGGER ON {name} TO {role}",
}


def _privilege_message(primary: str, where: str) -> str:
    """The missing privilege and the GRANT that gives it. Trigger capture needs CREATE on
    the database (for its edge_cdc schema) and SELECT, UPDATE (snapshot pages lock their
    rows) and TRIGGER on each captured table."""
    role = psycopg.conninfo.conninfo_to_dict(where).get("user") or "<agent role>"
    found = _DENIED.search(primary)
    grant = (
        _GRANTS[found.group(1)].format(name=found.group(2), role=role)
        if found
        else f"GRANT SELECT, UPDATE, TRIGGER ON <table> TO {role}"
    )
    return f"postgres {where!r}: insufficient privilege ({primary}): as an owner, run {grant}"


_COLUMNS = """
SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod),
       a.attnotnull, coalesce(array_position(i.indkey::int2[], a.attnum)
                - array_lower(i.indkey::int2[], 1) + 1, 0)
FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attgenerated = '' ORDER BY a.attnum"""
_TYPE = "SELECT typname, typtype, typbasetype, typelem, typcategory FROM pg_type WHERE oid = %s"


def _refuse(table: str, what: str, fix: str) -> SourceError:
    return SourceError(f"postgres table {table!r}: {what}: {fix}")


def table_spec(con: Con, name: str, key: tuple[str, ...] = ()) -> TableSpec:
    """The table's columns and key (the primary key, or ``key`` when given: timestamp
    mode may name one); refuses what capture cannot use."""
    schema, table = split_name(name)
    qualified = f"{schema}.{table}"
    found = execute(
        con,
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    )
    row = found[0] if found else None
    if row is None:
        raise _refuse(qualified, "no such table", "check sources.tables (bare name = public.)")
    if row[1] not in ("r", "p"):
        raise _refuse(qualified, "not a table (a view?)", "capture the underlying table")
    seen: TypeRows = {}
    rows = execute(con, _COLUMNS, (row[0],))
    columns = tuple(_column(con, r, seen) for r in rows)
    spec = TableSpec(qualified, columns)
    if key:
        spec = _with_key(spec, key)
    if not spec.key:
        raise _refuse(qualified, "no primary key", "ALTER TABLE ... ADD PRIMARY KEY (...)")
    reserved = sorted(
        c.name
        for c in columns
        if c.name in RESERVED_COLUMNS | {"_tx", "_before", "_lsn", "_unchanged"}
    )
    if reserved:
        raise _refuse(qualified, f"column(s) {reserved} clash with envelope columns", "rename them")
    return spec


def table_problems(con: Con, name: str, tables: Sequence[str]) -> list[str]:
    """``config check``'s view of a source's tables: each one capture cannot use, with
    its fix, prefixed by the source's name."""
    problems: list[str] = []
    for table in tables:
        try:
            table_spec(con, table)
        except SourceError as exc:
            problems.append(f"sources[{name}]: {exc}")
    return problems


def _with_key(spec: TableSpec, key: tuple[str, ...]) -> TableSpec:
    names = [c.name for c in spec.columns]
    missing = [k for k in key if k not in names]
    if missing:
        raise _refuse(
            spec.name,
            f"no column(s) {missing} (sources.tables.key)",
            f"use columns of the table: {', '.join(names)}",
        )
    pk = {k: i + 1 for i, k in enumerate(key)}
    return TableSpec(spec.name, tuple(replace(c, pk=pk.get(c.name, 0)) for c in spec.columns))


def composite_spec(con: Con, type_name: str, name: str, key: list[str]) -> TableSpec:
    """The columns of a composite type (a capture's frozen column list, see
    capture/pg_log.py) as the TableSpec of table ``name`` with ``key``."""
    rows = execute(
        con,
        "SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod),"
        " false, 0 FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0"
        " AND NOT a.attisdropped ORDER BY a.attnum",
        (type_name,),
    )
    seen: TypeRows = {}
    columns = [_column(con, r, seen) for r in rows]
    pk = {k: i + 1 for i, k in enumerate(key)}
    return TableSpec(name, tuple(replace(c, pk=pk.get(c.name, 0)) for c in columns))


def split_name(name: str) -> tuple[str, str]:
    """``schema.table`` (a bare name: schema public) as its two parts."""
    schema, _, table = name.partition(".") if "." in name else ("public", ".", name)
    return schema, table


def regclass(name: str) -> str:
    """The quoted ``schema.table`` text a ``::regclass`` cast reads exactly."""
    return ".".join(quote_ident(p) for p in split_name(name))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column(con: Con, r: tuple[object, ...], seen: TypeRows) -> ColumnSpec:
    name, oid, typmod, source_type, notnull, pk = r
    return ColumnSpec(
        str(name),
        arrow_type(con, int(str(oid)), int(str(typmod)), seen),
        str(source_type),
        int(str(pk)),
        not notnull,
    )


TypeRows = dict[int, tuple[object, ...] | None]


def arrow_type(con: Con, oid: int, typmod: int, seen: TypeRows | None = None) -> pa.DataType:
    """The Arrow type of a pg_type oid (with its atttypmod). ``seen`` caches pg_type rows
    across the columns of one table, so a type is looked up once."""
    seen = {} if seen is None else seen
    if oid not in seen:
        found = execute(con, _TYPE, (oid,))
        seen[oid] = found[0] if found else None
    row = seen[oid]
    if row is None:
        return pa.string()
    typname, typtype, base, elem, category = (str(v) for v in row)
    if typtype == "d":
        return arrow_type(con, int(base), typmod, seen)
    if category == "A" and int(elem):
        item = arrow_type(con, int(elem), typmod, seen)
        # Date/time elements as text: an element the Arrow type cannot hold
        # (infinity) must not cost the whole array.
        return pa.list_(pa.string() if pa.types.is_temporal(item) else item)
    if typname == "numeric":
        return _numeric(typmod)
    return _SIMPLE.get(typname, pa.string())


def _numeric(typmod: int) -> pa.DataType:
    if typmod < 4:  # unconstrained
        return pa.string()
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    if precision > 38 or scale > precision:
        return pa.string()
    return pa.decimal128(precision, scale)
