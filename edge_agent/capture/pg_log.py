"""Trigger capture objects for PostgreSQL: the ``edge_cdc`` schema, install, verify, uninstall.

One generic PL/pgSQL row trigger function writes every change of every
captured table into one change log, ``edge_cdc.log``, with a sequence number,
the writing transaction's id (``xid8``) and the row as ``to_jsonb``. jsonb
keeps the application safe from DDL: a column added or dropped never makes
the trigger (and so the application's write) fail; the agent notices the
change and regenerates the capture (a new capture id, a snapshot).

Each capture freezes its column list as a composite type
``edge_cdc.shape_<tid>``: old log rows decode with the columns they were
written with, in their exact types (``jsonb_populate_record``).

Reading in commit order (sequence order is not commit order) lives in
capture/pg_batches.py; snapshots in capture/pg_snapshot.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from edge_agent.capture.triggers import Problem
from edge_agent.errors import SourceError
from edge_agent.records import TableSpec
from edge_agent.sources.postgres import Con, composite_spec, map_error, regclass, table_spec

SCHEMA = "edge_cdc"
VERSION = 1
ROW_TRIGGER = "edge_cdc_capture"
TRUNCATE_TRIGGER = "edge_cdc_truncate"

FUNCTION = f"""
CREATE OR REPLACE FUNCTION edge_cdc.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
-- edge-agent capture trigger, version {VERSION}; arguments: capture id, 'before' or
-- 'no_before' (keep the old row of an update), key columns
DECLARE
    ms bigint := (extract(epoch FROM now()) * 1000)::bigint;
    capture int := TG_ARGV[0]::int;
    new_row jsonb;
    old_row jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO edge_cdc.log (tid, op, ts_ms, data) VALUES (capture, 'c', ms, to_jsonb(NEW));
    ELSIF TG_OP = 'UPDATE' THEN
        new_row := to_jsonb(NEW);
        old_row := to_jsonb(OLD);
        -- An update that moves the key is a delete of the old key plus the new row.
        FOR i IN 2 .. TG_NARGS - 1 LOOP
            IF old_row -> TG_ARGV[i] IS DISTINCT FROM new_row -> TG_ARGV[i] THEN
                INSERT INTO edge_cdc.log (tid, op, ts_ms, data) VALUES (capture, 'd', ms, old_row);
                EXIT;
            END IF;
        END LOOP;
        INSERT INTO edge_cdc.log (tid, op, ts_ms, data, old)
        VALUES (capture, 'u', ms, new_row, CASE WHEN TG_ARGV[1] = 'before' THEN old_row END);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO edge_cdc.log (tid, op, ts_ms, data) VALUES (capture, 'd', ms, to_jsonb(OLD));
    ELSE
        INSERT INTO edge_cdc.log (tid, op, ts_ms, data) VALUES (capture, 't', ms, NULL);
    END IF;
    RETURN NULL;
END
$fn$"""

TABLES = [
    "CREATE SCHEMA IF NOT EXISTS edge_cdc",
    "CREATE TABLE IF NOT EXISTS edge_cdc.captures (tid serial PRIMARY KEY, name text NOT NULL,"
    " relid oid NOT NULL, key text[] NOT NULL, version int NOT NULL,"
    " installed_ms bigint NOT NULL, active boolean NOT NULL)",
    "CREATE TABLE IF NOT EXISTS edge_cdc.log (seq bigserial PRIMARY KEY,"
    ' txid xid8 NOT NULL DEFAULT pg_current_xact_id(), tid int NOT NULL, op "char" NOT NULL,'
    " ts_ms bigint NOT NULL, data jsonb, old jsonb)",
    "CREATE INDEX IF NOT EXISTS log_txid ON edge_cdc.log (txid)",
    # A tick is a snapshot boundary: the changes of the transactions that committed
    # between two ticks form one batch, positions base+1 .. base+rows (pg_batches.py).
    "CREATE TABLE IF NOT EXISTS edge_cdc.ticks (id bigserial PRIMARY KEY,"
    " snap pg_snapshot NOT NULL, base bigint NOT NULL, rows bigint NOT NULL,"
    " first_seq bigint NOT NULL DEFAULT 0, last_seq bigint NOT NULL DEFAULT 0,"
    " made timestamptz NOT NULL DEFAULT now())",
    # Two readers of one log would tick the same batch twice: refused (pg_trigger.py
    # takes an advisory lock); this makes a second tick at one base fail, not diverge.
    "CREATE UNIQUE INDEX IF NOT EXISTS ticks_base ON edge_cdc.ticks (base) WHERE rows > 0",
    "CREATE TABLE IF NOT EXISTS edge_cdc.snapshots (tid int PRIMARY KEY, name text NOT NULL,"
    " last_key jsonb, rows_done bigint NOT NULL DEFAULT 0, rows_total bigint NOT NULL,"
    " started_ms bigint NOT NULL, done_ms bigint)",
]
Params = Sequence[Any] | Mapping[str, Any] | None
Cursor = psycopg.Cursor[tuple[Any, ...]]
_FIX = "run `edge-agent triggers install` (the daemon does it on start)"


@dataclass(frozen=True)
class PgCapture:
    """The triggers of one table, generated for one column list (its shape type)."""

    tid: int
    spec: TableSpec
    relid: int

    @property
    def table(self) -> str:
        return self.spec.name

    @property
    def shape_type(self) -> str:
        return f"{SCHEMA}.shape_{self.tid}"


def same_columns(a: TableSpec, b: TableSpec) -> bool:
    """Whether two descriptions capture the same columns (nullability aside)."""

    def cols(spec: TableSpec) -> list[tuple[str, str, int]]:
        return [(c.name, c.source_type, c.pk) for c in spec.columns]

    return cols(a) == cols(b)


def row_trigger_args(tid: int, before: bool, key: Iterable[str]) -> tuple[str, ...]:
    return (str(tid), "before" if before else "no_before", *key)


def tgargs(args: Iterable[str]) -> bytes:
    """pg_trigger.tgargs as a trigger is created with ``args`` (verify compares them)."""
    return b"".join(a.encode() + b"\0" for a in args)


class PgChangeLog:
    """The capture objects inside one PostgreSQL database."""

    def __init__(self, con: Con, where: str, before: bool = False) -> None:
        self.con = con
        self.where = where
        self.before = before  # row triggers keep the old row of an update
        self.actions: dict[str, str] = {}

    def run(self, query: str | sql.Composed, params: Params = None) -> Cursor:
        try:
            return self.con.execute(query, params)
        except psycopg.Error as exc:
            raise map_error(exc, self.where) from exc

    def exists(self) -> bool:
        row = self.run("SELECT to_regclass('edge_cdc.log') IS NOT NULL").fetchone()
        return bool(row and row[0])

    # -- reading the catalog -------------------------------------------------
    def captures(self, active_only: bool = False) -> dict[int, PgCapture]:
        if not self.exists():
            return {}
        where = " WHERE active" if active_only else ""
        rows = self.run(f"SELECT tid, name, relid, key FROM edge_cdc.captures{where}").fetchall()
        found: dict[int, PgCapture] = {}
        for tid, name, relid, key in rows:
            spec = composite_spec(self.con, f"{SCHEMA}.shape_{tid}", str(name), list(key))
            found[int(str(tid))] = PgCapture(int(str(tid)), spec, int(str(relid)))
        return found

    def active(self) -> dict[str, PgCapture]:
        return {c.table: c for c in self.captures(active_only=True).values()}

    def relid(self, table: str) -> int:
        row = self.run("SELECT to_regclass(%s)::oid", (regclass(table),)).fetchone()
        return int(str(row[0])) if row and row[0] is not None else 0

    def _triggers(self, cap: PgCapture) -> dict[str, tuple[str, bytes]]:
        """The capture's triggers: name -> (pg_trigger.tgenabled, tgargs)."""
        rows = self.run(
            "SELECT tgname, tgenabled::text, tgargs FROM pg_trigger WHERE tgrelid = %s"
            " AND tgname IN (%s, %s)",
            (cap.relid, ROW_TRIGGER, TRUNCATE_TRIGGER),
        ).fetchall()
        return {str(n): (str(on), bytes(args)) for n, on, args in rows}

    def _triggers_off(self, cap: PgCapture) -> bool:
        """Missing or disabled: changes were made that the log never saw."""
        found = self._triggers(cap)
        return len(found) < 2 or any(on == "D" for on, _ in found.values())

    def _triggers_match(self, cap: PgCapture) -> bool:
        found = self._triggers(cap)
        return (
            found
            == {
                ROW_TRIGGER: ("A", tgargs(row_trigger_args(cap.tid, self.before, cap.spec.key))),
                TRUNCATE_TRIGGER: ("A", tgargs([str(cap.tid)])),
            }
            and self._function_current()
        )

    def _function_current(self) -> bool:
        row = self.run(
            "SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure('edge_cdc.capture()')"
        ).fetchone()
        return bool(row) and f"version {VERSION};" in str(row[0])  # type: ignore[index]

    # -- install, verify, uninstall ---------------------------------------
    def ensure(self, seed: int) -> None:
        """The schema, its tables and a first tick (its own transaction, taken before any
        change is logged: the first batch is everything committed after it)."""
        with self.con.transaction():
            for ddl in TABLES:
                self.run(ddl)
            self.run(FUNCTION)
        self.run(
            "INSERT INTO edge_cdc.ticks (snap, base, rows) SELECT pg_current_snapshot(), %s, 0"
            " WHERE NOT EXISTS (SELECT FROM edge_cdc.ticks)",
            (seed,),
        )

    def install(
        self,
        tables: Iterable[str],
        seed: int,
        now_ms: int,
        snapshot_new: bool = True,
        captured_before: Iterable[str] = (),
    ) -> list[str]:
        """Create or regenerate captures in one transaction; returns the tables changed.
        The actions per table (new / gap / changed) are those of SQLite's ChangeLog."""
        self.actions = {}
        self.ensure(seed)
        with self.con.transaction():
            self.run("LOCK TABLE edge_cdc.captures IN EXCLUSIVE MODE")
            active = self.active()
            known = {c.table for c in self.captures().values()} | set(captured_before)
            for table in tables:
                spec = table_spec(self.con, table)
                current = active.get(spec.name)
                action = self._plan(current, spec, spec.name in known)
                if action is not None:
                    self._apply(action, current, spec, now_ms, snapshot_new)
                    self.actions[spec.name] = action
        return list(self.actions)

    def _plan(self, current: PgCapture | None, spec: TableSpec, known: bool) -> str | None:
        if current is None:
            return "gap" if known else "new"
        if current.relid != self.relid(spec.name) or self._triggers_off(current):
            return "gap"  # dropped and created again, triggers removed or disabled
        if not same_columns(current.spec, spec) or not self._triggers_match(current):
            return "changed"
        return None

    def _apply(
        self,
        action: str,
        current: PgCapture | None,
        spec: TableSpec,
        now_ms: int,
        snapshot_new: bool,
    ) -> None:
        from edge_agent.capture import pg_snapshot

        if current is not None:
            self._retire(current)
        new = self._create(spec, now_ms)
        if action == "gap":
            self.run(
                "INSERT INTO edge_cdc.log (tid, op, ts_ms) VALUES (%s, 't', %s)", (new.tid, now_ms)
            )
        if action != "new" or snapshot_new:
            pg_snapshot.start(self, new, now_ms)

    def _create(self, spec: TableSpec, now_ms: int) -> PgCapture:
        relid = self.relid(spec.name)
        row = self.run(
            "INSERT INTO edge_cdc.captures (name, relid, key, version, installed_ms, active)"
            " VALUES (%s, %s, %s, %s, %s, true) RETURNING tid",
            (spec.name, relid, list(spec.key), VERSION, now_ms),
        ).fetchone()
        tid = int(str(row[0])) if row else 0
        cap = PgCapture(tid, spec, relid)
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.source_type))
            for c in spec.columns
        )
        self.run(
            sql.SQL("CREATE TYPE {} AS ({})").format(
                sql.Identifier(SCHEMA, f"shape_{tid}"), columns
            )
        )
        table = sql.SQL(regclass(spec.name))
        key_args = sql.SQL(", ").join(
            sql.Literal(a) for a in row_trigger_args(tid, self.before, spec.key)
        )
        self.run(
            sql.SQL(
                "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW "
                "EXECUTE FUNCTION edge_cdc.capture({})"
            ).format(sql.Identifier(ROW_TRIGGER), table, key_args)
        )
        self.run(
            sql.SQL(
                "CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT "
                "EXECUTE FUNCTION edge_cdc.capture({})"
            ).format(sql.Identifier(TRUNCATE_TRIGGER), table, sql.Literal(str(tid)))
        )
        # ALWAYS: they fire for writes made with session_replication_role = replica too
        # (a logical replication subscriber's apply worker, pg_restore).
        for name in (ROW_TRIGGER, TRUNCATE_TRIGGER):
            self.run(
                sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(
                    table, sql.Identifier(name)
                )
            )
        return cap

    def _retire(self, cap: PgCapture) -> None:
        if self.relid(cap.table) == cap.relid:
            for name in (ROW_TRIGGER, TRUNCATE_TRIGGER):
                self.run(
                    sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                        sql.Identifier(name), sql.SQL(regclass(cap.table))
                    )
                )
        self.run("UPDATE edge_cdc.captures SET active = false WHERE tid = %s", (cap.tid,))
        # Its snapshot (if one runs) would go on with the old columns and key.
        self.run("DELETE FROM edge_cdc.snapshots WHERE tid = %s", (cap.tid,))

    def verify(self, tables: Iterable[str]) -> list[Problem]:
        problems: list[Problem] = []
        active = self.active()
        for table in tables:
            try:
                spec = table_spec(self.con, table)
            except SourceError as exc:
                problems.append(Problem(table, str(exc), "fix sources.tables"))
                continue
            current = active.get(spec.name)
            if current is None:
                problems.append(Problem(spec.name, "no capture triggers installed", _FIX))
            elif current.relid != self.relid(spec.name):
                problems.append(Problem(spec.name, "the table was dropped and created again", _FIX))
            elif self._triggers_off(current):
                problems.append(Problem(spec.name, "capture triggers missing or disabled", _FIX))
            elif not same_columns(current.spec, spec):
                problems.append(
                    Problem(spec.name, "columns changed since the triggers were made", _FIX)
                )
            elif not self._triggers_match(current):
                problems.append(Problem(spec.name, "capture triggers missing or altered", _FIX))
        return problems

    def check_table(self, table: str) -> None:
        table_spec(self.con, table)

    def pending(self, after: int) -> int:
        from edge_agent.capture.pg_batches import Batches

        return Batches(self, after).backlog(after)

    def uninstall_all(self, drop_log: bool) -> list[str]:
        if not self.exists():
            return []
        removed: list[str] = []
        with self.con.transaction():
            for table, cap in self.active().items():
                self._retire(cap)
                removed.append(table)
            if drop_log:
                self.run("DROP SCHEMA edge_cdc CASCADE")
        return removed
