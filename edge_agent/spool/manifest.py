"""The manifest beside each sealed file: built once when the file is sealed, checked
against the ledger before every shipment, rebuilt from the ledger and the file when
it is missing or damaged (a manifest is derived data; the file and the state
database are the truth)."""

from __future__ import annotations

import json
from typing import Any

from edge_agent.bronze.layout import partition_of
from edge_agent.bronze.schema import FORMAT_VERSION
from edge_agent.clock import UNSYNCED_PARTITION
from edge_agent.spool.state import FileRecord

# What a manifest must agree on with the ledger row of its file.
_LEDGER_FIELDS = (
    "id",
    "ordinal",
    "source",
    "table",
    "rows",
    "first_pos",
    "last_pos",
    "sha256",
    "bytes",
)


def build(
    rec: FileRecord,
    device: str,
    fingerprint: str,
    min_valid_ms: int,
    dropped: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``dropped``: files of this source that `when_full = "drop_oldest"` removed before
    they shipped (ordinal, id, table, positions, rows), so the lake knows the gaps in
    its ordinals are known drops, not losses."""
    partition = partition_of(rec.relpath)
    extra = {"dropped": dropped} if dropped else {}
    return {
        "format": FORMAT_VERSION,
        "id": rec.id,
        "ordinal": rec.ordinal,
        "device": device,
        "source": rec.source,
        "table": rec.table,
        "partition": {"date": partition},
        "rows": rec.rows,
        "first_pos": rec.first_pos,
        "last_pos": rec.last_pos,
        "schema_fingerprint": fingerprint,
        "sha256": rec.sha256,
        "bytes": rec.bytes,
        "created_ms": rec.created_ms,
        "clock": {
            "synced": rec.created_ms >= min_valid_ms,
            "partition_basis": "unsynced"
            if partition == UNSYNCED_PARTITION
            else "change_time_or_capture_time",
        },
        **extra,
    }


def problem(rec: FileRecord, data: bytes | None) -> str | None:
    """Why the manifest bytes do not describe the ledger's file, or None."""
    if data is None:
        return "missing"
    try:
        found = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not JSON ({exc})"
    if not isinstance(found, dict):
        return "not a JSON object"
    wrong = [f for f in _LEDGER_FIELDS if found.get(f) != getattr(rec, f)]
    if wrong:
        return "disagrees with the ledger on " + ", ".join(wrong)
    if found.get("partition") != {"date": partition_of(rec.relpath)}:
        return "disagrees with the file's path on the partition"
    return None
