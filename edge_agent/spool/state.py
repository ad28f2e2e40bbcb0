"""The agent's own state database: positions, ordinals, the file ledger, status notes.

A file counts as sealed only once its row is committed here, in the same
transaction that advances the table's sealed position and the source's
durable position (``synchronous=FULL``: the commit is on disk when it returns).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.errors import StateError
from edge_agent.sqlite_cache import limit_page_cache

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    source TEXT PRIMARY KEY, durable_pos INTEGER NOT NULL, next_ordinal INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tables (
    source TEXT NOT NULL, tbl TEXT NOT NULL, sealed_pos INTEGER NOT NULL,
    PRIMARY KEY (source, tbl));
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, tbl TEXT NOT NULL, ordinal INTEGER NOT NULL,
    first_pos INTEGER NOT NULL, last_pos INTEGER NOT NULL, rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, relpath TEXT NOT NULL,
    manifest_relpath TEXT NOT NULL, created_ms INTEGER NOT NULL, status TEXT NOT NULL,
    shipped_ms INTEGER, error TEXT);
CREATE INDEX IF NOT EXISTS files_status ON files (status, ordinal);
CREATE TABLE IF NOT EXISTS cursors (
    source TEXT NOT NULL, tbl TEXT NOT NULL, checkpoint TEXT NOT NULL,
    PRIMARY KEY (source, tbl));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS drops (
    source TEXT NOT NULL, ordinal INTEGER NOT NULL, id TEXT NOT NULL, tbl TEXT NOT NULL,
    first_pos INTEGER NOT NULL, last_pos INTEGER NOT NULL, rows INTEGER NOT NULL,
    dropped_ms INTEGER NOT NULL, reported_in TEXT, PRIMARY KEY (source, ordinal));
CREATE TABLE IF NOT EXISTS notes (
    name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ms INTEGER NOT NULL);
"""
READY, SHIPPED, FAILED, DROPPED = "ready", "shipped", "failed", "dropped"
KEEP_HISTORY = 1000


@dataclass(frozen=True)
class FileRecord:
    id: str
    source: str
    table: str
    ordinal: int
    first_pos: int
    last_pos: int
    rows: int
    bytes: int
    sha256: str
    relpath: str
    manifest_relpath: str
    created_ms: int
    status: str = READY
    shipped_ms: int | None = None
    error: str | None = None


_FILE_COLUMNS = (
    "id, source, tbl, ordinal, first_pos, last_pos, rows, bytes, sha256, relpath, "
    "manifest_relpath, created_ms, status, shipped_ms, error"
)


class StateDB:
    def __init__(self, path: Path) -> None:
        try:
            self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.con.execute("PRAGMA journal_mode = WAL")
            self.con.execute("PRAGMA synchronous = FULL")
            self.con.execute("PRAGMA busy_timeout = 5000")
            limit_page_cache(self.con)
            self.con.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"state database {str(path)!r} is unusable ({exc}): move it aside to start "
                "over (changes still in the source change logs are captured again)"
            ) from exc

    def close(self) -> None:
        self.con.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
            self.con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # COMMIT itself may have failed
                self.con.execute("ROLLBACK")
            raise

    # -- positions --------------------------------------------------------
    def source_position(self, source: str) -> tuple[int, int]:
        """(durable position, next ordinal) of a source; (0, 1) when new."""
        row = self.con.execute(
            "SELECT durable_pos, next_ordinal FROM sources WHERE source = ?", (source,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 1)

    def table_positions(self, source: str) -> dict[str, int]:
        rows = self.con.execute(
            "SELECT tbl, sealed_pos FROM tables WHERE source = ?", (source,)
        ).fetchall()
        return {t: int(p) for t, p in rows}

    def cursor(self, source: str, table: str) -> str | None:
        row = self.con.execute(
            "SELECT checkpoint FROM cursors WHERE source = ? AND tbl = ?", (source, table)
        ).fetchone()
        return str(row[0]) if row else None

    def set_cursor(self, source: str, table: str, checkpoint: str) -> None:
        """Store a timestamp table's checkpoint on its own (a snapshot's restart or end;
        every other checkpoint is stored with the file it belongs to)."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO cursors (source, tbl, checkpoint) VALUES (?, ?, ?) ON CONFLICT "
                "(source, tbl) DO UPDATE SET checkpoint = excluded.checkpoint",
                (source, table, checkpoint),
            )

    def set_durable(self, source: str, durable: int) -> None:
        with self.transaction() as con:
            self._upsert_source(con, source, durable, None)

    def record_sealed(
        self, rec: FileRecord, durable: int, cursor: tuple[str, str] | None = None
    ) -> None:
        """Commit a published file, its table's position and the source's position
        (and, in timestamp mode, the table's cursor checkpoint)."""
        with self.transaction() as con:
            _, expected = self.source_position(rec.source)
            if rec.ordinal != expected:
                raise StateError(
                    f"ordinal {rec.ordinal} for {rec.id} but the next is {expected}: "
                    "another agent is writing this state directory"
                )
            _insert_ready(con, rec)
            con.execute(
                "INSERT INTO tables (source, tbl, sealed_pos) VALUES (?, ?, ?) "
                "ON CONFLICT (source, tbl) DO UPDATE SET sealed_pos = excluded.sealed_pos",
                (rec.source, rec.table, rec.last_pos),
            )
            self._upsert_source(con, rec.source, durable, rec.ordinal + 1)
            if cursor is not None:
                con.execute(
                    "INSERT INTO cursors (source, tbl, checkpoint) VALUES (?, ?, ?) ON CONFLICT "
                    "(source, tbl) DO UPDATE SET checkpoint = excluded.checkpoint",
                    (rec.source, cursor[0], cursor[1]),
                )

    def _upsert_source(
        self, con: sqlite3.Connection, source: str, durable: int, next_ordinal: int | None
    ) -> None:
        con.execute(
            "INSERT INTO sources (source, durable_pos, next_ordinal) VALUES (?, ?, ?) "
            "ON CONFLICT (source) DO UPDATE SET "
            "durable_pos = max(durable_pos, excluded.durable_pos), "
            "next_ordinal = coalesce(?, next_ordinal)",
            (source, durable, next_ordinal or 1, next_ordinal),
        )

    # -- the file ledger --------------------------------------------------
    def files(self, status: str, source: str | None = None) -> list[FileRecord]:
        sql = f"SELECT {_FILE_COLUMNS} FROM files WHERE status = ?"
        params: tuple[object, ...] = (status,)
        if source is not None:
            sql += " AND source = ?"
            params += (source,)
        # Insertion order, not wall-clock time: a clock stepping back must not reorder.
        rows = self.con.execute(sql + " ORDER BY rowid", params).fetchall()
        return [FileRecord(*r) for r in rows]

    def file(self, file_id: str) -> FileRecord | None:
        row = self.con.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        return FileRecord(*row) if row else None

    def set_status(self, file_id: str, status: str, now_ms: int, error: str | None = None) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE files SET status = ?, shipped_ms = ?, error = ? WHERE id = ?",
                (status, now_ms, error, file_id),
            )
        if status == SHIPPED:
            self._trim_history()

    def _trim_history(self) -> None:
        self.con.execute(
            "DELETE FROM files WHERE status = ? AND rowid NOT IN "
            "(SELECT rowid FROM files WHERE status = ? ORDER BY shipped_ms DESC LIMIT ?)",
            (SHIPPED, SHIPPED, KEEP_HISTORY),
        )

    def ready_bytes(self) -> int:
        row = self.con.execute(
            "SELECT coalesce(sum(bytes), 0) FROM files WHERE status = ?", (READY,)
        ).fetchone()
        return int(row[0])

    def last_shipped(self, source: str, table: str) -> FileRecord | None:
        row = self.con.execute(
            # By position, not by time: a clock that stepped back must not name an older
            # file as the last one shipped.
            f"SELECT {_FILE_COLUMNS} FROM files WHERE status = ? AND source = ? AND tbl = ? "
            "ORDER BY last_pos DESC, rowid DESC LIMIT 1",
            (SHIPPED, source, table),
        ).fetchone()
        return FileRecord(*row) if row else None

    # -- counters and notes (for status) ---------------------------------
    # -- rebuilding the ledger (spool/adopt.py) --------------------------------
    def source_known(self, source: str) -> bool:
        return (
            self.con.execute("SELECT 1 FROM sources WHERE source = ?", (source,)).fetchone()
            is not None
        )

    def adopt(self, rec: FileRecord) -> None:
        """A verified spool file back into the ledger: ready, its table's sealed position
        and the source's next ordinal raised to cover it (durable stays: a re-read skips
        what sealed files hold)."""
        with self.transaction() as con:
            _insert_ready(con, rec)
            self._raise_positions(con, rec.source, {rec.table: rec.last_pos}, rec.ordinal)

    def seed(self, source: str, landed: list[dict[str, Any]]) -> None:
        """A source new to the ledger whose files are already in the lake: ordinals and
        sealed positions continue after them."""
        tables: dict[str, int] = {}
        for m in landed:
            tables[str(m["table"])] = max(tables.get(str(m["table"]), 0), int(m["last_pos"]))
        with self.transaction() as con:
            self._raise_positions(con, source, tables, max(int(m["ordinal"]) for m in landed))

    def _raise_positions(
        self, con: sqlite3.Connection, source: str, tables: dict[str, int], ordinal: int
    ) -> None:
        for table, pos in tables.items():
            con.execute(
                "INSERT INTO tables (source, tbl, sealed_pos) VALUES (?, ?, ?) ON CONFLICT "
                "(source, tbl) DO UPDATE SET sealed_pos = max(sealed_pos, excluded.sealed_pos)",
                (source, table, pos),
            )
        con.execute(
            "INSERT INTO sources (source, durable_pos, next_ordinal) VALUES (?, 0, ?) "
            "ON CONFLICT (source) DO UPDATE SET "
            "next_ordinal = max(next_ordinal, excluded.next_ordinal)",
            (source, ordinal + 1),
        )

    # -- drop_oldest drops, told to the lake in the next manifest ------------
    def record_drop(self, rec: FileRecord, now_ms: int) -> None:
        """The drops a dropped file's manifest told are to be told again by a later one."""
        with self.transaction() as con:
            con.execute("UPDATE drops SET reported_in = NULL WHERE reported_in = ?", (rec.id,))
            con.execute(
                "INSERT OR IGNORE INTO drops (source, ordinal, id, tbl, first_pos, last_pos,"
                " rows, dropped_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.source,
                    rec.ordinal,
                    rec.id,
                    rec.table,
                    rec.first_pos,
                    rec.last_pos,
                    rec.rows,
                    now_ms,
                ),
            )

    def drops_to_report(self, source: str, file_id: str) -> list[dict[str, Any]]:
        """The source's drops not yet in a manifest, and those already in ``file_id``'s
        (a rebuilt manifest says the same)."""
        rows = self.con.execute(
            "SELECT ordinal, id, tbl, first_pos, last_pos, rows FROM drops WHERE source = ?"
            " AND (reported_in IS NULL OR reported_in = ?) ORDER BY ordinal",
            (source, file_id),
        ).fetchall()
        names = ("ordinal", "id", "table", "first_pos", "last_pos", "rows")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def drops_reported(self, source: str, ordinals: list[int], file_id: str) -> None:
        if not ordinals:
            return
        with self.transaction() as con:
            con.executemany(
                "UPDATE drops SET reported_in = ? WHERE source = ? AND ordinal = ?"
                " AND reported_in IS NULL",
                [(file_id, source, o) for o in ordinals],
            )

    def add_counter(self, name: str, delta: int) -> None:
        self.con.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, delta),
        )

    def counters(self) -> dict[str, int]:
        return {n: int(v) for n, v in self.con.execute("SELECT name, value FROM counters")}

    def set_note(self, name: str, value: str | None, now_ms: int) -> None:
        """Status notes such as the last error of a source; None clears it."""
        if value is None:
            self.con.execute("DELETE FROM notes WHERE name = ?", (name,))
            return
        self.con.execute(
            "INSERT INTO notes (name, value, updated_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_ms = excluded.updated_ms WHERE value != excluded.value",
            (name, value, now_ms),
        )

    def notes(self) -> dict[str, tuple[str, int]]:
        rows = self.con.execute("SELECT name, value, updated_ms FROM notes").fetchall()
        return {n: (v, int(t)) for n, v, t in rows}


def _insert_ready(con: sqlite3.Connection, rec: FileRecord) -> None:
    """A sealed file into the ledger, ready to ship."""
    con.execute(
        f"INSERT INTO files ({_FILE_COLUMNS}) VALUES ({', '.join('?' * 15)})",
        (
            rec.id,
            rec.source,
            rec.table,
            rec.ordinal,
            rec.first_pos,
            rec.last_pos,
            rec.rows,
            rec.bytes,
            rec.sha256,
            rec.relpath,
            rec.manifest_relpath,
            rec.created_ms,
            READY,
            None,
            None,
        ),
    )


def snapshot_request(source: str, table: str) -> str:
    """The note by which `edge-agent snapshot` asks for a timestamp table's re-read."""
    return f"snapshot.request.{source}/{table}"
