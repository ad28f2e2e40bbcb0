"""`edge-agent lake`: the lake owner's tools (docs/lake.md). Lake-side only."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.errors import EXIT_CORRUPT, EXIT_INCOMPLETE, EXIT_OK, EdgeAgentError
from edge_agent.lake.silver import DEFAULT_BATCH_ROWS

SubAdder = Callable[[Any, str, str], argparse.ArgumentParser]


def add_parsers(subs: Any, sub: SubAdder) -> None:
    p = sub(
        subs,
        "lake",
        "Lake side: prove a bronze lake complete, build current-state tables, restore.",
    )
    p.epilog = (
        "examples:\n  edge-agent lake verify --lake /srv/lake\n"
        "  edge-agent lake verify --lake /srv/lake --device gw-001 --deep --json\n"
        "  edge-agent lake restore --lake /srv/lake --source plant --device gw-001 "
        "--at-time 2026-12-04T10:00:00Z --to plant-10h.db\n"
        "  edge-agent lake silver --lake /srv/lake --to /srv/silver"
    )
    p.add_argument(
        "action",
        choices=("verify", "silver", "restore"),
        help="verify: ordinals contiguous per device and source (known drops aside), every "
        "file with its manifest and in agreement, no overlapping positions, no stray files; "
        "silver: the current state of every table as Delta Lake tables (incremental; "
        "needs the lake extra); restore: a source's tables as they were at a position or "
        "time, into a new SQLite file",
    )
    p.add_argument(
        "--lake",
        required=True,
        help="the lake directory, or s3://bucket/prefix (AWS credentials from the "
        "environment, as the s3 sink)",
    )
    p.add_argument("--endpoint-url", help="s3:// lakes: an S3-compatible store's URL")
    p.add_argument("--device", help="only this device's files")
    p.add_argument(
        "--deep", action="store_true", help="verify: also read every file: sha256, rows, schema"
    )
    p.add_argument("--json", action="store_true", help="verify, silver: print the report as JSON")
    p.add_argument("--source", help="restore: the source (sources.name); silver: only this source")
    p.add_argument("--table", help="restore: only this table (its real name)")
    p.add_argument(
        "--format",
        choices=("sqlite", "parquet"),
        default="sqlite",
        help="restore: a new SQLite file, or a new directory with one Parquet file per "
        "table (default sqlite)",
    )
    p.add_argument("--at-pos", type=int, help="restore: up to this position (default: all)")
    p.add_argument("--at-time", help="restore: up to this change time (ISO 8601, UTC if no offset)")
    p.add_argument(
        "--to",
        help="restore: the new SQLite file (or Parquet directory) to write; silver: the "
        "directory (or s3://bucket/prefix) of the Delta tables",
    )
    p.add_argument(
        "--engine",
        choices=("delta", "spark"),
        default="delta",
        help="silver: delta = incremental MERGE with delta-rs on this machine; spark = the "
        "same rows by Spark SQL, recomputed in full (default delta)",
    )
    p.add_argument(
        "--spark-master",
        default="local[2]",
        help="silver --engine spark: the Spark master URL (default local[2])",
    )
    p.add_argument(
        "--spark-format",
        default="parquet",
        help="silver --engine spark: the output format, e.g. delta where Spark has Delta "
        "Lake's jars (default parquet)",
    )
    p.add_argument(
        "--batch-rows",
        type=int,
        default=DEFAULT_BATCH_ROWS,
        help=f"silver: bronze changes per merge (bounds memory) (default {DEFAULT_BATCH_ROWS})",
    )


def cmd_lake(args: argparse.Namespace) -> int:
    from edge_agent.lake.store import open_store
    from edge_agent.lake.verify import render, verify

    if args.action == "restore":
        return _restore(args)
    if args.action == "silver":
        return _silver(args)
    report = verify(open_store(args.lake, args.endpoint_url or ""), args.device, args.deep)
    print(json.dumps(report.as_json(), indent=2) if args.json else render(report))
    if report.complete:
        return EXIT_OK
    return EXIT_CORRUPT if report.corrupt else EXIT_INCOMPLETE


def _silver(args: argparse.Namespace) -> int:
    from edge_agent.lake.store import open_store

    if args.to is None:
        raise EdgeAgentError("silver: give --to, the directory of the Delta tables")
    from edge_agent.lake import silver

    if args.engine == "spark":
        return _silver_spark(args)
    try:
        import deltalake  # noqa: F401 - only to say what is missing
    except ModuleNotFoundError as exc:
        raise EdgeAgentError(
            f"silver needs the lake extra ({exc.name} is missing): pip install 'edge-agent[lake]'"
        ) from exc
    report = silver.run(
        open_store(args.lake, args.endpoint_url or ""),
        silver.target_of(args.to, args.endpoint_url or ""),
        args.source,
        args.device,
        args.batch_rows,
    )
    print(json.dumps(report.as_json(), indent=2) if args.json else silver.render(report))
    return EXIT_INCOMPLETE if report.waiting else EXIT_OK


def _silver_spark(args: argparse.Namespace) -> int:
    from edge_agent.lake import silver_spark

    if args.lake.startswith("s3://") or args.to.startswith("s3://"):
        raise EdgeAgentError(
            "--engine spark reads a lake directory and writes a directory here; on a "
            "cluster, run edge_agent/lake/sql/silver.sql over s3a:// paths (docs/lake.md)"
        )
    written = silver_spark.run(
        Path(args.lake),
        Path(args.to),
        args.source,
        args.device,
        args.spark_master,
        args.spark_format,
    )
    for name, rows in sorted(written.items()):
        print(f"{name}: {rows} row(s) -> {args.to}")
    return EXIT_OK


def _restore(args: argparse.Namespace) -> int:
    from edge_agent.lake import restore
    from edge_agent.lake.store import open_store

    if not args.source or args.to is None:
        raise EdgeAgentError("restore: give --source and --to")
    store = open_store(args.lake, args.endpoint_url or "")
    cut = args.at_pos if args.at_pos is not None else 2**63 - 1
    if args.at_time:
        cut = min(cut, restore.cut_of(store, args.source, args.device, _at_ms(args.at_time)))
    if args.format == "parquet":
        counts = restore.write_parquet(
            store, args.source, args.device, cut, Path(args.to), args.table
        )
    else:
        tables = restore.replay(store, args.source, args.device, cut, args.table)
        counts = restore.write_sqlite(tables, Path(args.to))
    for name, rows in sorted(counts.items()):
        print(f"{name}: {rows} row(s)")
    print(
        f"restored {args.source} up to position {cut if cut < 2**63 - 1 else 'the end'} "
        f"into {args.to}"
    )
    return EXIT_OK


def _at_ms(text: str) -> int:
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EdgeAgentError(
            f"--at-time {text!r}: use ISO 8601, e.g. 2026-12-04T10:00:00Z"
        ) from exc
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)
