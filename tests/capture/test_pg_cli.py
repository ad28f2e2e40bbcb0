"""The commands on a PostgreSQL source, as an operator runs them: triggers install,
verify and uninstall, status, snapshot and flush through the real `edge-agent`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from tests.capture.test_pg_trigger import ITEMS, lake_state, rows_of, sql
from tests.conftest import config_dict, run_cli, write_config


def pg_config_file(tmp: Path, dsn: str, tables: list[str], **source: Any) -> str:
    data = config_dict(tmp, tmp / "unused.db", tables)
    src = data["sources"][0]
    del src["path"]
    src.update({"kind": "postgres", "dsn": dsn, **source})
    return str(write_config(tmp, data))


def test_triggers_install_verify_and_uninstall(tmp_path: Path, pg_db: str) -> None:
    sql(pg_db, ITEMS)
    config = pg_config_file(tmp_path, pg_db, ["items"])

    missing = run_cli("triggers", "verify", "--config", config)
    assert "no capture triggers installed" in missing.stdout + missing.stderr
    first = run_cli("triggers", "install", "--config", config)
    again = run_cli("triggers", "install", "--config", config)
    verified = run_cli("triggers", "verify", "--config", config)
    assert (first.returncode, again.returncode, verified.returncode) == (0, 0, 0)
    assert "installed: public.items" in first.stdout
    assert "nothing to change" in again.stdout
    assert "ok: 1 table(s) captured" in verified.stdout

    sql(pg_db, "ALTER TABLE items DISABLE TRIGGER edge_cdc_capture")
    altered = run_cli("triggers", "verify", "--config", config)
    assert altered.returncode != 0
    assert "capture triggers missing or disabled" in altered.stdout + altered.stderr

    sql(pg_db, "ALTER TABLE items ENABLE TRIGGER edge_cdc_capture",
        "INSERT INTO items VALUES (1, 'a', 1)")
    refused = run_cli("triggers", "uninstall", "--drop-log", "--config", config)
    assert refused.returncode != 0
    assert "still waiting in the change log" in refused.stdout + refused.stderr
    dropped = run_cli("triggers", "uninstall", "--drop-log", "--force", "--config", config)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert "uninstalled: public.items (change log dropped)" in dropped.stdout
    sql(pg_db, "INSERT INTO items VALUES (2, 'b', 2)")  # no trigger left to fail the write


def test_status_flush_and_snapshot_on_postgres(tmp_path: Path, pg_db: str) -> None:
    sql(pg_db, ITEMS, "INSERT INTO items SELECT g, 'a', g FROM generate_series(1, 30) g")
    config = pg_config_file(tmp_path, pg_db, ["items"], snapshot="never")
    assert run_cli("flush", "--config", config).returncode == 0  # installs the triggers
    sql(pg_db, "UPDATE items SET qty = 0 WHERE id <= 5")

    with psycopg.connect(pg_db, application_name="slow-batch") as open_tx:
        open_tx.execute("UPDATE items SET qty = 1 WHERE id = 30")  # not committed yet
        status = json.loads(run_cli("status", "--json", "--config", config).stdout)
        text = run_cli("status", "--config", config).stdout
        open_tx.rollback()
    assert status["sources"][0]["waiting_in_source_log"] == 5
    assert status["sources"][0]["database"]["change_log_bytes"] > 0
    assert status["sources"][0]["database"]["oldest_transaction"]["application"] == "slow-batch"
    assert "oldest open transaction" in text and "slow-batch" in text

    flushed = run_cli("flush", "--config", config)
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert len(lake_state(tmp_path, "public.items")) == 5  # snapshot = "never"

    snap = run_cli("snapshot", "--table", "items", "--config", config)
    assert snap.returncode == 0, snap.stdout + snap.stderr
    assert lake_state(tmp_path, "public.items") == rows_of(pg_db, "items")
    after = json.loads(run_cli("status", "--json", "--config", config).stdout)
    assert after["sources"][0]["waiting_in_source_log"] == 0
    assert after["sources"][0]["tables"][0]["snapshot"]["finished"] is True


def test_config_check_and_status_of_a_postgres_timestamp_table(tmp_path: Path,
                                                               pg_db: str) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, updated_at timestamptz)",
        "CREATE TABLE logs (id int PRIMARY KEY, updated_at text)",
        "INSERT INTO items VALUES (1, '2025-01-01 00:00:01+00')")
    entry = {"mode": "timestamp", "cursor": "updated_at", "lag": "0s"}
    bad = pg_config_file(tmp_path, pg_db, [{"name": "items", **entry},
                                           {"name": "logs", **entry}])
    checked = run_cli("config", "check", "--config", bad)
    assert checked.returncode != 0
    assert "'public.logs': cursor column 'updated_at' is text" in checked.stdout + checked.stderr

    good = pg_config_file(tmp_path, pg_db, [{"name": "items", **entry}])
    assert run_cli("config", "check", "--config", good).returncode == 0
    assert run_cli("flush", "--config", good).returncode == 0
    status = json.loads(run_cli("status", "--json", "--config", good).stdout)
    (table,) = status["sources"][0]["tables"]
    assert table["mode"] == "timestamp"
    assert table["cursor"]["watermark_ms"] == 1735689601000
