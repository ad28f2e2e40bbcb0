"""The PostgreSQL source module against a real server (Debian's package, started by the
``postgres`` fixture): type mapping, names, refusals and mapped connection errors."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from edge_agent.errors import SourceError, TransientError
from edge_agent.sources.postgres import connect, table_spec
from tests.servers import free_port

TYPES = """
CREATE TYPE mood AS ENUM ('ok', 'bad');
CREATE DOMAIN big_id AS bigint;
CREATE TABLE orders (
    id integer PRIMARY KEY, s smallint, b big_id, amount numeric(10,2), free numeric,
    r real, d double precision, ok boolean, t text, v varchar(20), blob bytea, u uuid,
    day date, at_time time, at timestamp, at_tz timestamptz, span interval, doc jsonb,
    m mood, tags integer[]
)"""
EXPECTED = {
    "id": pa.int32(), "s": pa.int16(), "b": pa.int64(), "amount": pa.decimal128(10, 2),
    "free": pa.string(), "r": pa.float32(), "d": pa.float64(), "ok": pa.bool_(),
    "t": pa.string(), "v": pa.string(), "blob": pa.binary(), "u": pa.string(),
    "day": pa.date32(), "at_time": pa.time64("us"), "at": pa.timestamp("us"),
    "at_tz": pa.timestamp("us", tz="UTC"), "span": pa.string(),
    "doc": pa.string(), "m": pa.string(), "tags": pa.list_(pa.int32()),
}


def test_every_common_type_maps_to_its_documented_arrow_type(pg_db: str) -> None:
    con = connect(pg_db, None, 5)
    con.execute(TYPES)
    spec = table_spec(con, "orders")
    con.close()

    assert spec.name == "public.orders"
    assert spec.key == ("id",)
    assert {c.name: c.arrow for c in spec.columns} == EXPECTED
    assert {c.name: c.source_type for c in spec.columns}["amount"] == "numeric(10,2)"


def test_the_key_follows_the_primary_key_order_not_the_column_order(pg_db: str) -> None:
    con = connect(pg_db, None, 5)
    con.execute("CREATE SCHEMA plant; CREATE TABLE plant.lines "
                "(a int, b int, c text, PRIMARY KEY (b, a))")
    spec = table_spec(con, "plant.lines")
    con.close()
    assert (spec.name, spec.key) == ("plant.lines", ("b", "a"))


@pytest.mark.parametrize(("ddl", "name", "said"), [
    ("CREATE TABLE nopk (a int)", "nopk", "no primary key"),
    ("", "missing", "no such table"),
    ("CREATE TABLE base (id int PRIMARY KEY); CREATE VIEW seen AS SELECT * FROM base",
     "seen", "not a table"),
])
def test_what_capture_cannot_use_is_refused_by_name_with_a_fix(pg_db: str, ddl: str,
                                                                name: str, said: str) -> None:
    con = connect(pg_db, None, 5)
    if ddl:
        con.execute(ddl)
    with pytest.raises(SourceError, match=said) as caught:
        table_spec(con, name)
    con.close()
    assert f"public.{name}" in str(caught.value)


def test_a_refused_connection_is_transient(pg_db: str) -> None:
    with pytest.raises(TransientError):
        connect(f"postgresql://postgres@127.0.0.1:{free_port()}/x", None, 2)


def test_an_unknown_database_is_named(postgres: object, pg_db: str) -> None:
    dsn = pg_db.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(SourceError, match="no_such_db"):
        connect(dsn, None, 5)


def test_a_wrong_password_is_named_without_echoing_it(postgres: Any, pg_db: str) -> None:
    postgres.require_password("secure", "right")
    dsn = pg_db.replace("postgres@", "secure@")
    with connect(dsn, "right", 5) as con:
        assert con.info.user == "secure"
    with pytest.raises(SourceError, match="wrong password") as caught:
        connect(dsn, "wrong-one", 5)
    assert "wrong-one" not in str(caught.value)
    assert "password_file" in str(caught.value)
