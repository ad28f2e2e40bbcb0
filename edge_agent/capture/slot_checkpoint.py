"""The checkpoint of a logical source, as the state database stores it (no driver here).

A transaction boundary of the slot's stream whose changes are all in sealed,
recorded files: the slot may be advanced to ``lsn``, and a re-read from there
numbers its changes from ``pos + 1`` (capture/pg_logical.py, pg_stream.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

CHECKPOINT = "@slot"  # the state database's cursor row of a logical source


@dataclass(frozen=True)
class Checkpoint:
    lsn: int  # the slot may be advanced to here: every change before it is durable
    pos: int  # the last position at or before ``lsn``
    snapshot: list[str] = field(default_factory=list)  # tables still to snapshot, at lsn
    restart: bool = False  # the snapshot starts its tables over ("t" markers)
    tables: list[str] = field(default_factory=list)  # the tables captured so far
    # The key columns of each relation (by oid) as first seen: whether an update moved
    # its key decides one position or two, so a re-read must decide the same way.
    keys: dict[str, list[str]] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def loads(text: str | None) -> Checkpoint | None:
        if not text:
            return None
        data = json.loads(text)
        return Checkpoint(
            int(data["lsn"]),
            int(data["pos"]),
            list(data.get("snapshot", [])),
            bool(data.get("restart", False)),
            list(data.get("tables", [])),
            {str(k): list(v) for k, v in data.get("keys", {}).items()},
        )
