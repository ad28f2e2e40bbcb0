"""One silver Delta Lake table: its watermarks, and one merge of a device's net changes.

The watermark (per device, the last bronze ordinal merged) travels in the
commit that applies those changes (``edge_agent.silver`` in the commit's
metadata), so a table and its watermark can never disagree: a run killed
between two merges resumes after the last commit, and a re-run merges nothing
twice.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from edge_agent.errors import EdgeAgentError
from edge_agent.lake.silver_reduce import Net

META = "edge_agent.silver"
PARTITION = "_device"


def q(name: str) -> str:
    """A quoted SQL identifier for delta-rs predicates (keeps the case)."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class SilverTable:
    def __init__(self, uri: str, name: str, storage: dict[str, str] | None = None) -> None:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        self.uri, self.name, self.storage = uri, name, storage
        try:
            self.dt: Any = DeltaTable(uri, storage_options=storage)
        except TableNotFoundError:
            self.dt = None
        self.key: list[str] | None = None
        self.marks: dict[str, int] = {}
        if self.dt is not None:
            self._read_marks()

    def _read_marks(self) -> None:
        for limit in (20, None):
            for commit in self.dt.history(limit):
                if META in commit:
                    doc = json.loads(commit[META])
                    self.key, self.marks = (
                        doc["key"],
                        {k: int(v) for k, v in doc["devices"].items()},
                    )
                    return
        raise EdgeAgentError(
            f"{self.uri}: a Delta table without edge-agent's watermark: not a silver table "
            "of ours; choose another --to"
        )

    def merge(self, device: str, net: Net, key: list[str], ordinal: int) -> dict[str, Any]:
        """Apply ``net`` for ``device`` and move its watermark to ``ordinal``, in one commit."""
        self._check(key)
        from deltalake.transaction import CommitProperties

        marks = {**self.marks, device: ordinal}
        props = CommitProperties(
            custom_metadata={META: json.dumps({"key": key, "devices": marks}, sort_keys=True)}
        )
        if self.dt is None:
            metrics = self._create(net, props)
        else:
            metrics = self._merge(device, net, key, props)
        self.key, self.marks = key, marks
        return metrics

    def _check(self, key: list[str]) -> None:
        if self.key is not None and self.key != key:
            raise EdgeAgentError(
                f"{self.name}: the primary key changed from {self.key} to {key} in bronze; "
                f"silver merges by one key: move {self.uri} aside and run again to rebuild it"
            )

    def _create(self, net: Net, props: Any) -> dict[str, Any]:
        from deltalake import DeltaTable, write_deltalake

        rows = _data(net.rows.filter(pc.not_equal(net.rows.column("_op"), "d")), net)
        write_deltalake(
            self.uri,
            rows,
            partition_by=[PARTITION],
            mode="error",
            commit_properties=props,
            storage_options=self.storage,
        )
        self.dt = DeltaTable(self.uri, storage_options=self.storage)
        return {"num_target_rows_inserted": len(rows)}

    def _merge(self, device: str, net: Net, key: list[str], props: Any) -> dict[str, Any]:
        source = self._aligned(net)
        on = " AND ".join(
            [f"t.{q(PARTITION)} = {lit(device)}", f"s.{q(PARTITION)} = t.{q(PARTITION)}"]
            + [f"s.{q(k)} = t.{q(k)}" for k in key]
        )
        columns = [c for c in source.column_names if c != "_op" and c not in net.keep.values()]
        insert = {q(c): f"s.{q(c)}" for c in columns}
        update = dict(insert)
        for column, flag in net.keep.items():
            update[q(column)] = f"CASE WHEN s.{q(flag)} THEN t.{q(column)} ELSE s.{q(column)} END"
        merger = (
            self.dt.merge(
                source,
                predicate=on,
                source_alias="s",
                target_alias="t",
                merge_schema=True,
                commit_properties=props,
            )
            .when_matched_delete(predicate="s._op = 'd'")
            .when_matched_update(updates=update, predicate="s._op <> 'd'")
            .when_not_matched_insert(updates=insert, predicate="s._op <> 'd'")
        )
        if net.truncate:
            merger = merger.when_not_matched_by_source_delete(
                predicate=f"t.{q(PARTITION)} = {lit(device)}"
            )
        metrics: dict[str, Any] = merger.execute()
        return metrics

    def _aligned(self, net: Net) -> pa.Table:
        """The net rows in the table's types; its columns the batch lacks (dropped on
        the device, or not yet seen by this device) as NULL."""
        rows = net.rows
        target = pa.schema(self.dt.schema())
        for f in target:
            if f.name not in rows.column_names:
                rows = rows.append_column(f.name, pa.nulls(len(rows), f.type))
                continue
            have = rows.schema.field(f.name).type
            if have != f.type:
                try:
                    cast = pc.cast(rows.column(f.name), f.type, safe=True)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise EdgeAgentError(
                        f"{self.name}: column {f.name!r} is {have} in bronze but {f.type} in "
                        f"silver ({exc}); rename the column on the device, or move "
                        f"{self.uri} aside to rebuild it"
                    ) from exc
                rows = rows.set_column(rows.schema.get_field_index(f.name), f.name, cast)
        return rows


def _data(rows: pa.Table, net: Net) -> pa.Table:
    """Rows as silver stores them: no `_op`, no keep flags."""
    return rows.drop_columns(["_op", *net.keep.values()])
