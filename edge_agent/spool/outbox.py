"""The spool: sealed files move tmp -> ready -> (shipped: deleted) | failed, by rename.

Files in ``ready/`` use the lake layout (bronze/<source>/<table>/date=.../...),
so a sink copies ``ready/<relpath>`` to ``<lake>/<relpath>``. On start,
:meth:`Spool.recover` repairs whatever a crash left: temp files are removed and
sealed files the state database never recorded are discarded (their changes are
still in the source's change log and are captured again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from edge_agent.bronze.layout import MANIFEST, PARQUET, FileKey
from edge_agent.bronze.writer import SealedFile
from edge_agent.errors import CorruptFileError
from edge_agent.fsutil import (
    ensure_dir,
    fsync_dir,
    publish,
    remove_durably,
    sha256_file,
    write_atomic,
)
from edge_agent.spool import manifest
from edge_agent.spool.adopt import adopt
from edge_agent.spool.state import FAILED, READY, SHIPPED, FileRecord, StateDB


@dataclass
class Recovery:
    temp_removed: int = 0
    unrecorded_removed: int = 0
    shipped_removed: int = 0
    missing: int = 0
    adopted: int = 0  # unrecorded but whole files taken back into the ledger
    older_ledger: bool = False  # the spool held files beyond the ledger: an older DB


class Spool:
    def __init__(self, root: Path, state: StateDB) -> None:
        self.root = root
        self.state = state
        self.tmp = root / "tmp"
        self.ready = root / "ready"
        self.failed = root / "failed"

    def path(self, relpath: str) -> Path:
        return self.ready / relpath

    # -- sealing ----------------------------------------------------------
    def publish(self, sealed: SealedFile, key: FileKey, manifest: dict[str, Any]) -> Path:
        """Move a sealed temp file into ready/ with its manifest beside it."""
        final = self.path(key.relpath)
        publish(sealed.tmp_path, final)
        write_atomic(self.path(key.manifest_relpath), manifest_bytes(manifest))
        return final

    def discard(self, sealed: SealedFile, key: FileKey) -> None:
        """Undo a publish that was never recorded."""
        for path in (sealed.tmp_path, self.path(key.relpath), self.path(key.manifest_relpath)):
            path.unlink(missing_ok=True)

    # -- before shipping --------------------------------------------------
    def repair_manifest(
        self,
        rec: FileRecord,
        device: str,
        min_valid_ms: int,
        dropped: list[dict[str, Any]] | None = None,
    ) -> str | None:
        """Check the manifest beside a ready file against the ledger; rebuild a missing or
        damaged one from the ledger and the file. Returns what was wrong (None: it was
        fine). A file that no longer matches the ledger is a CorruptFileError."""
        path = self.path(rec.manifest_relpath)
        try:
            data: bytes | None = path.read_bytes()
        except FileNotFoundError:
            data = None
        wrong = manifest.problem(rec, data)
        if wrong is None:
            return None
        local = self.path(rec.relpath)
        import pyarrow.parquet as pq  # only here: it loads pyarrow's cloud filesystems

        try:
            whole = sha256_file(local) == (rec.bytes, rec.sha256)
            fingerprint = pq.read_schema(local).metadata[b"edge_agent.schema_fingerprint"]
        except (OSError, KeyError, TypeError, pa.ArrowException) as exc:
            raise CorruptFileError(f"spooled file {rec.id} is unreadable: {exc}") from exc
        if not whole:
            raise CorruptFileError(f"spooled file {rec.id} no longer matches its record")
        rebuilt = manifest.build(rec, device, fingerprint.decode(), min_valid_ms, dropped)
        write_atomic(path, manifest_bytes(rebuilt))
        return wrong

    # -- after shipping ---------------------------------------------------
    def remove(self, rec: FileRecord) -> None:
        remove_durably([self.path(rec.relpath), self.path(rec.manifest_relpath)])

    def quarantine(self, rec: FileRecord, reason: str, now_ms: int) -> None:
        """Park a file that cannot be shipped, with the reason beside it."""
        target = self.failed / rec.relpath
        ensure_dir(target.parent)
        for rel in (rec.relpath, rec.manifest_relpath):
            src = self.path(rel)
            if src.exists():
                os.replace(src, self.failed / rel)
        write_atomic(target.with_name(target.name + ".error"), reason.encode() + b"\n")
        fsync_dir(target.parent)
        self.state.set_status(rec.id, FAILED, now_ms, reason)

    # -- start-up repair --------------------------------------------------
    def recover(
        self,
        now_ms: int,
        device: str = "",
        adoptable: Callable[[str, str], bool] = lambda source, table: False,
    ) -> Recovery:
        """Start-up repair: temp files removed; sealed files the ledger does not list are
        adopted when they verify and belong to a change-log capture (spool/adopt.py),
        else removed (their changes are captured again); recorded files that are gone
        are marked failed; shipped ones still on disk are removed."""
        report = Recovery()
        for tmp in list(self.tmp.iterdir()) + list(self.ready.rglob(".*.tmp")):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                report.temp_removed += 1
        ready = {r.relpath: r for r in self.state.files(READY)}
        on_disk = {str(p.relative_to(self.ready)) for p in self.ready.rglob("*" + PARQUET)}
        unknown = sorted(on_disk - set(ready))
        adoption = adopt(self.state, self.ready, unknown, device, adoptable)
        report.adopted, report.older_ledger = adoption.adopted, adoption.newer_than_ledger
        ready = {r.relpath: r for r in self.state.files(READY)}
        for rel in sorted(on_disk - set(ready)):
            manifest = rel[: -len(PARQUET)] + MANIFEST
            remove_durably([self.ready / rel, self.ready / manifest])
            report.unrecorded_removed += 1
        for rel, rec in ready.items():
            if rel not in on_disk:
                self.state.set_status(rec.id, FAILED, now_ms, "missing from the spool")
                report.missing += 1
        for rec in self.state.files(SHIPPED):
            if self.path(rec.relpath).exists() or self.path(rec.manifest_relpath).exists():
                self.remove(rec)
                report.shipped_removed += 1
        return report


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
