"""PostgreSQL trigger capture against a real server: the lake rebuilds each table exactly,
in commit order, across out-of-order commits, restarts and schema changes."""

from __future__ import annotations

import decimal
import threading
from pathlib import Path
from typing import Any

import psycopg

from edge_agent.config import Config, config_from_dict
from tests.conftest import config_dict
from tests.lake import read_changes, replay


def pg_config(tmp: Path, dsn: str, tables: list[str], **sections: Any) -> Config:
    data = config_dict(tmp, tmp / "unused.db", tables, **sections)
    src = data["sources"][0]
    del src["path"]
    src.update({"kind": "postgres", "dsn": dsn})
    return config_from_dict(data)


def sql(dsn: str, *statements: str, args: tuple[Any, ...] = ()) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        for s in statements:
            con.execute(s, args or None)


def rows_of(dsn: str, table: str, key: str = "id") -> dict[tuple[Any, ...], dict[str, Any]]:
    with psycopg.connect(dsn) as con:
        cur = con.execute(f"SELECT * FROM {table}")
        names = [d.name for d in cur.description or []]
        return {(r[names.index(key)],): dict(zip(names, r, strict=True)) for r in cur}


def lake_state(tmp: Path, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return replay(read_changes(tmp / "lake")).get(table, {})


ITEMS = "CREATE TABLE items (id int PRIMARY KEY, name text, qty int)"


def test_changes_reach_the_lake_with_their_transaction(tmp_path: Path, pg_db: str,
                                                         harness_factory: Any) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2)")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)  # triggers + initial snapshot (op r)
    sql(pg_db, "UPDATE items SET qty = 10 WHERE id = 1", "DELETE FROM items WHERE id = 2",
        "INSERT INTO items VALUES (3, 'c', 3)", "UPDATE items SET id = 4 WHERE id = 3")
    h.step(0.1)
    assert h.flush().pending_files == 0

    changes = read_changes(tmp_path / "lake")
    assert [c["_op"] for c in changes] == ["r", "r", "u", "d", "c", "d", "u"]
    assert all(c["_table"] == "public.items" for c in changes)
    assert [c["_pos"] for c in changes] == sorted({c["_pos"] for c in changes})
    assert len({c["_tx"] for c in changes[2:]}) == 4  # one per committed statement
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")


def test_a_transaction_that_took_a_lower_sequence_and_committed_later_is_not_skipped(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, ITEMS)
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    slow = psycopg.connect(pg_db)
    slow.execute("INSERT INTO items VALUES (1, 'first seq, commits last', 1)")
    sql(pg_db, "INSERT INTO items VALUES (2, 'second seq, commits first', 2)")
    h.step(0.1)  # reads the batch with row 2 only: row 1 is not committed
    slow.commit()
    slow.close()
    h.step(0.1)
    assert h.flush().pending_files == 0

    changes = read_changes(tmp_path / "lake")
    assert [c["values"]["id"] for c in changes] == [2, 1]  # commit order
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")


def test_the_same_key_written_by_overlapping_transactions_ends_as_committed(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items VALUES (1, 'x', 0)")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)

    def bump(n: int) -> None:
        with psycopg.connect(pg_db, autocommit=True) as con:
            for _ in range(n):
                con.execute("UPDATE items SET qty = qty + 1 WHERE id = 1")

    workers = [threading.Thread(target=bump, args=(50,)) for _ in range(4)]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        h.step(0.05)
    for w in workers:
        w.join()
    h.step(0.1)
    assert h.flush().pending_files == 0
    changes = [c for c in read_changes(tmp_path / "lake") if c["_op"] == "u"]
    assert [c["values"]["qty"] for c in changes] == list(range(1, 201))
    assert lake_state(tmp_path, "public.items")[(1,)]["qty"] == 200


def test_a_restart_before_sealing_reads_the_same_batch_again(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, ITEMS)
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"], buffer={"max_file_age": "1h"},
                                  source={"page_rows": 7}))
    h.step(0.1)
    sql(pg_db, "INSERT INTO items SELECT g, 'n', g FROM generate_series(1, 50) g")
    h.step(0.1)
    h.restart()
    sql(pg_db, "INSERT INTO items SELECT g, 'm', g FROM generate_series(51, 60) g")
    h.step(0.1)
    assert h.flush().pending_files == 0
    changes = read_changes(tmp_path / "lake")
    assert sorted(c["values"]["id"] for c in changes) == list(range(1, 61))
    assert [c["_pos"] for c in changes] == list(range(1, 61))


TYPES = """
CREATE TYPE mood AS ENUM ('ok', 'bad');
CREATE TABLE typed (
    id bigint PRIMARY KEY, amount numeric(10,2), free numeric, r real, d double precision,
    ok boolean, t text, blob bytea, u uuid, day date, at timestamp, at_tz timestamptz,
    span interval, doc jsonb, m mood, tags integer[], names text[]
)"""
ROW = """INSERT INTO typed VALUES (1, 12.34, 1e40, 1.5, 2.25, true, 'tëxt', '\\x00ff',
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-01-01 10:00:00.123456',
 '2024-01-01 10:00:00+02', '1 mon 2 days 03:04:05.000006', '{"k": [1, 2]}', 'bad',
 '{1,2,3}', '{"a","b"}')"""


def test_every_common_type_lands_in_its_arrow_type_exactly(tmp_path: Path, pg_db: str,
                                                            harness_factory: Any) -> None:
    import pyarrow.parquet as pq

    sql(pg_db, TYPES)
    h = harness_factory(pg_config(tmp_path, pg_db, ["typed"]))
    h.step(0.1)
    sql(pg_db, ROW, "INSERT INTO typed (id, at, day) VALUES (2, 'infinity', '-infinity')")
    h.step(0.1)
    assert h.flush().pending_files == 0
    changes = read_changes(tmp_path / "lake")
    v = changes[0]["values"]
    assert v["amount"] == decimal.Decimal("12.34")
    assert v["free"] == "10000000000000000000000000000000000000000"
    assert (v["r"], v["d"], v["ok"], v["t"], v["blob"]) == (1.5, 2.25, 1, "tëxt", b"\x00\xff")
    assert v["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert str(v["at_tz"]) == "2024-01-01 08:00:00+00:00"
    assert str(v["at"]) == "2024-01-01 10:00:00.123456"
    assert (v["m"], v["tags"], v["names"]) == ("bad", [1, 2, 3], ["a", "b"])
    assert v["doc"] == '{"k": [1, 2]}'
    assert v["span"] == "P1M2DT3H4M5.000006S"
    assert (changes[1]["values"]["at"], changes[1]["values"]["day"]) == ("infinity", "-infinity")
    schema = pq.read_schema(next((tmp_path / "lake").rglob("*.parquet")))
    assert str(schema.field("_tx").type) == "int64"
