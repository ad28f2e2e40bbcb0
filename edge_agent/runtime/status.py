"""What `edge-agent status` reports, from the state database and the sources."""

from __future__ import annotations

from typing import Any

from edge_agent.capture.cursor import Checkpoint
from edge_agent.capture.registry import ops_for
from edge_agent.config import Config
from edge_agent.config_sources import SourceConfig
from edge_agent.spool.state import FAILED, READY, StateDB


def source_backlog(source: SourceConfig, after: int) -> tuple[int | str, dict[str, Any]]:
    """Changes waiting in a source's change log (or why it cannot be read), and the
    progress of its snapshots by table."""
    return ops_for(source).backlog(source, after)


def build_status(cfg: Config, state: StateDB, live: dict[str, Any] | None = None) -> dict[str, Any]:
    notes = state.notes()
    ready = state.files(READY)
    failed = state.files(FAILED)
    sources = []
    for src in cfg.sources:
        durable, next_ordinal = state.source_position(src.name)
        positions = state.table_positions(src.name)
        backlog, snapshots = (
            source_backlog(src, durable) if src.tables else ("no change log (timestamp mode)", {})
        )
        stamped = {t.name for t in src.timestamp_tables}
        tables = []
        for table in src.all_tables:
            files = [r for r in ready if r.source == src.name and r.table == table]
            last = state.last_shipped(src.name, table)
            tables.append(
                {
                    "table": table,
                    "last_captured_pos": positions.get(table),
                    "spooled_files": len(files),
                    "spooled_bytes": sum(r.bytes for r in files),
                    "last_shipped_file": last.relpath if last else None,
                    "last_shipped_ms": last.shipped_ms if last else None,
                    "snapshot": snapshots.get(table),
                    "mode": "timestamp" if table in stamped else "trigger",
                    "cursor": _cursor(state, src.name, table) if table in stamped else None,
                    "last_error": _note(notes, f"source.{src.name}/{table}.last_error"),
                }
            )
        sources.append(
            {
                "source": src.name,
                "path": str(src.path),
                "durable_pos": durable,
                "next_ordinal": next_ordinal,
                "waiting_in_source_log": backlog,
                "last_error": _note(notes, f"source.{src.name}.last_error"),
                "table_errors": _note(notes, f"source.{src.name}.tables"),
                "tables": tables,
            }
        )
    return {
        "device_id": cfg.device_id,
        "state_dir": str(cfg.agent.state_dir),
        "daemon_running": live is not None,
        "sources": sources,
        "spool": {
            "ready_files": len(ready),
            "ready_bytes": sum(r.bytes for r in ready),
            "quota_bytes": cfg.buffer.spool_quota,
            "when_full": cfg.buffer.when_full,
            "full": _note(notes, "spool.full"),
            "failed_files": [{"id": r.id, "error": r.error} for r in failed],
            "last_error": _note(notes, "spool.last_error"),
        },
        "sink": {"kind": cfg.sink.kind, "last_error": _note(notes, "sink.last_error")},
        "counters": state.counters(),
        "live": live or {},
    }


def _cursor(state: StateDB, source: str, table: str) -> dict[str, Any] | None:
    saved = state.cursor(source, table)
    if saved is None:
        return None
    point = Checkpoint.from_json(saved)
    return {
        "watermark_ms": point.watermark,
        "next_pos": point.next_pos,
        "seen_in_window": len(point.seen),
    }


def _note(notes: dict[str, tuple[str, int]], name: str) -> str | None:
    entry = notes.get(name)
    return entry[0] if entry else None


def render_text(status: dict[str, Any]) -> str:
    """A terminal view of build_status()'s result."""
    lines = [
        f"device {status['device_id']}  state {status['state_dir']}  "
        f"daemon {'running' if status['daemon_running'] else 'not running'}"
    ]
    for src in status["sources"]:
        lines.append(
            f"source {src['source']} ({src['path']}): durable position "
            f"{src['durable_pos']}, waiting in change log: "
            f"{src['waiting_in_source_log']}"
        )
        for key in ("last_error", "table_errors"):
            if src[key]:
                lines.append(f"  ! {src[key]}")
        for t in src["tables"]:
            shipped = t["last_shipped_file"] or "-"
            if t["last_error"]:
                lines.append(f"  ! {t['table']}: {t['last_error']}")
            lines.append(
                f"  {t['table']}: position {t['last_captured_pos']}, spooled "
                f"{t['spooled_files']} files / {t['spooled_bytes']} B, last shipped "
                f"{shipped}"
            )
            snap = t["snapshot"]
            if snap and not snap["finished"]:
                lines.append(
                    f"    snapshot {snap['percent']}% ({snap['rows_done']} of "
                    f"{snap['rows_total']} rows)"
                )
    spool = status["spool"]
    lines.append(
        f"spool: {spool['ready_files']} files / {spool['ready_bytes']} B of "
        f"{spool['quota_bytes']} B quota (when full: {spool['when_full']})"
    )
    for key in ("full", "last_error"):
        if spool[key]:
            lines.append(f"  ! {spool[key]}")
    for f in spool["failed_files"]:
        lines.append(f"  ! quarantined {f['id']}: {f['error']}")
    if status["sink"]["last_error"]:
        lines.append(f"sink {status['sink']['kind']}: ! {status['sink']['last_error']}")
    counters = status["counters"]
    if counters:
        lines.append("counters: " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    return "\n".join(lines)
