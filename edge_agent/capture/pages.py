"""What a change-log capture hands the pipeline, whatever the database.

A page is a run of consecutive source positions, grouped by table. Each row
is ``(pos, tx, op, ts_ms, value...)`` in the columns of its group's schema:
``pos`` is the change's position in the source (unique, increasing in commit
order), ``tx`` the transaction id where the database has one (written to
``_tx`` when the schema carries it), ``op`` c/u/d/r/t and ``ts_ms`` the change
time in milliseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.bronze.schema import BatchSchema
from edge_agent.config_sources import SourceConfig


@dataclass
class TableChanges:
    """Consecutive-position rows of one table (one capture of it), in position order."""

    schema: BatchSchema
    rows: list[tuple[object, ...]] = field(default_factory=list)


@dataclass
class Page:
    groups: list[TableChanges]
    last_seq: int  # the last position the page covers (skipped rows included)
    rows_read: int
    ignored: int = 0


class LogCapture(Protocol):
    """A source whose capture objects write a change log: SQLite or PostgreSQL triggers.

    Positions are the source's own; the pipeline keeps which are durable and
    calls ``prune`` only up to those (ARCHITECTURE invariant 1).
    """

    cfg: SourceConfig
    table_errors: dict[str, str]
    actions: dict[str, str]

    @property
    def name(self) -> str: ...

    def schema_changed(self) -> bool:
        """Whether a captured table's columns (or its capture objects) changed. Cheap."""
        ...

    def sync_triggers(self, seed: int, now_ms: int) -> list[str]:
        """Install or regenerate capture objects; ``seed`` is the durable position, so a
        new change log starts above it. Returns the tables whose capture changed."""
        ...

    def read(self, after: int, max_bytes: int, sealed: dict[str, int]) -> Page:
        """The next page after position ``after``; rows of a table at or below
        ``sealed[table]`` are skipped (already in a sealed file). Holds no transaction."""
        ...

    def snapshot_step(self, now_ms: int) -> int:
        """Copy one page of a pending snapshot into the change log; 0 when none is due."""
        ...

    def prune(self, durable: int) -> int:
        """Delete consumed changes at or below ``durable`` (in bounded chunks)."""
        ...

    def close(self) -> None: ...
