"""The typed records stages hand over: a neutral table description.

Each source module (``sources/``) describes its tables with these, whatever
the database: the bronze stage maps only the Arrow types named here and never
sees a database's own type system. ``source_type`` keeps the database's own
name of the type (SQLite's declared type, PostgreSQL's ``format_type``) for
the docs, the file metadata and ``_unfit`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    arrow: pa.DataType
    source_type: str
    pk: int = 0  # position in the key, 1-based; 0 when not part of it
    nullable: bool = True


@dataclass(frozen=True)
class TableSpec:
    """A captured table: its (schema-qualified where the database has schemas) name,
    its columns in table order, and its key."""

    name: str
    columns: tuple[ColumnSpec, ...]

    @property
    def key(self) -> tuple[str, ...]:
        pks = sorted((c for c in self.columns if c.pk), key=lambda c: c.pk)
        return tuple(c.name for c in pks)


RESERVED_COLUMNS = frozenset(
    {"_op", "_pos", "_ts_ms", "_captured_ms", "_device", "_source", "_table", "_unfit"}
)
