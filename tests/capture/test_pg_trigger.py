"""PostgreSQL trigger capture against a real server: the lake rebuilds each table exactly,
in commit order, across out-of-order commits, restarts and schema changes."""

from __future__ import annotations

import decimal
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

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


def test_an_added_column_rotates_the_file_and_the_latest_rows_carry_it(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2)")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    sql(pg_db, "UPDATE items SET qty = 5 WHERE id = 1", "ALTER TABLE items ADD COLUMN unit text",
        "UPDATE items SET unit = 'kg' WHERE id = 2", "INSERT INTO items VALUES (3, 'c', 3, 'l')")
    h.step(0.1)
    h.step(0.1)
    assert h.flush().pending_files == 0
    import pyarrow.parquet as pq

    schemas = {tuple(pq.read_schema(p).names) for p in (tmp_path / "lake").rglob("*.parquet")}
    assert any("unit" in names for names in schemas)
    assert any("unit" not in names for names in schemas)
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")


def test_a_dropped_column_never_fails_the_applications_writes(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items VALUES (1, 'a', 1)")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    sql(pg_db, "ALTER TABLE items DROP COLUMN name", "UPDATE items SET qty = 2 WHERE id = 1",
        "INSERT INTO items VALUES (2, 7)")  # before the agent regenerates its capture
    h.step(0.1)
    h.step(0.1)
    assert h.flush().pending_files == 0
    state = lake_state(tmp_path, "public.items")
    assert {k: {c: v[c] for c in ("id", "qty")} for k, v in state.items()} == rows_of(
        pg_db, "items")
    assert all("name" not in v or v["name"] is None for v in state.values())


def test_a_table_dropped_and_created_again_starts_over_with_a_marker_and_a_snapshot(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2)")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    sql(pg_db, "DROP TABLE items", ITEMS, "INSERT INTO items VALUES (9, 'z', 9)")
    h.step(0.1)
    h.step(0.1)
    assert h.flush().pending_files == 0
    ops = [c["_op"] for c in read_changes(tmp_path / "lake")]
    assert ops == ["r", "r", "t", "r"]
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")


def test_truncate_is_a_marker_that_empties_the_table_in_the_lake(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    truncate_case(tmp_path, pg_db, harness_factory, pg_config)


def truncate_case(tmp_path: Path, pg_db: str, harness_factory: Any, config_of: Any) -> None:
    """TRUNCATE is a "t" marker and the table goes on (both PostgreSQL modes)."""
    sql(pg_db, ITEMS, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2)")
    h = harness_factory(config_of(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    sql(pg_db, "TRUNCATE items", "INSERT INTO items VALUES (3, 'c', 3)")
    h.step(0.1)
    assert h.flush().pending_files == 0
    assert [c["_op"] for c in read_changes(tmp_path / "lake")] == ["r", "r", "t", "c"]
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")


def test_a_server_restart_is_retried_and_loses_nothing(tmp_path: Path,
                                                       harness_factory: Any) -> None:
    server_restart_case(tmp_path, harness_factory, pg_config)


def server_restart_case(tmp_path: Path, harness_factory: Any, config_of: Any) -> None:
    """The server stops under a running capture and comes back: the error is a retried
    one, and every change lands once, positions 1..N (both PostgreSQL capture modes)."""
    from tests.servers import Postgres

    server = Postgres()
    try:
        dsn = server.create_database("app")
        sql(dsn, ITEMS)
        h = harness_factory(config_of(tmp_path, dsn, ["items"], buffer={"max_file_age": "1h"}))
        h.step(0.1)
        sql(dsn, "INSERT INTO items SELECT g, 'a', g FROM generate_series(1, 20) g")
        h.step(0.1)
        server.stop()
        down = h.step(0.1)
        assert any("unreachable, will retry" in e for e in down.errors)
        server.start()
        sql(dsn, "INSERT INTO items SELECT g, 'b', g FROM generate_series(21, 30) g")
        h.step(1.0)
        h.step(1.0)
        assert h.flush().pending_files == 0
        changes = read_changes(tmp_path / "lake")
        assert [c["values"]["id"] for c in changes] == list(range(1, 31))
        assert [c["_pos"] for c in changes] == list(range(1, 31))
    finally:
        server.remove()


@pytest.mark.parametrize(("grants", "missing"), [
    ([], "GRANT CREATE ON DATABASE"),
    (["GRANT CREATE ON DATABASE {db} TO viewer"],
     "GRANT SELECT, UPDATE, TRIGGER ON items TO viewer"),
])
def test_a_role_without_the_privileges_gets_the_grant_that_fixes_it(
        tmp_path: Path, pg_db: str, harness_factory: Any, grants: list[str], missing: str) -> None:
    db = pg_db.rsplit("/", 1)[1]
    sql(pg_db, ITEMS, "DO $$ BEGIN CREATE ROLE viewer LOGIN; EXCEPTION WHEN duplicate_object"
        " THEN NULL; END $$", "GRANT SELECT ON items TO viewer",
        *(g.format(db=db) for g in grants))
    h = harness_factory(pg_config(tmp_path, pg_db.replace("postgres@", "viewer@"), ["items"]))
    summary = h.step(0.1)
    assert any(missing in e for e in summary.errors), summary.errors
    assert any("insufficient privilege" in e for e in summary.errors)


def test_a_snapshot_in_pages_of_a_composite_key_takes_every_row_once(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, "CREATE TABLE parts (b text, a int, v int, PRIMARY KEY (b, a))",
        "INSERT INTO parts SELECT chr(97 + g % 3), g, g FROM generate_series(1, 25) g")
    h = harness_factory(pg_config(tmp_path, pg_db, ["parts"], source={"page_rows": 7}))
    for _ in range(6):
        h.step(0.1)
    sql(pg_db, "UPDATE parts SET v = -1 WHERE a = 4")
    assert h.flush().pending_files == 0
    changes = read_changes(tmp_path / "lake")
    snapshot = sorted((c["values"]["b"], c["values"]["a"]) for c in changes if c["_op"] == "r")
    with psycopg.connect(pg_db) as con:
        assert snapshot == sorted(con.execute("SELECT b, a FROM parts").fetchall())
        rows = {(b, a): v for b, a, v in con.execute("SELECT b, a, v FROM parts")}
    state = replay(changes)["public.parts"]
    assert {k: v["v"] for k, v in state.items()} == rows


def test_with_before_image_an_update_carries_the_old_row(tmp_path: Path, pg_db: str,
                                                         harness_factory: Any) -> None:
    import json

    sql(pg_db, ITEMS, "INSERT INTO items VALUES (1, 'a', 1)")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"],
                                  source={"before_image": True}))
    h.step(0.1)
    sql(pg_db, "UPDATE items SET qty = 2, name = 'b' WHERE id = 1", "DELETE FROM items")
    h.step(0.1)
    assert h.flush().pending_files == 0
    snap, update, delete = read_changes(tmp_path / "lake")
    assert (snap["_op"], update["_op"], delete["_op"]) == ("r", "u", "d")
    assert json.loads(update["_before"]) == {"id": 1, "name": "a", "qty": 1}
    assert update["values"] == {"id": 1, "name": "b", "qty": 2}
    assert snap["_before"] is None and delete["_before"] is None  # a delete's row is the old one


def test_a_connection_the_server_closes_while_idle_is_opened_again(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    import time

    sql(pg_db, ITEMS)
    db = pg_db.rsplit("/", 1)[1]
    sql(pg_db, f"ALTER DATABASE {db} SET idle_session_timeout = '300ms'",
        f"ALTER DATABASE {db} SET idle_in_transaction_session_timeout = '300ms'")
    h = harness_factory(pg_config(tmp_path, pg_db, ["items"]))
    h.step(0.1)
    time.sleep(0.8)  # the server ends the agent's idle session
    sql(pg_db, "INSERT INTO items VALUES (1, 'a', 1)")
    errors = [e for _ in range(3) for e in h.step(1.0).errors]
    assert any("will retry" in e for e in errors), errors  # the dead session was noticed
    assert h.flush().pending_files == 0
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")


def test_other_sources_go_on_while_a_postgres_source_is_down(
        tmp_path: Path, app_db: Path, harness_factory: Any) -> None:
    import sqlite3

    from tests.servers import free_port

    data = config_dict(tmp_path, app_db, ["readings"])
    data["sources"].append({"name": "erp", "kind": "postgres", "tables": ["items"],
                            "dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/erp"})
    h = harness_factory(config_from_dict(data))
    con = sqlite3.connect(app_db)
    with con:
        con.execute("INSERT INTO readings (sensor, value) VALUES ('s', 1.5)")
    con.close()
    summary = h.step(0.1)
    assert any("unreachable, will retry" in e for e in summary.errors), summary.errors
    h.flush()
    assert len(lake_state(tmp_path, "readings")) == 1
