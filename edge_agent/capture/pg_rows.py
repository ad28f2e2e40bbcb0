"""Bronze rows from decoded pgoutput changes: the relation cache and the row builder.

A table's description (a Relation message) gives its columns as the change
was written, a converter per column and the key's column indexes. The key is
the one the agent used the first time it saw that relation (``KeyBook``, kept
in the checkpoint): whether an update moved its key decides whether it takes
one position or two, so a re-read must decide the same way even if the
table's primary key changed meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from edge_agent.bronze.schema import BatchSchema, batch_schema
from edge_agent.capture import pgoutput as po
from edge_agent.capture.pg_values import Convert, convert_row, relation_key, relation_spec
from edge_agent.config_sources import SourceConfig
from edge_agent.sources.postgres import Con

OPS = {po.Insert: "c", po.Update: "u", po.Delete: "d"}


@dataclass
class RelInfo:
    name: str
    schema: BatchSchema | None  # None: a published table this source does not capture
    converters: tuple[Convert, ...]
    columns: tuple[tuple[str, int, int], ...]  # (name, type oid, typmod) as the log sent them
    key: tuple[int, ...]  # indexes of the key columns

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self.columns)


@dataclass
class KeyBook:
    """The key columns per relation oid, as first seen; ``dirty`` until stored."""

    keys: dict[int, list[str]] = field(default_factory=dict)
    dirty: bool = False

    def key(self, con: Con, rel: po.Relation) -> list[str]:
        if rel.oid not in self.keys:
            self.keys[rel.oid] = relation_key(con, rel)
            self.dirty = True
        return self.keys[rel.oid]


class Relations:
    def __init__(self, cfg: SourceConfig, catalog: Con, keys: KeyBook) -> None:
        self.cfg, self.catalog, self.keys = cfg, catalog, keys
        self.known: dict[int, RelInfo] = {}

    def learn(self, rel: po.Relation) -> None:
        """A changed column list or type gives a new schema: the writer rotates the file."""
        name = f"{rel.namespace or 'pg_catalog'}.{rel.name}"
        columns = tuple((c.name, c.type_oid, c.typmod) for c in rel.columns)
        known = self.known.get(rel.oid)
        if known is not None and known.name == name and known.columns == columns:
            return
        key = self.keys.key(self.catalog, rel)
        index = tuple(i for i, c in enumerate(columns) if c[0] in key)
        if name not in self.cfg.tables:
            self.known[rel.oid] = RelInfo(name, None, (), columns, index)
            return
        spec, converters = relation_spec(self.catalog, rel, name, key)
        schema = batch_schema(spec, tx=True, before=self.cfg.before_image, logical=True)
        self.known[rel.oid] = RelInfo(name, schema, converters, columns, index)

    def moved(self, msg: po.Update) -> bool:
        """Whether an update changed its row's key (then: a delete and the new row)."""
        rel = self.known.get(msg.relation)
        if msg.old is None or rel is None:
            return False
        if msg.old_kind == "K":
            return True  # the old key is sent only when the key changed
        return any(msg.old[i] != msg.new[i] for i in rel.key if msg.new[i] is not po.UNCHANGED)


def change_row(
    rel: RelInfo,
    schema: BatchSchema,
    msg: po.Insert | po.Update | po.Delete,
    head: list[object],
    lsn: int,
) -> tuple[object, ...]:
    """``head`` is (pos, xid, op, ts_ms); then the values, the before image, LSN, unchanged."""
    sent = None if isinstance(msg, po.Insert) else msg.old
    old = convert_row(sent, rel.converters) if sent is not None else None
    if isinstance(msg, po.Delete):
        values, unchanged = old or [None] * len(rel.names), None
    else:
        full_old = old if isinstance(msg, po.Update) and msg.old_kind == "O" else None
        values, unchanged = _fill(convert_row(msg.new, rel.converters), full_old, rel.names)
    row: list[object] = [*head, *values]
    if schema.before:
        keep = isinstance(msg, po.Update) and old is not None
        row.append(_before(rel.names, old) if keep else None)
    return (*row, lsn, unchanged)


def truncate_row(
    rel: RelInfo, schema: BatchSchema, head: list[object], lsn: int
) -> tuple[object, ...]:
    return (*head, *([None] * len(rel.names)), *([None] if schema.before else []), lsn, None)


def _before(names: tuple[str, ...], old: list[object] | None) -> str:
    """The old row as JSON (REPLICA IDENTITY FULL: all columns; otherwise the key)."""
    values = {n: (None if v is po.UNCHANGED else v) for n, v in zip(names, old or [], strict=False)}
    return json.dumps(values, default=str, ensure_ascii=False)


def _fill(
    new: list[object], old: list[object] | None, names: tuple[str, ...]
) -> tuple[list[object], list[str] | None]:
    """An unchanged TOASTed value (not sent) comes from the whole old row when the log has
    it (REPLICA IDENTITY FULL); otherwise it is NULL and named in ``_unchanged``."""
    missing = [i for i, v in enumerate(new) if v is po.UNCHANGED]
    if not missing:
        return new, None
    unchanged: list[str] = []
    for i in missing:
        if old is not None and old[i] is not po.UNCHANGED:
            new[i] = old[i]
        else:
            new[i] = None
            unchanged.append(names[i])
    return new, unchanged or None
