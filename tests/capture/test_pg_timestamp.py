"""PostgreSQL timestamp mode against a real server: SELECT is enough, every row version
once across equal cursors, pages and late commits, soft deletes, an index serves each
poll, and a cursor column of the wrong type is refused with the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from edge_agent.capture.pg_timestamp import PgTimestampCapture
from tests.capture.test_pg_trigger import lake_state, pg_config, rows_of, sql
from tests.lake import read_changes

ITEMS = ("CREATE TABLE items (id int PRIMARY KEY, qty int, gone boolean NOT NULL DEFAULT false,"
         " updated_at timestamptz NOT NULL DEFAULT now())")


def stamped(**values: Any) -> list[dict[str, Any]]:
    return [{"name": "items", "mode": "timestamp", "cursor": "updated_at", "lag": "5s",
             **values}]


def test_equal_cursor_values_across_pages_and_a_late_commit_land_once(
        tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items (id, qty, updated_at)"
        " SELECT g, g, '2025-01-01 10:00:00+00' FROM generate_series(1, 23) g")
    h = harness_factory(pg_config(tmp_path, pg_db, stamped(), source={"page_rows": 5}))
    h.step(0.1)
    late = psycopg.connect(pg_db)
    late.execute("INSERT INTO items (id, qty, updated_at) VALUES (24, 24, now())")
    sql(pg_db, "UPDATE items SET qty = 100, updated_at = clock_timestamp() WHERE id = 3")
    h.step(0.1)
    late.commit()  # committed after a later cursor value was already read
    late.close()
    h.step(0.1)
    assert h.flush().pending_files == 0
    changes = read_changes(tmp_path / "lake")
    assert len(changes) == 25  # 23 + the update + the late insert, each once
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")


def test_a_soft_delete_becomes_op_d(tmp_path: Path, pg_db: str, harness_factory: Any) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items (id, qty) VALUES (1, 1), (2, 2)")
    h = harness_factory(pg_config(tmp_path, pg_db, stamped(deleted_flag="gone", lag="0s")))
    h.step(0.1)
    sql(pg_db, "UPDATE items SET gone = true, updated_at = clock_timestamp() WHERE id = 2")
    h.step(0.1)
    assert h.flush().pending_files == 0
    assert [c["_op"] for c in read_changes(tmp_path / "lake")] == ["u", "u", "d"]
    assert set(lake_state(tmp_path, "public.items")) == {(1,)}


def test_a_role_with_select_only_is_enough(tmp_path: Path, pg_db: str,
                                           harness_factory: Any) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items (id, qty) VALUES (1, 1)",
        "DO $$ BEGIN CREATE ROLE reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL;"
        " END $$", "GRANT SELECT ON items TO reader")
    reader = pg_db.replace("postgres@", "reader@")
    h = harness_factory(pg_config(tmp_path, reader, stamped(lag="0s")))
    h.step(0.1)
    assert h.flush().pending_files == 0
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")
    with psycopg.connect(pg_db) as con:
        assert con.execute("SELECT to_regnamespace('edge_cdc')").fetchone() == (None,)


def test_each_poll_is_served_by_the_cursor_index(pg_db: str) -> None:
    from edge_agent.config import config_from_dict
    from tests.conftest import config_dict

    sql(pg_db, ITEMS, "CREATE INDEX ON items (updated_at)",
        "INSERT INTO items (id, qty, updated_at) SELECT g, g, now() - g * interval '1 s'"
        " FROM generate_series(1, 20000) g", "ANALYZE items")
    data = config_dict(Path("/tmp"), Path("unused.db"), stamped())
    del data["sources"][0]["path"]
    data["sources"][0].update({"kind": "postgres", "dsn": pg_db})
    src = config_from_dict(data).sources[0]
    capture = PgTimestampCapture(src, src.timestamp_tables[0])
    capture.open()
    now_us = 1_900_000_000_000_000
    query, params = capture.poll_query(now_us - 5_000_000, (now_us - 1_000_000, 7), 500)
    plan = capture._run(psycopg.sql.SQL("EXPLAIN ") + query, params)
    capture.close()
    text = "\n".join(r[0] for r in plan)
    assert "Index" in text and "items_updated_at_idx" in text, text


@pytest.mark.parametrize(("ddl", "said"), [
    ("CREATE TABLE items (id int PRIMARY KEY, updated_at text)", "is text"),
    ("CREATE TABLE items (id int PRIMARY KEY, at timestamptz)", "no column 'updated_at'"),
])
def test_a_cursor_column_that_cannot_serve_is_refused_with_the_fix(
        tmp_path: Path, pg_db: str, harness_factory: Any, ddl: str, said: str) -> None:
    sql(pg_db, ddl)
    h = harness_factory(pg_config(tmp_path, pg_db, stamped()))
    summary = h.step(0.1)
    assert any(said in e for e in summary.errors), summary.errors


def test_timestamp_and_date_cursors_are_read_as_utc(tmp_path: Path, pg_db: str,
                                                    harness_factory: Any) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, qty int, updated_at timestamp)",
        "INSERT INTO items VALUES (1, 1, '2025-03-04 05:06:07.891')")
    h = harness_factory(pg_config(tmp_path, pg_db, stamped(lag="0s")))
    h.step(0.1)
    assert h.flush().pending_files == 0
    (change,) = read_changes(tmp_path / "lake")
    assert change["_ts_ms"] == 1741064767891
