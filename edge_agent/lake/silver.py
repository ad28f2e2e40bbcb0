"""`edge-agent lake silver`: the current state of every captured table, as Delta Lake
tables built from bronze (docs/lake.md).

One Delta table per (source, table) under ``<to>/<source>/<table>``, holding every
device's rows (``_device`` is part of the key and the partition column), with
``_pos`` and ``_ts_ms`` of the change that set each row. Incremental: per
device, only bronze files past the table's watermark are read, in ordinal
order, ``batch_rows`` changes at a time, each batch one MERGE commit that also
carries the new watermark. Memory is one batch of bronze plus what the merge
of one device's partition needs.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edge_agent.errors import EdgeAgentError, StateLockedError
from edge_agent.lake.silver_plan import BronzeFile, Plan, plan
from edge_agent.lake.store import LakeStore

DEFAULT_BATCH_ROWS = 500_000
GROUP = 512  # bronze files read, then joined into one contiguous table
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def dir_name(name: str) -> str:
    """A directory name for a source or table: the name itself when it is plain,
    else its plain characters and a hash of the name (delta-rs reads table paths as
    URLs, so no percent-encoding; a hash keeps two names from meeting)."""
    if _PLAIN.fullmatch(name):
        return name
    plain = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")
    return f"{plain}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


@dataclass
class TableRun:
    source: str
    table: str
    uri: str
    files: int = 0
    changes: int = 0
    commits: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass
class SilverReport:
    tables: list[TableRun] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # streams held back by a gap

    def as_json(self) -> dict[str, Any]:
        return {
            "complete": not self.waiting,
            "waiting": self.waiting,
            "tables": [vars(t) for t in self.tables],
        }


class Progress:
    """Changes merged so far, on one redrawn line on a terminal, else a line every
    ``every`` seconds."""

    def __init__(self, total: int, out: TextIO | None = None, every: float = 10.0) -> None:
        self.total, self.done, self.every = total, 0, every
        self.out = out if out is not None else sys.stderr
        self.tty = self.out.isatty()
        self.started = self.shown = time.monotonic()

    def advance(self, changes: int, what: str) -> None:
        self.done += changes
        now = time.monotonic()
        if not self.tty and now - self.shown < self.every and self.done < self.total:
            return
        self.shown = now
        rate = self.done / max(now - self.started, 1e-9)
        share = 100.0 * self.done / self.total if self.total else 100.0
        line = f"silver: {self.done:,}/{self.total:,} changes ({share:.0f}%), {rate:,.0f}/s, {what}"
        self.out.write(f"\r{line[:120]:<120}" if self.tty else line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")


@dataclass(frozen=True)
class Target:
    """Where the silver tables go: a directory, or ``s3://bucket/prefix``."""

    root: str
    storage: dict[str, str] | None = None  # delta-rs storage options (S3)

    def uri(self, source: str, table: str) -> str:
        return f"{self.root.rstrip('/')}/{dir_name(source)}/{dir_name(table)}"


def target_of(to: str, endpoint_url: str = "") -> Target:
    """``--to``: an S3 URL gets the AWS chain's credentials (delta-rs reads the same
    environment) and commits that are atomic on S3 (``conditional_put``: of two runs
    writing the same version of a table's log, one fails and retries or stops)."""
    if re.search(r"[%#?]", to):
        raise EdgeAgentError(
            f"--to {to!r}: delta-rs reads the path as a URL (% # ? would change it): "
            "choose a path without them"
        )
    if not to.startswith("s3://"):
        return Target(str(Path(to)))
    options = {"conditional_put": "etag"}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["AWS_REGION"] = region
    if endpoint_url:
        options["AWS_ENDPOINT_URL"] = endpoint_url
        if endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return Target(to, options)


def run(
    store: LakeStore,
    to: Target | Path,
    source: str | None = None,
    device: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress_out: TextIO | None = None,
) -> SilverReport:
    from edge_agent.lake.silver_delta import SilverTable

    if batch_rows < 1:
        raise EdgeAgentError(f"--batch-rows {batch_rows}: give a positive number, e.g. 500000")
    target = to if isinstance(to, Target) else target_of(str(to))
    with _locked(target):
        work = plan(store, source, device)
        targets = {
            st: SilverTable(target.uri(*st), f"{st[0]}.{st[1]}", target.storage)
            for st in work.tables
        }
        todo = {st: _todo(work, st, targets[st]) for st in work.tables}
        progress = Progress(
            sum(f.rows for d in todo.values() for fs in d.values() for f in fs), progress_out
        )
        report = SilverReport(waiting=work.gaps())
        for st, devices in todo.items():
            report.tables.append(
                _merge_table(store, targets[st], st, devices, batch_rows, progress)
            )
        progress.close()
    return report


def _todo(work: Plan, st: tuple[str, str], target: Any) -> dict[str, list[BronzeFile]]:
    todo = {}
    for dev, files in work.tables[st].items():
        mark = target.mark(dev)
        todo[dev] = [f for f in files if f.ordinal > mark]
    return todo


def _merge_table(
    store: LakeStore,
    target: Any,
    st: tuple[str, str],
    devices: dict[str, list[BronzeFile]],
    batch_rows: int,
    progress: Progress,
) -> TableRun:
    from edge_agent.lake.silver_reduce import net_changes

    result = TableRun(st[0], st[1], target.uri)
    for dev, files in devices.items():
        for batch in _batches(files, batch_rows):
            where = f"{dev}/{st[0]}.{st[1]}"
            changes, key = _load(store, batch, target.schema(), where)
            net = net_changes(changes, key, where)
            del changes
            metrics = target.merge(dev, net, key, batch[-1].ordinal)
            result.files += len(batch)
            result.changes += sum(f.rows for f in batch)
            result.commits += 1
            result.inserted += int(metrics.get("num_target_rows_inserted", 0))
            result.updated += int(metrics.get("num_target_rows_updated", 0))
            result.deleted += int(metrics.get("num_target_rows_deleted", 0))
            progress.advance(sum(f.rows for f in batch), f"{st[0]}.{st[1]} {dev}")
    return result


def _load(
    store: LakeStore, batch: list[BronzeFile], reference: Any, where: str
) -> tuple[Any, list[str]]:
    """A batch's changes as one table, and the key (the newest file's: the table as it
    is now). Files are joined GROUP at a time into contiguous tables: thousands of tiny
    tables cost far more memory than their rows."""
    import pyarrow as pa

    from edge_agent.lake.silver_reduce import conform, silver_frame

    parts = []
    key: list[str] = []
    for start in range(0, len(batch), GROUP):
        frames = []
        for f in batch[start : start + GROUP]:
            bronze = _read(store, f)
            key = _key_of(bronze, f)
            frames.append(silver_frame(bronze))
        part = conform(frames, reference, where).combine_chunks()
        reference = part.schema if reference is None else pa.unify_schemas([reference, part.schema])
        parts.append(part)
    return pa.concat_tables(parts, promote_options="default"), key


def _batches(files: list[BronzeFile], batch_rows: int) -> Iterator[list[BronzeFile]]:
    """Files in ordinal order, cut where a batch would pass ``batch_rows`` changes (a
    file larger than that is a batch of its own)."""
    batch: list[BronzeFile] = []
    rows = 0
    for f in files:
        if batch and rows + f.rows > batch_rows:
            yield batch
            batch, rows = [], 0
        batch.append(f)
        rows += f.rows
    if batch:
        yield batch


def _read(store: LakeStore, f: BronzeFile) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(pa.BufferReader(store.read(f.rel))).read()
    except (OSError, pa.ArrowException) as exc:
        raise EdgeAgentError(
            f"{f.rel}: unreadable ({exc}); run `edge-agent lake verify --deep`"
        ) from exc


def _key_of(bronze: Any, f: BronzeFile) -> list[str]:
    raw = (bronze.schema.metadata or {}).get(b"edge_agent.key")
    key = json.loads(raw) if raw else []
    if not key:
        raise EdgeAgentError(f"{f.rel}: no edge_agent.key in its schema metadata")
    return list(key)


class _locked:
    """One silver run per output directory at a time (on S3 the commits are atomic:
    a second run's commit fails instead)."""

    def __init__(self, target: Target) -> None:
        self.path = (
            None if target.storage is not None else Path(target.root) / ".edge-agent-silver.lock"
        )
        self.fd = -1

    def __enter__(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self.fd)
            raise StateLockedError(
                f"--to {self.path.parent}: another `lake silver` runs there"
            ) from exc

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def render(report: SilverReport) -> str:
    out = io.StringIO()
    for t in report.tables:
        out.write(
            f"{t.source}.{t.table}: {t.changes} change(s) from {t.files} file(s) in "
            f"{t.commits} commit(s): +{t.inserted} ~{t.updated} -{t.deleted} -> {t.uri}\n"
        )
    for w in report.waiting:
        out.write(f"! {w}: silver holds that device's changes up to the gap\n")
    out.write("up to date" if not report.waiting else "behind a gap (exit 6)")
    return out.getvalue()
