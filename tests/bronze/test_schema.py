"""SQLite values to Arrow and back: typed where they fit, exact in _unfit where not."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.bronze.schema import (
    ENVELOPE,
    UNFIT,
    Envelope,
    batch_schema,
    decode_unfit,
    to_batch,
)
from edge_agent.sources.sqlite import Column, TableShape, column_kind

ENV = Envelope("gw", "src", 1)


@pytest.mark.parametrize(("decl", "kind"), [
    ("INTEGER", "int"), ("BIGINT", "int"), ("UNSIGNED BIG INT", "int"),
    ("TEXT", "str"), ("VARCHAR(20)", "str"), ("CLOB", "str"),
    ("BLOB", "bytes"), ("REAL", "float"), ("DOUBLE PRECISION", "float"), ("FLOAT", "float"),
    ("NUMERIC", "float"), ("DECIMAL(10,2)", "float"), ("BOOLEAN", "bool"),
    ("DATETIME", "str"), ("DATE", "str"), ("TIMESTAMP", "str"), ("", "str"),
])
def test_declared_type_mapping(decl: str, kind: str) -> None:
    assert column_kind(decl) == kind


def test_schema_has_envelope_columns_then_row_columns_then_unfit() -> None:
    shape = TableShape("t", (Column("id", "INTEGER", 1), Column("v", "REAL", 0)))
    names = batch_schema(shape.spec()).schema.names
    assert names == [n for n, _ in ENVELOPE] + ["id", "v", UNFIT]


def test_fingerprint_changes_with_columns() -> None:
    a = batch_schema(TableShape("t", (Column("id", "INTEGER", 1),)).spec())
    b = batch_schema(TableShape("t", (Column("id", "INTEGER", 1), Column("x", "TEXT", 0))).spec())
    assert a.fingerprint != b.fingerprint
    same = batch_schema(TableShape("t", (Column("id", "INTEGER", 1),)).spec())
    assert a.fingerprint == same.fingerprint


SQLITE_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
DECLS = ["INTEGER", "TEXT", "BLOB", "REAL", "BOOLEAN", "NUMERIC", "DATETIME", ""]


@given(st.lists(st.tuples(*[SQLITE_VALUES] * len(DECLS)), min_size=1, max_size=30))
def test_every_value_round_trips_exactly(values: list[tuple[object, ...]]) -> None:
    shape = TableShape("t", tuple(Column(f"c{i}", d, 0) for i, d in enumerate(DECLS)))
    bs = batch_schema(shape.spec())
    rows = [(i + 1, 1, "c", 0, *v) for i, v in enumerate(values)]
    batch = to_batch(bs, rows, ENV)
    assert batch.schema == bs.schema
    for row, out in zip(values, batch.to_pylist(), strict=True):
        restored = {f"c{i}": out[f"c{i}"] for i in range(len(DECLS))}
        restored.update(decode_unfit(out[UNFIT]))
        for i, original in enumerate(row):
            got = restored[f"c{i}"]
            if isinstance(got, bool):
                got = int(got)
            assert got == original and type(got) in (type(original), float), (DECLS[i], got)
            if isinstance(original, int) and isinstance(got, float):
                assert abs(original) <= 2**53  # only exactly representable ints become floats


def test_value_that_does_not_fit_is_kept_in_unfit() -> None:
    shape = TableShape("t", (Column("id", "INTEGER", 1), Column("n", "INTEGER", 0)))
    batch = to_batch(batch_schema(shape.spec()), [(1, 1, "c", 0, 1, "not a number")], ENV)
    row = batch.to_pylist()[0]
    assert row["n"] is None
    assert decode_unfit(row[UNFIT]) == {"n": "not a number"}
    assert batch.schema.field("n").type == pa.int64()


def test_neutral_types_map_straight_to_arrow_and_unfit_values_are_kept() -> None:
    """Bronze reads only a TableSpec's Arrow types: any source's richer types pass
    through, and a value its type refuses is kept exactly in ``_unfit``."""
    import datetime as dt
    from decimal import Decimal

    from edge_agent.records import ColumnSpec, TableSpec

    spec = TableSpec("public.orders", (
        ColumnSpec("id", pa.int32(), "integer", 1),
        ColumnSpec("amount", pa.decimal128(10, 2), "numeric(10,2)"),
        ColumnSpec("at", pa.timestamp("us", tz="UTC"), "timestamp with time zone"),
    ))
    bs = batch_schema(spec)
    assert bs.schema.field("amount").type == pa.decimal128(10, 2)
    assert bs.schema.field("at").type == pa.timestamp("us", tz="UTC")
    at = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    rows = [(1, 0, "c", 0, 1, Decimal("12.50"), at), (2, 0, "c", 0, 2, Decimal("NaN"), at)]
    batch = to_batch(bs, rows, ENV)
    assert batch.column("amount").to_pylist() == [Decimal("12.50"), None]
    assert decode_unfit(batch.column(UNFIT)[1].as_py()) == {"amount": "NaN"}
    assert batch.column("_table").to_pylist() == ["public.orders"] * 2


@pytest.mark.parametrize(("decl", "values"), [
    ("BLOB", ("text in a blob column", b"\x00\xff", None)),  # pyarrow infers binary for both
    ("TEXT", (b"\xff\xfe", "1.5", None)),
    ("TEXT", ("1.5", "007", "1e3")),  # text that looks like numbers stays text
    ("INTEGER", (1.0, 2, 2**63 - 1, -(2**63))),  # 1.0 is a REAL: it must not become 1
    ("REAL", (2**53 + 1, 1.5, 2**53)),  # beyond 2**53 an integer does not fit float64
    ("REAL", (1, 2, 3)),
    ("BOOLEAN", (0, 1, 2, None)),
    ("INTEGER", (None, None)),
    ("TEXT", ("a", 1, 1.5, b"b", None)),
])
def test_homogeneous_and_mixed_columns_keep_every_value_and_its_type(
        decl: str, values: tuple[object, ...]) -> None:
    """Issue 14: a column converts as a whole when pyarrow's inference gives exactly its
    type; every other mix still keeps each value, with its SQLite type, exactly."""
    shape = TableShape("t", (Column("id", "INTEGER", 1), Column("v", decl, 0)))
    rows = [(i + 1, 1, "c", 0, i + 1, v) for i, v in enumerate(values)]
    out = to_batch(batch_schema(shape.spec()), rows, ENV).to_pylist()
    for original, row in zip(values, out, strict=True):
        got = {"v": row["v"], **decode_unfit(row[UNFIT])}["v"]
        got = int(got) if isinstance(got, bool) else got
        assert got == original
        assert type(got) is type(original) or (
            isinstance(got, float) and isinstance(original, int) and abs(original) <= 2**53)
