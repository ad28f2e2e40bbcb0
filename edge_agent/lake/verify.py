"""`edge-agent lake verify`: prove a bronze lake directory complete, or say what is not.

Per (device, source) the batch ordinals must run 1..N without a gap; a gap the
agent made itself with ``when_full = "drop_oldest"`` is listed in a later
manifest (``dropped``) and counts as a known drop, not a loss. Every Parquet
file needs its manifest and both must agree (path, size; with ``deep`` the
sha256, the row count and the schema fingerprint read from the file); the
position ranges of one table's files never overlap; nothing else lives under
``bronze/`` (temp files of an interrupted writer, foreign files). Without
``deep`` only manifests and file sizes are read: fast on a big lake.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.bronze.layout import MANIFEST, PARQUET, FileKey
from edge_agent.lake.store import DirStore, LakeStore

GAP, CORRUPT = "gap", "corrupt"
_FIELDS = (
    "id",
    "ordinal",
    "device",
    "source",
    "table",
    "rows",
    "first_pos",
    "last_pos",
    "bytes",
    "sha256",
    "schema_fingerprint",
    "partition",
)


@dataclass(frozen=True)
class Finding:
    severity: str  # gap | corrupt
    kind: str
    path: str
    detail: str
    device: str = ""
    source: str = ""


@dataclass
class Stream:
    """One (device, source): its files' ordinals and what they hold."""

    ordinals: dict[int, str] = field(default_factory=dict)  # ordinal -> file id
    dropped: set[int] = field(default_factory=set)
    files: int = 0
    rows: int = 0
    ranges: dict[str, list[tuple[int, int, str]]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class Report:
    lake: str
    findings: list[Finding] = field(default_factory=list)
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: int = 0

    @property
    def complete(self) -> bool:
        return not self.findings

    @property
    def corrupt(self) -> bool:
        return any(f.severity == CORRUPT for f in self.findings)

    def as_json(self) -> dict[str, Any]:
        return {
            "lake": self.lake,
            "complete": self.complete,
            "files": self.files,
            "streams": self.streams,
            "findings": [asdict(f) for f in self.findings],
        }


def verify(store: LakeStore | Path, device: str | None = None, deep: bool = False) -> Report:
    if isinstance(store, Path):
        store = DirStore(store)
    report = Report(store.name)
    manifests, parquets = _classify(store, report)
    if not manifests and not parquets and not report.findings:
        report.findings.append(Finding(CORRUPT, "no_bronze", store.name, "no bronze files"))
        return report
    streams: dict[tuple[str, str], Stream] = defaultdict(Stream)
    for rel in sorted(manifests):
        _manifest(store, rel, parquets, streams, report, device, deep)
    for rel in sorted(set(parquets) - {m[: -len(MANIFEST)] + PARQUET for m in manifests}):
        report.findings.append(
            Finding(CORRUPT, "no_manifest", rel, "a Parquet file without its manifest")
        )
    for (dev, src), stream in sorted(streams.items()):
        report.streams[f"{dev}/{src}"] = _close(stream, dev, src, report)
    return report


def _classify(store: LakeStore, report: Report) -> tuple[set[str], dict[str, int]]:
    manifests: set[str] = set()
    parquets: dict[str, int] = {}
    for rel, size in store.listing():
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(".") or ".tmp" in name:
            report.findings.append(
                Finding(CORRUPT, "temp_file", rel, "a temp file left by an interrupted write")
            )
        elif rel.endswith(MANIFEST):
            manifests.add(rel)
        elif rel.endswith(PARQUET):
            parquets[rel] = size
        else:
            report.findings.append(Finding(CORRUPT, "foreign_file", rel, "not a bronze file"))
    return manifests, parquets


def _manifest(
    store: LakeStore,
    rel: str,
    parquets: dict[str, int],
    streams: dict[tuple[str, str], Stream],
    report: Report,
    device: str | None,
    deep: bool,
) -> None:
    try:
        m = json.loads(store.read(rel))
        if not isinstance(m, dict) or any(k not in m for k in _FIELDS):
            raise ValueError("missing fields: " + ", ".join(k for k in _FIELDS if k not in m))
        key = FileKey.of_manifest(m)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        report.findings.append(Finding(CORRUPT, "bad_manifest", rel, str(exc)))
        return
    if device is not None and m["device"] != device:
        return
    report.files += 1
    dev, src = m["device"], m["source"]
    parquet = rel[: -len(MANIFEST)] + PARQUET
    if key.manifest_relpath != rel or key.file_id != m["id"]:
        report.findings.append(
            Finding(CORRUPT, "misplaced", rel, f"its content names {key.relpath}", dev, src)
        )
    stream = streams[(dev, src)]
    ordinal = int(m["ordinal"])
    if ordinal in stream.ordinals:
        report.findings.append(
            Finding(
                CORRUPT,
                "duplicate_ordinal",
                rel,
                f"ordinal {ordinal} also in {stream.ordinals[ordinal]}",
                dev,
                src,
            )
        )
    stream.ordinals[ordinal] = m["id"]
    stream.dropped.update(int(d["ordinal"]) for d in m.get("dropped", []))
    stream.files += 1
    stream.rows += int(m["rows"])
    stream.ranges[m["table"]].append((key.first_pos, key.last_pos, rel))
    if parquet not in parquets:
        report.findings.append(
            Finding(CORRUPT, "no_file", rel, "a manifest without its file", dev, src)
        )
        return
    problem = _file_problem(store, parquet, parquets[parquet], m, deep)
    if problem:
        report.findings.append(Finding(CORRUPT, "mismatch", parquet, problem, dev, src))


def _file_problem(
    store: LakeStore, rel: str, size: int, m: dict[str, Any], deep: bool
) -> str | None:
    if size != m["bytes"]:
        return f"{size} bytes, the manifest says {m['bytes']}"
    return _deep_problem(store.read(rel), m) if deep else None


def _deep_problem(data: bytes, m: dict[str, Any]) -> str | None:
    """The file itself: its sha256, and its Parquet footer's rows and fingerprint."""
    if hashlib.sha256(data).hexdigest() != m["sha256"]:
        return "sha256 differs from the manifest's"
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    except (OSError, pa.ArrowException) as exc:
        return f"not a readable Parquet file ({exc})"
    if meta.num_rows != m["rows"]:
        return f"{meta.num_rows} rows, the manifest says {m['rows']}"
    found = (meta.metadata or {}).get(b"edge_agent.schema_fingerprint", b"").decode()
    if found != m["schema_fingerprint"]:
        return f"schema fingerprint {found!r}, the manifest says {m['schema_fingerprint']!r}"
    return None


def _close(stream: Stream, dev: str, src: str, report: Report) -> dict[str, Any]:
    newest = max(stream.ordinals)
    missing = sorted(set(range(1, newest + 1)) - set(stream.ordinals) - stream.dropped)
    gaps = _ranges(missing)
    for first, last in gaps:
        text = str(first) if first == last else f"{first}-{last}"
        report.findings.append(
            Finding(GAP, "ordinal_gap", f"{dev}/{src}", f"ordinals {text} missing", dev, src)
        )
    for table, ranges in stream.ranges.items():
        ranges.sort()
        for (_, a_last, a_rel), (b_first, _, b_rel) in itertools.pairwise(ranges):
            if b_first <= a_last:
                report.findings.append(
                    Finding(
                        CORRUPT,
                        "overlap",
                        b_rel,
                        f"positions from {b_first} overlap {a_rel} (up to {a_last}) in {table}",
                        dev,
                        src,
                    )
                )
    known = sorted(stream.dropped & set(range(1, newest + 1)))
    return {
        "newest_ordinal": newest,
        "files": stream.files,
        "rows": stream.rows,
        "known_drops": known,
        "gaps": [list(g) for g in gaps],
    }


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def render(report: Report) -> str:
    lines = [f"lake {report.lake}: {report.files} file(s)"]
    for name, s in report.streams.items():
        drops = f", {len(s['known_drops'])} known drop(s)" if s["known_drops"] else ""
        state = (
            "complete"
            if not s["gaps"]
            else "GAPS " + ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in s["gaps"])
        )
        lines.append(
            f"  {name}: ordinals 1..{s['newest_ordinal']} {state}{drops}; "
            f"{s['rows']} rows in {s['files']} files"
        )
    for f in report.findings:
        lines.append(f"  ! {f.severity} {f.kind}: {f.path}: {f.detail}")
    lines.append("complete" if report.complete else f"{len(report.findings)} finding(s)")
    return "\n".join(lines)
