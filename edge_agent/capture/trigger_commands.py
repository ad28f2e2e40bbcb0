"""`edge-agent triggers install|verify|uninstall` for any database's change log.

The SQLite and PostgreSQL change logs offer the same operations
(``TriggerLog``); the command's rules and messages live here once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge_agent.capture.registry import TriggerRequest
from edge_agent.config_sources import SourceConfig
from edge_agent.errors import SourceError


class TriggerLog(Protocol):
    def check_table(self, table: str) -> None:
        """Raise the source's error naming what is wrong with ``table``."""
        ...

    def verify(self, tables: Iterable[str]) -> Sequence[object]: ...

    def install(
        self,
        tables: Iterable[str],
        seed: int,
        now_ms: int,
        snapshot_new: bool = True,
        captured_before: Iterable[str] = (),
    ) -> list[str]: ...

    def pending(self, after: int) -> int: ...

    def uninstall_all(self, drop_log: bool) -> list[str]: ...

    @property
    def actions(self) -> dict[str, str]:
        """What the last install did per table."""
        ...


def valid_tables(log: TriggerLog, tables: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """The tables that can be captured, and why each other one cannot (the daemon
    captures the first and reports the second)."""
    valid: list[str] = []
    errors: dict[str, str] = {}
    for table in tables:
        try:
            log.check_table(table)
            valid.append(table)
        except SourceError as exc:
            errors[table] = str(exc)
    return valid, errors


@dataclass(frozen=True)
class Synced:
    changed: list[str]  # tables whose capture was created or regenerated
    table_errors: dict[str, str]  # tables that cannot be captured, with why
    actions: dict[str, str]  # what was done per table (new / gap / changed)


def sync_capture(
    log: TriggerLog, source: SourceConfig, seed: int, now_ms: int, captured_before: set[str]
) -> Synced:
    """Install or regenerate the triggers of every configured table that can be captured
    (the daemon's start and its schema-change handling)."""
    valid, errors = valid_tables(log, source.tables)
    if not valid:
        return Synced([], errors, {})
    changed = log.install(
        valid,
        seed,
        now_ms,
        snapshot_new=source.snapshot == "initial",
        captured_before=captured_before,
    )
    return Synced(changed, errors, dict(log.actions))


def trigger_action(
    log: TriggerLog, source: SourceConfig, req: TriggerRequest
) -> tuple[list[str], bool]:
    """Carry out one trigger command; returns report lines and whether it succeeded."""
    tables = source.tables
    if req.action == "verify":
        problems = log.verify(tables)
        return (
            [str(p) for p in problems] or [f"ok: {len(tables)} table(s) captured"],
            not problems,
        )
    if req.action == "install":
        for table in tables:
            log.check_table(table)  # refuse the whole install on an unknown table
        changed = log.install(
            tables,
            req.durable,
            req.now_ms,
            snapshot_new=source.snapshot == "initial",
            captured_before=set(req.captured),
        )
        return [f"installed: {', '.join(changed) or 'nothing to change'}"], True
    waiting = log.pending(req.durable)
    if req.drop_log and waiting and not req.force:
        return [
            f"refused: {waiting} change(s) are still waiting in the change log; run "
            "`edge-agent flush` first, or add --force to drop them"
        ], False
    removed = log.uninstall_all(req.drop_log)
    return [
        f"uninstalled: {', '.join(removed) or 'nothing installed'}"
        + (" (change log dropped)" if req.drop_log else "")
    ], True
