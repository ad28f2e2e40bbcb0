"""One silver Delta Lake table: its watermarks, and one merge of a device's net changes.

Each device's watermark (the last bronze ordinal merged) is a Delta *application
transaction* (``edge-agent-silver/<device>``) committed with the MERGE that
applies those changes, so a table and its watermarks can never disagree: a run
killed between two merges resumes after the last commit, and a re-run merges
nothing twice. Application transactions survive checkpoints and log clean-up,
and two runs merging different devices side by side each move only their own.
Each commit's metadata also names the key, so a changed primary key is refused.
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
APP = "edge-agent-silver/"


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
        if self.dt is not None:
            self.key = self._key_of_table()

    def _key_of_table(self) -> list[str] | None:
        """The key the latest commits name (None once log clean-up removed them all: the
        key check is then skipped). A table without silver's columns is not ours."""
        if not {PARTITION, "_pos", "_ts_ms"} <= set(pa.schema(self.dt.schema()).names):
            raise EdgeAgentError(
                f"{self.uri}: a Delta table that `lake silver` did not make (no _device, "
                "_pos and _ts_ms columns): choose another --to"
            )
        for commit in self.dt.history(20):
            if META in commit:
                key: list[str] = json.loads(commit[META])["key"]
                return key
        return None

    def mark(self, device: str) -> int:
        """The last bronze ordinal of ``device`` merged into this table (0: none)."""
        if self.dt is None:
            return 0
        version = self.dt.transaction_version(APP + device)
        return int(version) if version is not None else 0

    def schema(self) -> pa.Schema | None:
        return None if self.dt is None else pa.schema(self.dt.schema())

    def merge(self, device: str, net: Net, key: list[str], ordinal: int) -> dict[str, Any]:
        """Apply ``net`` for ``device`` and move its watermark to ``ordinal``, in one commit."""
        self._check(key)
        from deltalake import Transaction
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import CommitProperties

        props = CommitProperties(
            custom_metadata={META: json.dumps({"key": key, "device": device, "ordinal": ordinal})},
            app_transactions=[Transaction(APP + device, ordinal)],
        )
        try:
            if self.dt is None:
                metrics = self._create(net, key, props)
            else:
                metrics = self._merge(device, net, key, props)
        except CommitFailedError as exc:
            raise EdgeAgentError(
                f"{self.name}: another `lake silver` committed the same rows of {device!r} "
                f"at the same time ({exc}); nothing was lost: run again"
            ) from exc
        self.key = key
        return metrics

    def _check(self, key: list[str]) -> None:
        if self.key is not None and self.key != key:
            raise EdgeAgentError(
                f"{self.name}: the primary key changed from {self.key} to {key} in bronze; "
                f"silver merges by one key: move {self.uri} aside and run again to rebuild it"
            )

    def _create(self, net: Net, key: list[str], props: Any) -> dict[str, Any]:
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
        """The net rows with every column of the table: those the batch lacks (dropped on
        the device, or not yet seen by this device) as NULL. Types were conformed to the
        table's before the batch was reduced (silver_reduce.conform)."""
        rows = net.rows
        for f in pa.schema(self.dt.schema()):
            if f.name not in rows.column_names:
                rows = rows.append_column(f.name, pa.nulls(len(rows), f.type))
        return rows


def _data(rows: pa.Table, net: Net) -> pa.Table:
    """Rows as silver stores them: no `_op`, no keep flags."""
    return rows.drop_columns(["_op", *net.keep.values()])
