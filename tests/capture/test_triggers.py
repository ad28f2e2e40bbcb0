"""Capture triggers: idempotent, transactional, any identifier, positions never repeat."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.capture.triggers import LOG, ChangeLog
from edge_agent.errors import SourceError
from edge_agent.sources.sqlite import connect
from tests.conftest import make_config
from tests.lake import assert_exact, read_changes


def log_for(db: Path) -> ChangeLog:
    return ChangeLog(connect(db, 5.0), db)


def test_install_is_idempotent_and_verify_sees_it(app_db: Path) -> None:
    log = log_for(app_db)
    assert [p.table for p in log.verify(["readings"])] == ["readings"]
    assert log.install(["readings", "events"], 0, 1) == ["readings", "events"]
    assert log.install(["readings", "events"], 0, 2) == []
    assert log.verify(["readings", "events"]) == []


def test_install_of_an_unknown_table_changes_nothing(app_db: Path) -> None:
    log = log_for(app_db)
    with pytest.raises(SourceError, match="'nope' not found"):
        log.install(["readings", "nope"], 0, 1)
    con = sqlite3.connect(app_db)
    triggers = con.execute("SELECT count(*) FROM sqlite_master WHERE type='trigger'").fetchone()
    assert triggers == (0,)


def test_table_without_primary_key_is_refused_clearly(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE logs (line TEXT)")
    con.close()
    with pytest.raises(SourceError, match=r"no PRIMARY KEY.*declare one"):
        log_for(db).install(["logs"], 0, 1)


def test_reserved_column_name_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, _op TEXT)")
    con.close()
    with pytest.raises(SourceError, match="envelope column"):
        log_for(db).install(["t"], 0, 1)


def test_altered_trigger_is_detected_and_regenerated(app_db: Path) -> None:
    log = log_for(app_db)
    log.install(["events"], 0, 1)
    tid = log.active()["events"].tid
    log.con.execute(f"DROP TRIGGER _edge_cdc_{tid}_del")
    assert "missing or altered" in str(log.verify(["events"])[0])
    assert log.install(["events"], 0, 2) == ["events"]
    assert log.verify(["events"]) == []


def test_column_change_is_detected(app_db: Path) -> None:
    log = log_for(app_db)
    log.install(["events"], 0, 1)
    log.con.execute("ALTER TABLE events ADD COLUMN extra TEXT")
    assert "columns changed" in str(log.verify(["events"])[0])


def test_positions_never_repeat_after_the_log_is_emptied_or_dropped(
        tmp_path: Path, app_db: Path, harness_factory) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["events"]))
    h.step()
    con = sqlite3.connect(app_db)
    for batch in range(3):
        con.executemany("INSERT INTO events (kind) VALUES (?)", [(f"{batch}",)] * 5)
        con.commit()
        assert h.flush().ok
    # The newest row survives pruning, so the next position is still higher.
    assert con.execute(f"SELECT count(*) FROM {LOG}").fetchone() == (1,)
    # Someone drops the whole capture; reinstalling seeds the log at the durable position.
    # The agent's state knows the table was captured: changes in between are unknown, so
    # a truncate marker and a snapshot of its 15 rows follow.
    log = log_for(app_db)
    log.uninstall(None, drop_log=True)
    h.restart()
    h.step()
    con.executemany("INSERT INTO events (kind) VALUES (?)", [("after",)] * 5)
    con.commit()
    assert h.flush().ok
    changes = read_changes(tmp_path / "lake")
    assert [c["_pos"] for c in changes] == list(range(1, 37))
    assert [c["_op"] for c in changes] == ["c"] * 15 + ["t"] + ["r"] * 15 + ["c"] * 5


def test_identifiers_with_spaces_quotes_and_unicode(tmp_path: Path, harness_factory) -> None:
    db = tmp_path / "weird.db"
    con = sqlite3.connect(db)
    con.execute('CREATE TABLE "we""ird tåble/x" ("the key" INTEGER PRIMARY KEY, '
                '"va""l ü" TEXT, "select" REAL)')
    con.commit()
    h = harness_factory(make_config(tmp_path, db, ['we"ird tåble/x']))
    h.step()
    con.execute('INSERT INTO "we""ird tåble/x" VALUES (1, \'ä\', 1.5), (2, NULL, NULL)')
    con.execute('UPDATE "we""ird tåble/x" SET "the key" = 3 WHERE "the key" = 2')
    con.execute('DELETE FROM "we""ird tåble/x" WHERE "the key" = 1')
    con.commit()
    assert h.flush().ok
    changes = assert_exact(tmp_path / "lake", db, {'we"ird tåble/x': ["the key"]}, 5)
    assert [c["_op"] for c in changes] == ["c", "c", "d", "u", "d"]
    assert (tmp_path / "lake" / "bronze" / "app" / "we%22ird%20t%C3%A5ble%2Fx").is_dir()


def test_uninstall_removes_triggers_but_keeps_log_unless_asked(app_db: Path) -> None:
    log = log_for(app_db)
    log.install(["events"], 0, 1)
    assert log.uninstall(None, drop_log=False) == ["events"]
    con = sqlite3.connect(app_db)
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE type='trigger'").fetchone() == (0,)
    assert con.execute(f"SELECT count(*) FROM sqlite_master WHERE name='{LOG}'").fetchone() == (1,)


def test_key_only_deletes_log_the_key_and_the_lake_still_replays(
        tmp_path: Path, app_db: Path, harness_factory) -> None:
    """Issue 14: `delete_image = "key"` makes a delete log only the key (cheaper for the
    application's deletes); the lake's `d` carries the key, other columns NULL, and a
    replay is still exact. Switching the option regenerates the triggers."""
    from tests.conftest import WORKLOAD_TABLES, make_config, run_workload
    from tests.lake import assert_exact, read_changes

    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES), source={"delete_image": "key"})
    h = harness_factory(cfg)
    h.step()
    run_workload(app_db, seed=12, transactions=200)
    h.step(0.1)
    assert h.flush().ok
    deletes = [c for c in read_changes(Path(cfg.sink.path))
               if c["_op"] == "d" and c["_table"] == "readings"]
    assert deletes and all(c["values"]["id"] is not None for c in deletes)
    assert all(c["values"]["sensor"] is None and c["values"]["payload"] is None
               for c in deletes)
    assert_exact(Path(cfg.sink.path), app_db, WORKLOAD_TABLES, None)
    h.close()
    back = make_config(tmp_path, app_db, list(WORKLOAD_TABLES))  # delete_image = "row"
    h = harness_factory(back)
    h.step()
    # The triggers are the agent's own for the other option: replaced in one transaction,
    # so nothing is missed and no table is snapshotted again.
    assert h.agent.pipelines["app"].actions().get("readings") == "options"
    before = len(read_changes(Path(cfg.sink.path)))
    run_workload(app_db, seed=13, transactions=100)
    assert h.flush().ok
    changes = assert_exact(Path(back.sink.path), app_db, WORKLOAD_TABLES, None)
    assert "r" not in {c["_op"] for c in changes[before:]}
    deletes = [c for c in changes[before:] if c["_op"] == "d" and c["_table"] == "readings"]
    assert any(v is not None for c in deletes for k, v in c["values"].items() if k != "id")


def test_delete_image_per_table_overrides_the_sources(
        tmp_path: Path, app_db: Path, harness_factory) -> None:
    """Issue 14: the before image of deletes is a per-table choice: a [[sources.tables]]
    entry's delete_image wins over the source's; the lake still replays exactly."""
    from tests.conftest import WORKLOAD_TABLES, make_config, run_workload
    from tests.lake import assert_exact, read_changes

    tables: list[object] = [{"name": "readings", "delete_image": "key"},
                            *(t for t in WORKLOAD_TABLES if t != "readings")]
    cfg = make_config(tmp_path, app_db, tables)  # type: ignore[arg-type]
    h = harness_factory(cfg)
    h.step()
    run_workload(app_db, seed=14, transactions=200)
    h.step(0.1)
    assert h.flush().ok
    deletes = [c for c in read_changes(Path(cfg.sink.path)) if c["_op"] == "d"]
    keyed = [c for c in deletes if c["_table"] == "readings"]
    full = [c for c in deletes if c["_table"] == "events"]
    assert keyed and all(c["values"]["sensor"] is None and c["values"]["payload"] is None
                         for c in keyed)
    assert full and any(v is not None for c in full for k, v in c["values"].items()
                        if k != "id")
    assert_exact(Path(cfg.sink.path), app_db, WORKLOAD_TABLES, None)
    h.close()


def test_a_trigger_altered_by_hand_is_regenerated_with_a_snapshot(app_db: Path) -> None:
    """Only the agent's own triggers for the other delete option skip the snapshot."""
    log = log_for(app_db)
    log.install(["events"], 0, 1)
    tid = log.active()["events"].tid
    log.con.execute(f"DROP TRIGGER _edge_cdc_{tid}_del")
    log.con.execute(f"CREATE TRIGGER _edge_cdc_{tid}_del AFTER DELETE ON events BEGIN "
                    "SELECT 1; END")
    assert log.install(["events"], 0, 2) == ["events"]
    assert log.actions == {"events": "changed"}


def test_prune_deletes_exactly_below_durable_across_gaps_and_keeps_the_newest(
        app_db: Path) -> None:
    """Prune works in ranges of positions: gaps (a reseeded log) neither stop it early
    nor let it delete at or above the durable position; the newest row always stays."""
    log = log_for(app_db)
    log.install(["events"], 0, 1, snapshot_new=False)
    con = sqlite3.connect(app_db, isolation_level=None)
    con.executemany("INSERT INTO events (kind) VALUES (?)", [("a",)] * 12)
    con.execute(f"INSERT INTO {LOG} (seq, tid, op, ts_ms) VALUES (50000, 0, 's', 0)")
    con.executemany("INSERT INTO events (kind) VALUES (?)", [("b",)] * 12)
    seqs = [r[0] for r in con.execute(f"SELECT seq FROM {LOG} ORDER BY seq")]
    assert log.prune(50005, chunk=5) == sum(1 for s in seqs if s < 50005)
    assert [r[0] for r in con.execute(f"SELECT seq FROM {LOG} ORDER BY seq")] == [
        s for s in seqs if s >= 50005]
    newest = seqs[-1]  # durable never passes the last position read
    assert log.prune(newest, chunk=5) == len([s for s in seqs if 50005 <= s < newest])
    assert con.execute(f"SELECT seq FROM {LOG}").fetchall() == [(newest,)]
