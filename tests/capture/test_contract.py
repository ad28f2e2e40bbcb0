"""One contract for every capture, run against each registered (kind, mode).

The sibling of tests/shippers/test_contract.py: whatever database and mode a
pipeline reads, the agent drives it through the same Pipeline interface, and
a user sees the same behaviour: every committed change reaches the lake once,
a crash before a file is sealed loses nothing and doubles nothing, and an
unknown table is refused by name while the source keeps running.

A rig knows how to make one source and write to it; adding a (kind, mode) to
runtime/opening.py without a rig here fails ``test_every_registered_capture_has_a_rig``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import Config
from edge_agent.runtime.opening import OPENERS
from tests.capture.test_pg_trigger import pg_config
from tests.conftest import make_config
from tests.lake import read_changes, replay

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


@dataclass
class Rig:
    """A source of one (kind, mode) with a table ``items(id, name, qty)``: ``make`` creates
    it and returns its address (a file path or a DSN), ``write`` runs SQL with ``?``
    parameters and ``NOW()`` on it, ``config`` builds the agent's config."""

    tables: Callable[[], list[Any]]
    make: Callable[[Path, pytest.FixtureRequest], str]
    write: Callable[[str, str, tuple[Any, ...]], None]
    config: Callable[..., Config] = lambda tmp, db, tables, **kw: make_config(
        tmp, Path(db), tables, **kw)


def _sqlite_db(tmp: Path, request: pytest.FixtureRequest) -> str:
    db = tmp / "app.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, "
                "updated_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00.000Z')")
    con.close()
    return str(db)


def _sqlite_write(db: str, sql: str, args: tuple[Any, ...]) -> None:
    con = sqlite3.connect(db)
    with con:
        con.execute(sql.replace("NOW()", NOW), args)
    con.close()


def _pg_db(tmp: Path, request: pytest.FixtureRequest) -> str:
    dsn: str = request.getfixturevalue("pg_db")
    _pg_write(dsn, "CREATE TABLE items (id int PRIMARY KEY, name text, qty int, "
                   "updated_at timestamptz NOT NULL DEFAULT '1970-01-01Z')", ())
    return dsn


def _pg_write(dsn: str, sql: str, args: tuple[Any, ...]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(sql.replace("?", "%s"), args or None)


def _logical_config(tmp: Path, db: str, tables: list[Any], **kw: Any) -> Config:
    from tests.capture.test_pg_logical import logical_config

    return logical_config(tmp, db, tables, **kw)


RIGS: dict[tuple[str, str], Rig] = {
    ("sqlite", "trigger"): Rig(lambda: ["items"], _sqlite_db, _sqlite_write),
    ("sqlite", "timestamp"): Rig(
        lambda: [{"name": "items", "mode": "timestamp", "cursor": "updated_at", "lag": "0s"}],
        _sqlite_db, _sqlite_write),
    ("postgres", "trigger"): Rig(lambda: ["items"], _pg_db, _pg_write, pg_config),
    ("postgres", "logical"): Rig(lambda: ["items"], _pg_db, _pg_write, _logical_config),
    ("postgres", "timestamp"): Rig(
        lambda: [{"name": "items", "mode": "timestamp", "cursor": "updated_at", "lag": "0s"}],
        _pg_db, _pg_write, pg_config),
}
ITEMS = ("items", "public.items")  # a PostgreSQL table's name carries its schema
INSERT = "INSERT INTO items (id, name, qty, updated_at) VALUES (?, ?, ?, NOW())"
UPDATE = "UPDATE items SET qty = ?, updated_at = NOW() WHERE id = ?"


def test_every_registered_capture_has_a_rig() -> None:
    assert set(OPENERS) == set(RIGS)


@pytest.fixture(params=sorted(RIGS), ids="-".join)
def rig(request: pytest.FixtureRequest) -> tuple[tuple[str, str], Rig]:
    return request.param, RIGS[request.param]


def _items(lake: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    state = replay(read_changes(lake))
    items = state.get("items") or state.get("public.items", {})
    return {k: {c: v[c] for c in ("id", "name", "qty")} for k, v in items.items()}


def test_committed_changes_reach_the_lake_once(tmp_path: Path, harness_factory: Any,
                                               rig: tuple[tuple[str, str], Rig],
        request: pytest.FixtureRequest) -> None:
    _, r = rig
    db = r.make(tmp_path, request)
    h = harness_factory(r.config(tmp_path, db, r.tables()))
    for i in range(1, 41):
        r.write(db, INSERT, (i, f"n{i}", i))
    r.write(db, UPDATE, (1000, 7))
    h.step(0.1)
    assert h.flush().pending_files == 0
    changes = [c for c in read_changes(tmp_path / "lake") if c["_table"] in ITEMS]
    positions = [c["_pos"] for c in changes]
    assert len(positions) == len(set(positions))
    items = _items(tmp_path / "lake")
    assert len(items) == 40
    assert items[(7,)]["qty"] == 1000
    assert {c["_source"] for c in changes} == {"app"}


def test_a_crash_before_sealing_loses_and_doubles_nothing(
        tmp_path: Path, harness_factory: Any, rig: tuple[tuple[str, str], Rig],
        request: pytest.FixtureRequest) -> None:
    _, r = rig
    db = r.make(tmp_path, request)
    h = harness_factory(r.config(tmp_path, db, r.tables(), buffer={"max_file_age": "1h"}))
    for i in range(1, 21):
        r.write(db, INSERT, (i, f"n{i}", i))
    h.step(0.1)  # read into the writer, not sealed
    h.restart()
    for i in range(21, 31):
        r.write(db, INSERT, (i, f"n{i}", i))
    h.step(0.1)
    assert h.flush().pending_files == 0
    changes = [c for c in read_changes(tmp_path / "lake") if c["_table"] in ITEMS]
    assert sorted(c["values"]["id"] for c in changes) == list(range(1, 31))
    assert len(_items(tmp_path / "lake")) == 30


def test_an_unknown_table_is_named_and_the_rest_goes_on(
        tmp_path: Path, harness_factory: Any, rig: tuple[tuple[str, str], Rig],
        request: pytest.FixtureRequest) -> None:
    (_, mode), r = rig
    db = r.make(tmp_path, request)
    missing: Any = "nope" if mode in ("trigger", "logical") else {**r.tables()[0], "name": "nope"}
    h = harness_factory(r.config(tmp_path, db, [*r.tables(), missing]))
    r.write(db, INSERT, (1, "a", 1))
    summary = h.step(0.1)
    h.flush()
    assert len(_items(tmp_path / "lake")) == 1
    errors = " ".join(summary.errors) + " ".join(
        str(v) for v in h.agent.state.notes().values())
    assert "nope" in errors


def test_only_sources_and_capture_reach_a_database() -> None:
    """The seam: no stage after capture imports a source module or a database driver
    (the agent's own state database is not a source)."""
    package = Path(__file__).resolve().parents[2] / "edge_agent"
    needles = ("edge_agent.sources", "import psycopg", "from psycopg", "adbc_driver")
    offenders = [
        str(p.relative_to(package)) for p in package.rglob("*.py")
        if p.parent.name not in {"sources", "capture"}
        and any(n in p.read_text(encoding="utf-8") for n in needles)
    ]
    assert offenders == []
