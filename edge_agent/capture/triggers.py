"""Trigger-based capture for SQLite: install, verify, uninstall, read, prune.

One change log per source database (``_edge_cdc_log``) gives every change of
every captured table a position from one sequence, so positions are ordered
across tables. The log's value columns ``c0..cN`` have no declared type, so
SQLite stores each value exactly as the application wrote it; a second table
(``_edge_cdc_tables``) maps each capture id (``tid``) to the table and column
list its triggers were generated for, so old log rows decode correctly after
a schema change.

Positions never repeat: the log keeps its newest row when pruned
(``seq < durable``), and a new or emptied log is seeded with a marker row at
the last durable position.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter
from pathlib import Path
from typing import Any

from edge_agent.capture import snapshot
from edge_agent.errors import SourceError
from edge_agent.sources.sqlite import Column, TableShape, map_error, quote, table_shape

LOG = "_edge_cdc_log"
META = "_edge_cdc_tables"
FORMAT_VERSION = 1
SEED_OP = "s"
PRUNE_CHUNK = 5000  # positions per prune transaction
FETCH_CHUNK = 256  # rows per fetchmany; a page of large rows stops near its budget
NOW_MS = "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"


@dataclass(frozen=True)
class Capture:
    """The triggers of one table, generated for one column list."""

    tid: int
    shape: TableShape

    @property
    def table(self) -> str:
        return self.shape.name


@dataclass(frozen=True)
class Problem:
    table: str
    issue: str
    fix: str

    def __str__(self) -> str:
        return f"table {self.table!r}: {self.issue}; {self.fix}"


def _columns_json(shape: TableShape) -> str:
    return json.dumps([[c.name, c.decltype, c.pk] for c in shape.columns])


def _shape_from_json(table: str, text: str) -> TableShape:
    return TableShape(table, tuple(Column(n, d, pk) for n, d, pk in json.loads(text)))


def _text_or_bytes(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def trigger_names(tid: int) -> tuple[str, str, str]:
    return (f"_edge_cdc_{tid}_ins", f"_edge_cdc_{tid}_upd", f"_edge_cdc_{tid}_del")


def trigger_sql(cap: Capture, delete_key_only: bool = False) -> list[str]:
    """CREATE TRIGGER statements for one capture (compared verbatim by verify).
    ``delete_key_only``: a delete logs its key columns only (``delete_image = "key"``)."""
    cols = cap.shape.columns
    targets = ", ".join(f"c{i}" for i in range(len(cols)))
    new = ", ".join(f"NEW.{quote(c.name)}" for c in cols)
    old = ", ".join(f"OLD.{quote(c.name)}" for c in cols)
    keys = [(i, c) for i, c in enumerate(cols) if c.pk]
    gone_head = (
        f"INSERT INTO {LOG} (tid, op, ts_ms, {', '.join(f'c{i}' for i, _ in keys)})"
        if delete_key_only
        else f"INSERT INTO {LOG} (tid, op, ts_ms, {targets})"
    )
    gone = ", ".join(f"OLD.{quote(c.name)}" for _, c in keys) if delete_key_only else old
    key_moved = " OR ".join(f"OLD.{quote(k)} IS NOT NEW.{quote(k)}" for k in cap.shape.key)
    head = f"INSERT INTO {LOG} (tid, op, ts_ms, {targets})"
    table = quote(cap.table)
    ins, upd, dele = trigger_names(cap.tid)
    return [
        f"CREATE TRIGGER {ins} AFTER INSERT ON {table} BEGIN "
        f"{head} VALUES ({cap.tid}, 'c', {NOW_MS}, {new}); END",
        # An update that moves the key is a delete of the old key plus the new row.
        f"CREATE TRIGGER {upd} AFTER UPDATE ON {table} BEGIN "
        f"{head} SELECT {cap.tid}, 'd', {NOW_MS}, {old} WHERE {key_moved}; "
        f"{head} VALUES ({cap.tid}, 'u', {NOW_MS}, {new}); END",
        f"CREATE TRIGGER {dele} AFTER DELETE ON {table} BEGIN "
        f"{gone_head} VALUES ({cap.tid}, 'd', {NOW_MS}, {gone}); END",
    ]


class ChangeLog:
    """The capture objects inside one application database."""

    def __init__(
        self,
        con: sqlite3.Connection,
        path: Path,
        delete_key_only: bool | Callable[[str], bool] = False,
    ) -> None:
        self.con = con
        self.path = path
        # delete_image = "key" (the source's, or per table): a delete logs only its key
        self.key_only = delete_key_only if callable(delete_key_only) else _always(delete_key_only)
        self._width = 0

    # -- reading ----------------------------------------------------------
    def captures(self) -> dict[int, Capture]:
        """Every capture ever installed (old ones decode old log rows)."""
        if not self.has_table(META):
            return {}
        rows = self._run(f"SELECT tid, name, columns FROM {META}").fetchall()
        return {tid: Capture(tid, _shape_from_json(name, cols)) for tid, name, cols in rows}

    def active(self) -> dict[str, Capture]:
        if not self.has_table(META):
            return {}
        rows = self._run(f"SELECT tid, name, columns FROM {META} WHERE active = 1").fetchall()
        return {name: Capture(tid, _shape_from_json(name, cols)) for tid, name, cols in rows}

    def read_page(self, after: int, max_rows: int, max_bytes: int) -> list[tuple[object, ...]]:
        """Changes with ``seq > after`` in order, at most max_rows / about max_bytes.

        Rows are (seq, tid, op, ts_ms, c0..cN, size): the last item is the row's size
        estimate, past every table's columns (the decoding reads only the first 4 + its
        width). The statement runs in autocommit and is finished before returning, so
        no read snapshot stays open.
        """
        width = self._log_width()
        values = ", ".join(f"c{i}" for i in range(width))
        # A size estimate per row: text and blob lengths, 8 bytes for anything else
        # (length() of a number would format it as text: 12% of capture CPU). Untyped
        # columns compare by storage class, so `c >= ''` is true for text and blobs only
        # (cheaper than typeof()).
        size = " + ".join(f"iif(c{i} >= '', length(c{i}), 8)" for i in range(width)) or "0"
        sql = (
            f"SELECT seq, tid, op, ts_ms, {values}, 32 + {size} FROM {LOG} "
            f"WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        try:
            return self._fetch(sql, (after, max_rows), max_bytes)
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise map_error(exc, self.path) from exc
        # Text that is not valid UTF-8 (SQLite stores whatever it is given): read this
        # page keeping such values as bytes, so they land exactly, in _unfit.
        self.con.text_factory = _text_or_bytes
        try:
            return self._fetch(sql, (after, max_rows), max_bytes)
        except sqlite3.Error as exc:
            raise map_error(exc, self.path) from exc
        finally:
            self.con.text_factory = str

    def _fetch(self, sql: str, params: tuple[int, int], max_bytes: int) -> list[tuple[Any, ...]]:
        """Rows until about ``max_bytes``: fetched in small chunks, each cut at the row
        that reaches the budget (so a page of large rows stays near it)."""
        rows: list[tuple[Any, ...]] = []
        total = 0
        cur = self.con.execute(sql, params)
        try:
            while chunk := cur.fetchmany(FETCH_CHUNK):
                sizes = list(accumulate(map(itemgetter(-1), chunk), initial=total))
                total = sizes[-1]
                if total < max_bytes:
                    rows += chunk
                    continue
                # sizes[i + 1] is the total with row i: keep rows up to the one reaching it
                rows += chunk[: bisect_left(sizes, max_bytes, 1)]
                break
        finally:
            cur.close()
        return rows

    def pending(self, after: int) -> int:
        if not self.has_table(LOG):
            return 0
        row = self._run(f"SELECT count(*) FROM {LOG} WHERE seq > ? AND tid != 0", (after,))
        return int(row.fetchone()[0])

    def high_water(self) -> int:
        if not self.has_table(LOG):
            return 0
        return int(self._run(f"SELECT coalesce(max(seq), 0) FROM {LOG}").fetchone()[0])

    def schema_version(self) -> int:
        return int(self._run("PRAGMA schema_version").fetchone()[0])

    # -- writing ----------------------------------------------------------
    def prune(self, durable: int, chunk: int = PRUNE_CHUNK) -> int:
        """Delete consumed changes below ``durable``; the newest row always stays.

        In chunks of positions, each its own short transaction: one big DELETE after a
        backlog would hold the write lock and grow the application's WAL by the
        backlog's size. Each chunk is a range of the log's key (no list of rows to build).
        """
        if not self.has_table(LOG):
            return 0
        total = 0
        low = self._lowest()
        while low is not None and low < durable:
            deleted = self._run(f"DELETE FROM {LOG} WHERE seq < ?", (min(durable, low + chunk),))
            total += deleted.rowcount
            low = self._lowest()
        return total

    def _lowest(self) -> int | None:
        row = self._run(f"SELECT min(seq) FROM {LOG}").fetchone()
        return None if row[0] is None else int(row[0])

    def install(
        self,
        tables: Iterable[str],
        seed: int,
        now_ms: int,
        snapshot_new: bool = True,
        captured_before: Iterable[str] = (),
    ) -> list[str]:
        """Create or regenerate triggers in one transaction; returns the tables changed.

        ``seed`` is the durable position: a new or emptied log starts above it, so
        positions never repeat. What was done per table is in ``self.actions``
        (see :meth:`_plan`). ``captured_before``: tables the agent's own state says were
        captured, in case the capture objects here were dropped with their history.
        """
        self.actions: dict[str, str] = {}
        with self.transaction():
            self._ensure_log(seed)
            snapshot.ensure_table(self)
            active = self.active()
            known = {cap.table for cap in self.captures().values()} | set(captured_before)
            for table in tables:
                shape = table_shape(self.con, table)
                action = self._plan(active.get(table), shape, table in known)
                if action is not None:
                    self._apply(action, active.get(table), shape, now_ms, snapshot_new)
                    self.actions[table] = action
        self._width = 0
        return list(self.actions)

    def _plan(self, current: Capture | None, shape: TableShape, known: bool) -> str | None:
        """What a table's capture needs:

        - ``new``: never captured; triggers, then an initial snapshot.
        - ``gap``: captured before but its triggers are gone (uninstalled, or the table
          was rebuilt: create new, copy, drop, rename); changes in between are unknown,
          so a truncate marker (op ``t``) and a full snapshot follow.
        - ``changed``: triggers still fire but the columns changed (ADD/RENAME COLUMN):
          new triggers and a full snapshot, so the latest row of every key in the lake
          has the current columns, including rows changed between the migration and
          this regeneration (the old triggers logged those with the old columns).
        - ``options``: the triggers are the agent's own for the other ``delete_image``:
          replaced in this transaction, so no change is missed and no snapshot is needed.
        """
        if current is None:
            return "gap" if known else "new"
        if not self._triggers_present(current):
            return "gap"
        if current.shape != shape:
            return "changed"
        key_only = self.key_only(shape.name)
        if not self._triggers_match(current, key_only):
            return "options" if self._triggers_match(current, not key_only) else "changed"
        return None

    def _apply(
        self,
        action: str,
        current: Capture | None,
        shape: TableShape,
        now_ms: int,
        snapshot_new: bool,
    ) -> None:
        if current is not None:
            self._retire(current)
        new = self._create(shape, now_ms)
        if action == "new" and snapshot_new:
            snapshot.start(self, new, now_ms)
        elif action == "gap":
            self._run(f"INSERT INTO {LOG} (tid, op, ts_ms) VALUES (?, 't', ?)", (new.tid, now_ms))
            snapshot.start(self, new, now_ms)
        elif action == "changed":
            snapshot.start(self, new, now_ms)

    def _triggers_present(self, cap: Capture) -> bool:
        rows = self._run(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN (?, ?, ?)",
            trigger_names(cap.tid),
        ).fetchone()
        return bool(rows[0] == 3)

    def verify(self, tables: Iterable[str]) -> list[Problem]:
        problems: list[Problem] = []
        active = self.active()
        fix = "run `edge-agent triggers install` (the daemon does it on start)"
        for table in tables:
            try:
                shape = table_shape(self.con, table)
            except SourceError as exc:
                problems.append(Problem(table, str(exc), "fix sources.tables"))
                continue
            current = active.get(table)
            if current is None:
                problems.append(Problem(table, "no capture triggers installed", fix))
            elif current.shape != shape:
                problems.append(Problem(table, "columns changed since the triggers were made", fix))
            elif not self._triggers_match(current):
                problems.append(Problem(table, "capture triggers missing or altered", fix))
        return problems

    def check_table(self, table: str) -> None:
        table_shape(self.con, table)

    def uninstall_all(self, drop_log: bool) -> list[str]:
        return self.uninstall(None, drop_log)

    def uninstall(self, tables: Sequence[str] | None, drop_log: bool) -> list[str]:
        removed: list[str] = []
        with self.transaction():
            for table, cap in self.active().items():
                if tables is None or table in tables:
                    self._retire(cap)
                    removed.append(table)
            if drop_log and not self.active():
                self._run(f"DROP TABLE IF EXISTS {LOG}")
                self._run(f"DROP TABLE IF EXISTS {META}")
        self._width = 0
        return removed

    # -- internals --------------------------------------------------------
    def _ensure_log(self, seed: int) -> None:
        self._run(
            f"CREATE TABLE IF NOT EXISTS {META} (tid INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "columns TEXT NOT NULL, version INTEGER NOT NULL, installed_ms INTEGER NOT NULL, "
            "active INTEGER NOT NULL)"
        )
        self._run(
            f"CREATE TABLE IF NOT EXISTS {LOG} (seq INTEGER PRIMARY KEY, tid INTEGER NOT NULL, "
            "op TEXT NOT NULL, ts_ms INTEGER NOT NULL)"
        )
        if self.high_water() < seed:
            self._run(
                f"INSERT INTO {LOG} (seq, tid, op, ts_ms) VALUES (?, 0, ?, 0)", (seed, SEED_OP)
            )

    def _create(self, shape: TableShape, now_ms: int) -> Capture:
        cur = self._run(
            f"INSERT INTO {META} (name, columns, version, installed_ms, active) "
            "VALUES (?, ?, ?, ?, 1)",
            (shape.name, _columns_json(shape), FORMAT_VERSION, now_ms),
        )
        tid = int(cur.lastrowid or 0)
        self._widen(len(shape.columns))
        cap = Capture(tid, shape)
        for sql in trigger_sql(cap, self.key_only(shape.name)):
            self._run(sql)
        return cap

    def _retire(self, cap: Capture) -> None:
        for name in trigger_names(cap.tid):
            self._run(f"DROP TRIGGER IF EXISTS {name}")
        self._run(f"UPDATE {META} SET active = 0 WHERE tid = ?", (cap.tid,))

    def _triggers_match(self, cap: Capture, delete_key_only: bool | None = None) -> bool:
        key_only = self.key_only(cap.table) if delete_key_only is None else delete_key_only
        names = trigger_names(cap.tid)
        rows = self._run(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN (?, ?, ?)",
            names,
        ).fetchall()
        found = dict(rows)
        return [found.get(n) for n in names] == trigger_sql(cap, key_only)

    def _widen(self, width: int) -> None:
        for i in range(self._log_width(), width):
            self._run(f"ALTER TABLE {LOG} ADD COLUMN c{i}")
        self._width = 0

    def _log_width(self) -> int:
        if not self._width and self.has_table(LOG):
            cols = [r[1] for r in self._run(f"PRAGMA table_info({LOG})")]
            self._width = sum(1 for c in cols if c.startswith("c") and c[1:].isdigit())
        return self._width

    def has_table(self, name: str) -> bool:
        row = self._run("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return row.fetchone() is not None

    def _run(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self.con.execute(sql, params)
        except sqlite3.Error as exc:
            raise map_error(exc, self.path) from exc

    def transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    def __init__(self, log: ChangeLog) -> None:
        self.log = log

    def __enter__(self) -> None:
        self.log._run("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.log._run("COMMIT")
                return
            except BaseException:
                self._rollback()  # never keep the application's write lock
                raise
        self._rollback()

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.log.con.execute("ROLLBACK")


def _always(value: bool) -> Callable[[str], bool]:
    return lambda _table: value
