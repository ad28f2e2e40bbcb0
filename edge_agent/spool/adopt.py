"""Rebuilding the ledger from the spool when the state database lost track of it.

A sealed spool file and its manifest carry everything the ledger holds about
them (id, ordinal, table, positions, rows, sha256). So a spool file the state
database does not know is not thrown away when it verifies: it is *adopted*
back into the ledger (status ready, its table's sealed position and the
source's next ordinal raised to cover it). That covers the crash between a
file's publication and its record, and also a state database that is missing,
emptied, damaged (moved aside at start), or older than the spool (restored
from a backup): the changes in those files were already pruned from the
application's change log, and discarding them lost them.

Only change-log and slot captures (trigger and logical mode) are adopted:
their positions are the source's own and a re-read skips what a sealed file
holds. A timestamp table's file is discarded as before: its rows are polled
again from the stored watermark, and adopting it would double them.

With a ``dir`` sink the lake's own manifests of this device are read too when
the ledger of a source is empty, so ordinals continue after the newest landed
file instead of starting at 1 again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.bronze.layout import MANIFEST, PARQUET, FileKey
from edge_agent.fsutil import sha256_file
from edge_agent.spool.state import FileRecord, StateDB


@dataclass
class Adoption:
    adopted: int = 0
    newer_than_ledger: bool = False  # a file beyond the ledger's next ordinal: an older DB
    lake_ordinals: dict[str, int] | None = None  # seeded from the lake, by source


def record_of(ready: Path, rel: str, device: str) -> FileRecord | None:
    """The ledger record a spool file's manifest describes, when the file verifies."""
    try:
        m = json.loads((ready / (rel[: -len(PARQUET)] + MANIFEST)).read_bytes())
        key = FileKey.of_manifest(m)
        if m["device"] != device or key.relpath != rel or key.file_id != m["id"]:
            return None
        if sha256_file(ready / rel) != (int(m["bytes"]), m["sha256"]):
            return None
        return FileRecord(
            key.file_id,
            m["source"],
            m["table"],
            int(m["ordinal"]),
            key.first_pos,
            key.last_pos,
            int(m["rows"]),
            int(m["bytes"]),
            m["sha256"],
            rel,
            key.manifest_relpath,
            int(m.get("created_ms", 0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def adopt(
    state: StateDB,
    ready: Path,
    unknown: list[str],
    device: str,
    adoptable: Callable[[str, str], bool],
) -> Adoption:
    """Adopt the spool files in ``unknown`` (relpaths the ledger does not list) that
    verify and belong to change-log captures; returns what was done. The caller
    removes what is left."""
    result = Adoption()
    for rel in unknown:
        rec = record_of(ready, rel, device)
        if rec is None or not adoptable(rec.source, rec.table) or state.file(rec.id):
            continue
        _, next_ordinal = state.source_position(rec.source)
        if rec.ordinal > next_ordinal:
            result.newer_than_ledger = True
        state.adopt(rec)
        result.adopted += 1
    return result


def seed_from_lake(state: StateDB, lake: Path, device: str, sources: list[str]) -> dict[str, int]:
    """For sources the ledger has never seen: the newest ordinal and the sealed position
    per table of this device's files already in a lake directory."""
    seeded: dict[str, int] = {}
    for source in sources:
        if state.source_known(source):
            continue
        found = _lake_files(lake, device, source)
        if found:
            state.seed(source, found)
            seeded[source] = max(int(m["ordinal"]) for m in found)
    return seeded


def _lake_files(lake: Path, device: str, source: str) -> list[dict[str, Any]]:
    from edge_agent.bronze.layout import encode_name

    root = lake / "bronze" / encode_name(source)
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.startswith(device + "-") and name.endswith(MANIFEST):
                try:
                    m = json.loads((Path(dirpath) / name).read_bytes())
                except (OSError, ValueError):
                    continue
                if isinstance(m, dict) and m.get("device") == device and "ordinal" in m:
                    found.append(m)
    return found
