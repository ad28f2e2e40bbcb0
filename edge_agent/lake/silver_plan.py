"""What `lake silver` may merge: per (source, table) and device, the bronze files
whose ordinals lie in the unbroken run 1..N of their (device, source).

A missing ordinal that no later manifest lists as ``dropped`` may still arrive
(a file in flight, a collector behind), so a device's silver stops before it:
merging a later file first would apply changes out of order. Known drops are
stepped over (those changes are gone for good; `lake verify` lists them).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from edge_agent.bronze.layout import MANIFEST, PARQUET
from edge_agent.errors import EdgeAgentError
from edge_agent.lake.store import LakeStore

_REPAIR = "run `edge-agent lake verify` and repair the lake first"


@dataclass(frozen=True)
class BronzeFile:
    ordinal: int
    rel: str  # the Parquet file, relative to the lake root
    rows: int
    bytes: int


@dataclass
class Stream:
    """One (device, source): its ordinals, and how far they run unbroken."""

    ordinals: set[int] = field(default_factory=set)
    dropped: set[int] = field(default_factory=set)
    where: dict[int, str] = field(default_factory=dict)  # ordinal -> its file

    @property
    def unbroken(self) -> int:
        """The largest N with every ordinal 1..N present or a known drop."""
        have = self.ordinals | self.dropped
        n = 0
        while n + 1 in have:
            n += 1
        return n

    @property
    def waiting_at(self) -> int | None:
        """The first missing ordinal when later files are here, else None."""
        n = self.unbroken
        return n + 1 if self.ordinals and max(self.ordinals) > n else None


@dataclass
class Plan:
    streams: dict[tuple[str, str], Stream] = field(default_factory=dict)
    # (source, table) -> device -> files in ordinal order, each within the unbroken run
    tables: dict[tuple[str, str], dict[str, list[BronzeFile]]] = field(default_factory=dict)

    def gaps(self) -> list[str]:
        return [
            f"{dev}/{src}: waits for ordinal {s.waiting_at} (newest here {max(s.ordinals)})"
            for (dev, src), s in sorted(self.streams.items())
            if s.waiting_at is not None
        ]


def plan(store: LakeStore, source: str | None = None, device: str | None = None) -> Plan:
    """Read every manifest (one GET each on S3) and sort the files by table and device."""
    listing = dict(store.listing())
    streams: dict[tuple[str, str], Stream] = defaultdict(Stream)
    found: dict[tuple[str, str], dict[str, list[BronzeFile]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for rel in sorted(r for r in listing if r.endswith(MANIFEST)):
        parquet = rel[: -len(MANIFEST)] + PARQUET
        if parquet not in listing:  # a file is landed before its manifest, never after
            raise EdgeAgentError(f"{rel}: its Parquet file is missing; {_REPAIR}")
        m = _manifest(store, rel)
        if (source and m["source"] != source) or (device and m["device"] != device):
            continue
        stream = streams[(m["device"], m["source"])]
        ordinal = int(m["ordinal"])
        if ordinal in stream.where:
            raise EdgeAgentError(
                f"{m['device']}/{m['source']}: ordinal {ordinal} is in two files "
                f"({stream.where[ordinal]} and {parquet}): the device's ordinals started over "
                "(its state directory was lost), so its files have no single order; "
                "`lake verify` lists them (duplicate_ordinal). See docs/lake.md"
            )
        stream.where[ordinal] = parquet
        stream.ordinals.add(ordinal)
        stream.dropped.update(int(d["ordinal"]) for d in m.get("dropped", []))
        f = BronzeFile(int(m["ordinal"]), parquet, int(m["rows"]), int(m["bytes"]))
        found[(m["source"], m["table"])][m["device"]].append(f)
    result = Plan(streams=dict(streams))
    unbroken = {k: s.unbroken for k, s in streams.items()}  # once each: O(files)
    for (src, table), devices in sorted(found.items()):
        result.tables[(src, table)] = {
            dev: sorted(
                (f for f in files if f.ordinal <= unbroken[(dev, src)]),
                key=lambda f: f.ordinal,
            )
            for dev, files in sorted(devices.items())
        }
    return result


def _manifest(store: LakeStore, rel: str) -> dict[str, Any]:
    try:
        m = json.loads(store.read(rel))
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
        for k in ("device", "source", "table", "ordinal", "rows", "bytes"):
            if k not in m:
                raise ValueError(f"no {k!r}")
        int(m["ordinal"])
    except Exception as exc:  # unreadable JSON, a file gone, S3's errors
        raise EdgeAgentError(f"{rel}: unreadable manifest ({exc}); {_REPAIR}") from exc
    result: dict[str, Any] = m
    return result
