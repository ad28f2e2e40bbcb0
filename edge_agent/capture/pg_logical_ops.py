"""The commands' view of a logical source: slot lag for `status`, `triggers` for the slot.

``edge-agent triggers`` is the place an operator manages capture objects; in
logical mode those are the publication and the replication slot:

- ``install``: checks the server (wal_level, the role) and creates or extends
  the publication. The slot itself is made by the agent's first start, so that
  the initial snapshot reads exactly the state the slot's stream follows.
- ``verify``: the same checks, read-only, and the slot's state and lag.
- ``uninstall``: drops the slot (a forgotten slot keeps WAL until the server's
  disk is full); with ``--drop-log`` the publication too. The next start finds
  no slot: a gap it says, then it snapshots every table again.
"""

from __future__ import annotations

from typing import Any

from edge_agent.capture.pg_slot import Slot, SlotState, lsn_text, table_names
from edge_agent.capture.registry import Backlog, TriggerRequest
from edge_agent.config_sources import SourceConfig
from edge_agent.errors import EdgeAgentError
from edge_agent.sources.postgres import Con, connect, table_problems
from edge_agent.units import format_size


def _open(source: SourceConfig) -> tuple[Con, Slot]:
    con = connect(source.dsn, source.password or None, source.connect_timeout)
    return con, Slot(con, source.dsn, source.slot, source.publication)


def slot_details(source: SourceConfig, state: SlotState | None) -> dict[str, Any]:
    """What `status` shows about the slot, with a warning above ``max_slot_lag``."""
    if state is None:
        return {"slot": source.slot, "slot_exists": False}
    details: dict[str, Any] = {
        "slot": source.slot,
        "slot_exists": True,
        "slot_confirmed_lsn": lsn_text(state.confirmed),
        "slot_lag_bytes": state.lag_bytes,
        "slot_active_pid": state.active_pid,
        "slot_wal_status": state.wal_status,
    }
    if state.lag_bytes > source.max_slot_lag:
        details["slot_warning"] = lag_warning(source, state.lag_bytes)
    return details


def lag_warning(source: SourceConfig, lag: int) -> str:
    return (
        f"slot {source.slot!r} holds {format_size(lag)} of WAL, above max_slot_lag "
        f"{format_size(source.max_slot_lag)}: capture is behind or blocked (spool full?); "
        "the server keeps that WAL on its disk until the agent confirms it"
    )


def backlog(source: SourceConfig) -> Backlog:
    try:
        con, slot = _open(source)
    except EdgeAgentError as exc:
        return Backlog(f"unreachable: {exc}")
    try:
        details = slot_details(source, slot.state())
        return Backlog("not counted in logical mode (see slot_lag_bytes)", {}, details)
    except EdgeAgentError as exc:
        return Backlog(f"unreadable: {exc}")
    finally:
        con.close()


def check(source: SourceConfig) -> list[str]:
    try:
        con, slot = _open(source)
    except EdgeAgentError as exc:
        return [f"sources[{source.name}]: {exc}"]
    problems: list[str] = []
    try:
        slot.check_server()
    except EdgeAgentError as exc:
        problems.append(f"sources[{source.name}]: {exc}")
    try:
        return problems + table_problems(con, source.name, source.tables)
    finally:
        con.close()


def triggers(source: SourceConfig, req: TriggerRequest) -> tuple[list[str], bool]:
    con, slot = _open(source)
    try:
        if req.action == "uninstall":
            return _uninstall(source, slot, req.drop_log)
        slot.check_server()
        lines: list[str] = []
        if req.action == "install":
            added = slot.ensure_publication(table_names(source.tables))
            lines.append(
                f"publication {source.publication!r}: "
                + (f"added {', '.join(added)}" if added else "has every table")
            )
        state = slot.state()
        lines.append(_slot_line(source, state))
        return lines, True
    finally:
        con.close()


def _slot_line(source: SourceConfig, state: SlotState | None) -> str:
    if state is None:
        return f"slot {source.slot!r}: not created yet (the agent creates it when it starts)"
    return (
        f"slot {source.slot!r}: confirmed {lsn_text(state.confirmed)}, "
        f"{format_size(state.lag_bytes)} of WAL held"
        + (f", in use by process {state.active_pid}" if state.active_pid else "")
    )


def _uninstall(source: SourceConfig, slot: Slot, drop_publication: bool) -> tuple[list[str], bool]:
    state = slot.state()
    lines = [
        f"slot {source.slot!r}: dropped ({format_size(state.lag_bytes)} of WAL released; "
        "changes not yet captured are gone: the next start snapshots every table again)"
        if slot.drop() and state is not None
        else f"slot {source.slot!r}: none"
    ]
    if drop_publication:
        slot.drop_publication()
        lines.append(f"publication {source.publication!r}: dropped")
    return lines, True
