"""pgoutput's column texts as the values bronze takes, and a Relation as a TableSpec.

pgoutput sends every value in its type's text form, written by the session
that runs the decoding: ours, with ``DateStyle ISO``, ``IntervalStyle
iso_8601``, ``TimeZone UTC``, ``bytea_output hex`` and ``extra_float_digits 3``
(``SESSION`` below). Each column gets a converter chosen once per relation from
its Arrow type (sources/postgres.py's mapping, the same as trigger mode), and
hands over what trigger mode's typed SELECT hands over: integers, floats,
Decimals, bytes, epoch microseconds for timestamps and times, days for dates,
text for every string-mapped type. A text the converter cannot read
(``infinity``, a BC date, ``NaN`` for a decimal) is passed on as the text,
which bronze keeps exactly in ``_unfit``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
from psycopg import adapt, pq

from edge_agent.capture.pgoutput import Relation
from edge_agent.records import ColumnSpec, TableSpec
from edge_agent.sources.postgres import Con, TypeRows, arrow_type, execute

SESSION = (
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'iso_8601'",
    "SET TimeZone = 'UTC'",
    "SET bytea_output = 'hex'",
    "SET extra_float_digits = 3",
)
Convert = Callable[[bytes], object]
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_TEXT_ARRAY = 1009  # text[]: arrays of string-mapped or date/time elements


def _text(b: bytes) -> object:
    return b.decode("utf-8", errors="surrogateescape")


def _bool(b: bytes) -> object:
    return b == b"t"


def _bytea(b: bytes) -> object:
    return bytes.fromhex(b[2:].decode()) if b.startswith(b"\\x") else _text(b)


def _decimal(b: bytes) -> object:
    try:
        return Decimal(b.decode())
    except InvalidOperation:
        return _text(b)


def _date(b: bytes) -> object:
    try:
        return (date.fromisoformat(b.decode()) - _EPOCH.date()).days
    except ValueError:  # infinity, BC dates, years past 9999
        return _text(b)


def _timestamp(b: bytes) -> object:
    try:
        moment = datetime.fromisoformat(b.decode())
    except ValueError:
        return _text(b)
    delta = moment - (_EPOCH_UTC if moment.tzinfo else _EPOCH)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time(b: bytes) -> object:
    try:
        hh, mm, ss = b.decode().split(":")
        seconds, _, fraction = ss.partition(".")
        micros = int((fraction + "000000")[:6])
        return ((int(hh) * 60 + int(mm)) * 60 + int(seconds)) * 1_000_000 + micros
    except ValueError:
        return _text(b)


def _float(b: bytes) -> object:
    return float(b)


_SCALARS: tuple[tuple[Callable[[pa.DataType], bool], Convert], ...] = (
    (pa.types.is_integer, int),
    (pa.types.is_floating, _float),
    (pa.types.is_boolean, _bool),
    (pa.types.is_binary, _bytea),
    (pa.types.is_decimal, _decimal),
    (pa.types.is_date, _date),
    (pa.types.is_timestamp, _timestamp),
    (pa.types.is_time, _time),
)


def _scalar(arrow: pa.DataType) -> Convert:
    return next((conv for test, conv in _SCALARS if test(arrow)), _text)


def converter(con: Con, arrow: pa.DataType, type_oid: int) -> Convert:
    """How one column's text becomes its value. Arrays are read by psycopg's own array
    loader (quoting, NULLs, nesting), as text[] when the elements are strings."""
    if not pa.types.is_list(arrow):
        return _scalar(arrow)
    oid = _TEXT_ARRAY if arrow.value_type == pa.string() else type_oid
    loader = adapt.Transformer(con).get_loader(oid, pq.Format.TEXT)

    def load(b: bytes) -> object:
        return loader.load(b)

    return load


_TYPE_TEXT = "SELECT format_type(%s::oid, %s::int)"
_PRIMARY_KEY = """
SELECT a.attname FROM pg_index i JOIN pg_attribute a
  ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %s::oid AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)"""


def relation_key(con: Con, rel: Relation) -> list[str]:
    """The table's primary key; without one, the replica identity's columns."""
    pk_names = [str(r[0]) for r in execute(con, _PRIMARY_KEY, (rel.oid,))]
    return pk_names or [c.name for c in rel.columns if c.key]


def relation_spec(
    con: Con, rel: Relation, name: str, key: list[str]
) -> tuple[TableSpec, tuple[Convert, ...]]:
    """The TableSpec of a Relation message (the columns the change was written with, not
    today's catalog) and each column's converter."""
    seen: TypeRows = {}
    order = {k: i + 1 for i, k in enumerate(key)}
    columns: list[ColumnSpec] = []
    converters: list[Convert] = []
    for c in rel.columns:
        arrow = arrow_type(con, c.type_oid, c.typmod, seen)
        source_type = str(execute(con, _TYPE_TEXT, (c.type_oid, c.typmod))[0][0])
        columns.append(ColumnSpec(c.name, arrow, source_type, order.get(c.name, 0), True))
        converters.append(converter(con, arrow, c.type_oid))
    return TableSpec(name, tuple(columns)), tuple(converters)


def convert_row(values: tuple[Any, ...], converters: tuple[Convert, ...]) -> list[object]:
    """Bytes to values; None stays None; anything else (UNCHANGED) is left for the caller."""
    return [
        conv(v) if isinstance(v, bytes) else v for v, conv in zip(values, converters, strict=True)
    ]
