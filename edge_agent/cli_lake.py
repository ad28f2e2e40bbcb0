"""`edge-agent lake`: the lake owner's tools (docs/lake.md). Lake-side only."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.errors import EXIT_CORRUPT, EXIT_INCOMPLETE, EXIT_OK, EdgeAgentError

SubAdder = Callable[[Any, str, str], argparse.ArgumentParser]


def add_parsers(subs: Any, sub: SubAdder) -> None:
    p = sub(subs, "lake", "Lake side: prove a bronze lake complete (verify).")
    p.epilog = (
        "examples:\n  edge-agent lake verify --lake /srv/lake\n"
        "  edge-agent lake verify --lake /srv/lake --device gw-001 --deep --json"
    )
    p.add_argument(
        "action",
        choices=("verify",),
        help="verify: ordinals contiguous per device and source (known drops aside), every "
        "file with its manifest and in agreement, no overlapping positions, no stray files",
    )
    p.add_argument("--lake", type=Path, required=True, help="the lake directory")
    p.add_argument("--device", help="only this device's files")
    p.add_argument("--deep", action="store_true", help="also read every file: sha256, rows, schema")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_lake(args: argparse.Namespace) -> int:
    from edge_agent.lake.verify import render, verify

    if not args.lake.is_dir():
        raise EdgeAgentError(f"--lake {str(args.lake)!r}: no such directory")
    report = verify(args.lake, args.device, args.deep)
    print(json.dumps(report.as_json(), indent=2) if args.json else render(report))
    if report.complete:
        return EXIT_OK
    return EXIT_CORRUPT if report.corrupt else EXIT_INCOMPLETE
