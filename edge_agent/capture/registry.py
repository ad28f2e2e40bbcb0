"""What each kind of source offers the commands, found by the source's ``kind``.

The runtime and the CLI's commands (`status`, `triggers`, `snapshot`) reach a
database only through these operations, so none of them imports a driver or
knows which database a source is. The pipelines themselves are found by
``(kind, mode)`` in runtime/opening.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.config_sources import SourceConfig
from edge_agent.errors import ConfigError


@dataclass(frozen=True)
class TriggerRequest:
    """``edge-agent triggers ACTION`` for one source, with the agent's own state."""

    action: str  # install | verify | uninstall
    durable: int  # the source's durable position: the seed of a new change log
    now_ms: int
    drop_log: bool = False
    force: bool = False
    captured: frozenset[str] = frozenset()  # tables with sealed files (re-snapshot on reinstall)


@dataclass(frozen=True)
class Backlog:
    """What a source's database says about capture there, for `status`."""

    waiting: int | str  # changes in the change log after the durable position, or why unknown
    snapshots: dict[str, Any] = field(default_factory=dict)  # progress by table
    details: dict[str, Any] = field(default_factory=dict)  # database-specific, e.g. log size


class SourceOps(Protocol):
    def backlog(self, source: SourceConfig, after: int) -> Backlog:
        """Changes waiting in the source's change log after ``after`` (or why that cannot
        be read), the progress of its snapshots by table and database-specific details.
        Read-only; never raises."""
        ...

    def triggers(self, source: SourceConfig, req: TriggerRequest) -> tuple[list[str], bool]:
        """Carry out a trigger command; returns report lines and whether it succeeded.
        Idempotent: installing twice changes nothing the second time."""
        ...

    def check(self, source: SourceConfig) -> list[str]:
        """What ``config check`` can find wrong on this device (a table that does not
        exist, a cursor column that is missing...), each a message with its fix. Read-only."""
        ...

    def request_snapshot(
        self, source: SourceConfig, tables: list[str], now_ms: int
    ) -> dict[str, str]:
        """Ask for a re-capture of ``tables``' current rows (op "r"); the pipeline does it.
        Returns the tables that cannot be snapshotted now, each with why and the fix."""
        ...


_KINDS: dict[str, Callable[[], SourceOps]] = {}


def register(kind: str, factory: Callable[[], SourceOps]) -> None:
    _KINDS[kind] = factory


def ops_for(source: SourceConfig) -> SourceOps:
    _load_builtin()
    factory = _KINDS.get(source.kind)
    if factory is None:
        raise ConfigError(
            f"sources.{source.name}.kind", source.kind, f"use one of {sorted(_KINDS)}"
        )
    return factory()


def _load_builtin() -> None:
    if "sqlite" not in _KINDS:
        from edge_agent.capture import sqlite_ops

        register("sqlite", sqlite_ops.SqliteOps)
    if "postgres" not in _KINDS:
        register("postgres", _postgres_ops)


def _postgres_ops() -> SourceOps:
    from edge_agent.capture import pg_ops  # psycopg only when a source needs it

    return pg_ops.PostgresOps()
