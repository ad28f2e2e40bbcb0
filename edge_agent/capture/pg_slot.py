"""The server side of log-based capture: checks, the publication, the slot, heartbeats.

A logical replication slot keeps the write-ahead log from its confirmed
position on; the agent reads it with ``pg_logical_slot_peek_binary_changes``
(never ``get_changes``: that confirms before the data is safe) and moves it
with ``pg_replication_slot_advance`` only past transactions that are in
sealed, recorded files. A slot is created over a replication connection so
that it exports a snapshot: the initial snapshot then reads exactly the rows
the slot's first change follows. A forgotten slot keeps WAL forever, so
``drop`` exists and ``status`` reports the slot's lag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from edge_agent.errors import SourceError
from edge_agent.sources.postgres import Con, connect, execute, map_error, split_name

MIN_VERSION = 140000  # pgoutput's "messages" option (heartbeats) came with 14
HEARTBEAT_PREFIX = "edge_agent.heartbeat"


@dataclass(frozen=True)
class SlotState:
    confirmed: int  # confirmed_flush_lsn as a number
    active_pid: int | None
    lag_bytes: int  # WAL the slot holds back: current WAL position - confirmed
    wal_status: str  # reserved | extended | unreserved | lost
    database: str
    plugin: str


def lsn(text: str) -> int:
    """``16/B374D848`` as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


_STATE = """
SELECT confirmed_flush_lsn::text, active_pid,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
       coalesce(wal_status, ''), coalesce(database, ''), plugin
FROM pg_replication_slots WHERE slot_name = %s AND slot_type = 'logical'"""


class Slot:
    def __init__(self, con: Con, where: str, name: str, publication: str) -> None:
        self.con, self.where, self.name, self.publication = con, where, name, publication
        self.exporter: Con | None = None  # the replication connection that created the slot

    def _fail(self, what: str, fix: str) -> SourceError:
        return SourceError(f"postgres {self.where!r}: {what}: {fix}")

    def check_server(self) -> None:
        """wal_level, version and the role's right to replicate, each with its fix."""
        level, version, can = execute(
            self.con,
            "SELECT current_setting('wal_level'), current_setting('server_version_num')::int,"
            " (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)",
        )[0]
        if level != "logical":
            raise self._fail(
                f"wal_level is {level!r}, logical mode needs 'logical'",
                "set wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level ="
                " logical) and restart PostgreSQL; a reload is not enough",
            )
        if int(str(version)) < MIN_VERSION:
            raise self._fail(
                f"server version {version} is older than 14",
                'use mode = "trigger", or upgrade PostgreSQL',
            )
        if not can:
            raise self._fail(
                "the role may not replicate",
                "as a superuser, run ALTER ROLE <agent role> REPLICATION",
            )

    def state(self) -> SlotState | None:
        found = execute(self.con, _STATE, (self.name,))
        if not found:
            return None
        confirmed, pid, lag, status, database, plugin = found[0]
        return SlotState(
            lsn(str(confirmed)),
            int(str(pid)) if pid is not None else None,
            int(str(lag or 0)),
            str(status),
            str(database),
            str(plugin),
        )

    def check_owned(self, state: SlotState, dbname: str) -> None:
        if state.plugin != "pgoutput" or state.database != dbname:
            raise self._fail(
                f"slot {self.name!r} exists for plugin {state.plugin!r} in database "
                f"{state.database!r}",
                "give this source its own slot name (sources.slot)",
            )
        if state.active_pid is not None and state.active_pid != self.con.info.backend_pid:
            raise self._fail(
                f"slot {self.name!r} is in use by process {state.active_pid}",
                "stop the other consumer, or give this source its own slot (sources.slot)",
            )
        if state.wal_status == "lost":
            raise self._fail(
                f"slot {self.name!r} lost WAL it needed (max_slot_wal_keep_size)",
                "run `edge-agent triggers uninstall --drop-log` for this source, then start "
                "again: the tables are snapshotted anew",
            )

    def ensure_publication(self, tables: list[str]) -> list[str]:
        """Create the publication for ``tables`` when missing; add the tables it lacks.
        Returns the tables added. Needs table ownership (or an owner runs the SQL)."""
        exists = execute(
            self.con, "SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,)
        )
        have = {
            f"{r[0]}.{r[1]}"
            for r in execute(
                self.con,
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (self.publication,),
            )
        }
        missing = [t for t in tables if t not in have]
        if exists and not missing:
            return []
        names = sql.SQL(", ").join(
            sql.Identifier(*split_name(t)) for t in (missing if exists else tables)
        )
        verb = (
            "ALTER PUBLICATION {} ADD TABLE {}" if exists else "CREATE PUBLICATION {} FOR TABLE {}"
        )
        statement = sql.SQL(verb).format(sql.Identifier(self.publication), names)
        try:
            self.con.execute(statement)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise self._fail(
                f"cannot {'extend' if exists else 'create'} publication {self.publication!r}"
                f" ({exc.diag.message_primary})",
                f"as the tables' owner, run: {statement.as_string(self.con)}",
            ) from exc
        except psycopg.Error as exc:
            raise map_error(exc, self.where) from exc
        return missing

    def create(self, dsn: str, password: str | None, timeout: float) -> tuple[int, str]:
        """Create the slot over a replication connection; returns its consistent point
        and the exported snapshot's name. The snapshot lives while the returned
        connection (``self.exporter``) stays idle: import it, then ``release``."""
        self.exporter = connect(_replication_dsn(dsn), password, timeout)
        statement = f"CREATE_REPLICATION_SLOT \"{self.name}\" LOGICAL pgoutput (SNAPSHOT 'export')"
        res = self.exporter.pgconn.exec_(statement.encode())
        if res.status != psycopg.pq.ExecStatus.TUPLES_OK:
            message = (res.error_message or b"").decode(errors="replace").strip()
            self.release()
            if "already exists" in message:
                raise self._fail(f"slot {self.name!r} appeared meanwhile", "start again")
            raise self._fail(f"cannot create slot {self.name!r} ({message})", "see the server log")
        point = (res.get_value(0, 1) or b"0/0").decode()
        snapshot = (res.get_value(0, 2) or b"").decode()
        return lsn(point), snapshot

    def release(self) -> None:
        if self.exporter is not None:
            self.exporter.close()
        self.exporter = None

    def advance(self, to: int) -> None:
        """Confirm everything before ``to`` (a transaction's end): the server may recycle
        its WAL. Never past what is durable (the caller's rule)."""
        execute(
            self.con,
            "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
            (self.name, lsn_text(to)),
        )

    def heartbeat(self) -> None:
        """A transactional message in the log: on a database without writes of its own the
        slot still gets a transaction to confirm, so its WAL is recycled."""
        execute(self.con, "SELECT pg_logical_emit_message(true, %s, '')", (HEARTBEAT_PREFIX,))

    def drop(self) -> bool:
        found = execute(
            self.con,
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (self.name,),
        )
        return bool(found)

    def drop_publication(self) -> None:
        drop = sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(self.publication))
        execute(self.con, drop.as_string(self.con))

    def peek_sql(self, changes: int) -> sql.Composed:
        """The changes after the confirmed position, whole transactions up to ``changes``."""
        return sql.SQL(
            "SELECT data FROM pg_logical_slot_peek_binary_changes({}, NULL, {},"
            " 'proto_version', '1', 'publication_names', {}, 'messages', 'true')"
        ).format(sql.Literal(self.name), sql.Literal(changes), sql.Literal(self.publication))


def lsn_text(value: int) -> str:
    """A number as PostgreSQL writes an LSN (``16/B374D848``)."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _replication_dsn(dsn: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, replication="database")


def table_names(tables: Sequence[str]) -> list[str]:
    """Configured names as pg_publication_tables writes them (``schema.table``)."""
    return [".".join(split_name(t)) for t in tables]
