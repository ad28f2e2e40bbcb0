"""What `edge-agent status` reports, from the state database and the sources."""

from __future__ import annotations

import time
from typing import Any

from edge_agent.capture.cursor import Checkpoint
from edge_agent.capture.registry import Backlog, ops_for
from edge_agent.config import Config
from edge_agent.config_sources import SourceConfig
from edge_agent.spool.state import FAILED, READY, StateDB
from edge_agent.units import format_size


def source_backlog(source: SourceConfig, after: int) -> Backlog:
    """Changes waiting in a source's change log (or why it cannot be read), the
    progress of its snapshots by table, and what else its database tells."""
    return ops_for(source).backlog(source, after)


def build_status(cfg: Config, state: StateDB, live: dict[str, Any] | None = None) -> dict[str, Any]:
    notes = state.notes()
    ready = state.files(READY)
    failed = state.files(FAILED)
    sources = []
    for src in cfg.sources:
        durable, next_ordinal = state.source_position(src.name)
        positions = state.table_positions(src.name)
        backlog = (
            source_backlog(src, durable)
            if src.tables
            else Backlog("no change log (timestamp mode)")
        )
        snapshots = backlog.snapshots
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
                    "mode": "timestamp" if table in stamped else src.mode_of_tables,
                    "cursor": _cursor(state, src, table) if table in stamped else None,
                    "last_error": _note(notes, f"source.{src.name}/{table}.last_error"),
                    "warning": _warnings(notes, f"source.{src.name}/{table}"),
                }
            )
        sources.append(
            {
                "source": src.name,
                "path": src.where,
                "durable_pos": durable,
                "next_ordinal": next_ordinal,
                "waiting_in_source_log": backlog.waiting,
                "database": backlog.details,
                "last_error": _note(notes, f"source.{src.name}.last_error"),
                "table_errors": _note(notes, f"source.{src.name}.tables"),
                "tables": tables,
            }
        )
    return {
        "state_rebuilt": _note(notes, "state.rebuilt"),
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
            # From the daemon's memory when the state database could not take the note
            # (its disk is full: the usual cause).
            "last_error": _note(notes, "spool.last_error") or (live or {}).get("spool_error"),
        },
        "sink": {"kind": cfg.sink.kind, "last_error": _note(notes, "sink.last_error")},
        "counters": state.counters(),
        "live": live or {},
    }


def _cursor(state: StateDB, source: SourceConfig, table: str) -> dict[str, Any] | None:
    saved = state.cursor(source.name, table)
    if saved is None:
        return None
    point = Checkpoint.from_json(saved)
    per_ms = 1000 if source.kind == "postgres" else 1  # PostgreSQL cursors are microseconds
    return {
        "watermark_ms": None if point.watermark is None else point.watermark // per_ms,
        "next_pos": point.next_pos,
        "seen_in_window": len(point.seen),
    }


def _warnings(notes: dict[str, tuple[str, int]], prefix: str) -> str | None:
    """A timestamp table's warnings: its clock, and rows its cursor format never reads."""
    found = [n for n in (_note(notes, f"{prefix}.{w}") for w in ("clock", "unread")) if n]
    return "; ".join(found) or None


def _note(notes: dict[str, tuple[str, int]], name: str) -> str | None:
    entry = notes.get(name)
    return entry[0] if entry else None


def problems(status: dict[str, Any]) -> list[str]:
    """Why the agent is not healthy (empty when it is): failing sources, tables or sink,
    quarantined files, a full spool. `status` exits non-zero with these."""
    found: list[str] = []
    for src in status["sources"]:
        for key in ("last_error", "table_errors"):
            if src[key]:
                found.append(f"source {src['source']}: {src[key]}")
        slot_warning = (src.get("database") or {}).get("slot_warning")
        if slot_warning:
            found.append(f"source {src['source']}: {slot_warning}")
        found += [
            f"table {src['source']}/{t['table']}: {t[key]}"
            for t in src["tables"]
            for key in ("last_error", "warning")
            if t.get(key)
        ]
    spool = status["spool"]
    for key in ("full", "last_error"):
        if spool[key]:
            found.append(f"spool: {spool[key]}")
    if spool["failed_files"]:
        found.append(f"spool: {len(spool['failed_files'])} quarantined file(s)")
    if status["sink"]["last_error"]:
        found.append(f"sink {status['sink']['kind']}: {status['sink']['last_error']}")
    return found


def _ago(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return ""
    seconds = max(0, (now_ms - ms) // 1000)
    if seconds < 120:
        return f" ({seconds} s ago)"
    if seconds < 7200:
        return f" ({seconds // 60} min ago)"
    return f" ({seconds // 3600} h ago)"


def render_text(status: dict[str, Any], now_ms: int | None = None) -> str:
    """A terminal view of build_status()'s result, sizes in human units."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    lines = [
        f"device {status['device_id']}  state {status['state_dir']}  "
        f"daemon {'running' if status['daemon_running'] else 'not running'}"
    ]
    if status.get("state_rebuilt"):
        lines.append(f"  rebuilt at start: {status['state_rebuilt']}")
    for src in status["sources"]:
        lines += _source_lines(src, now)
    lines += _spool_lines(status["spool"])
    live = status.get("live") or {}
    if live:
        lines.append(
            "live: "
            + ", ".join(
                f"{k} {format_size(v) if k.endswith('_bytes') else v}"
                for k, v in sorted(live.items())
                if v is not None
            )
        )
    if status["sink"]["last_error"]:
        lines.append(f"sink {status['sink']['kind']}: ! {status['sink']['last_error']}")
    counters = status["counters"]
    if counters:
        lines.append("counters: " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    return "\n".join(lines)


def _source_lines(src: dict[str, Any], now_ms: int) -> list[str]:
    lines = [
        f"source {src['source']} ({src['path']}): durable position {src['durable_pos']}, "
        f"waiting in change log: {src['waiting_in_source_log']}"
    ]
    lines += [f"  ! {src[key]}" for key in ("last_error", "table_errors") if src[key]]
    lines += _database_lines(src.get("database") or {}, src["waiting_in_source_log"], now_ms)
    for t in src["tables"]:
        for key in ("last_error", "warning"):
            if t.get(key):
                lines.append(f"  ! {t['table']}: {t[key]}")
        position = t["last_captured_pos"]
        shipped = t["last_shipped_file"] or "nothing yet"
        lines.append(
            f"  {t['table']}: position {'none yet' if position is None else position}, "
            f"spooled {t['spooled_files']} file(s) / {format_size(t['spooled_bytes'])}, "
            f"last shipped {shipped}{_ago(t['last_shipped_ms'], now_ms)}"
        )
        snap = t["snapshot"]
        if snap and not snap["finished"]:
            lines.append(
                f"    snapshot {snap['percent']}% ({snap['rows_done']} of "
                f"{snap['rows_total']} rows)"
            )
    return lines


def _database_lines(details: dict[str, Any], waiting: Any, now_ms: int) -> list[str]:
    lines = _slot_lines(details)
    if details.get("change_log_bytes") is not None:
        line = f"  change log {format_size(details['change_log_bytes'])} on disk"
        oldest = details.get("oldest_waiting_ms")
        if isinstance(waiting, int) and waiting and oldest and now_ms > oldest:
            age_s = (now_ms - oldest) / 1000
            line += (
                f"; oldest waiting change {age_s:.0f} s old "
                f"({waiting / max(age_s, 1):.1f} changes/s accumulate while capture waits)"
            )
        lines.append(line)
    oldest = details.get("oldest_transaction")
    if oldest:
        lines.append(
            f"  oldest open transaction: {oldest['age_s']} s (pid {oldest['pid']}, "
            f"{oldest['application'] or 'no application name'}, {oldest['state']}); "
            "capture cannot pass it until it ends"
        )
    return lines


def _slot_lines(details: dict[str, Any]) -> list[str]:
    """Logical mode: the replication slot, the WAL it holds, the warning above the limit."""
    if "slot" not in details:
        return []
    if not details.get("slot_exists"):
        return [f"  slot {details['slot']}: not created yet (the agent creates it on start)"]
    lines = [
        f"  slot {details['slot']}: confirmed {details['slot_confirmed_lsn']}, holds "
        f"{format_size(details['slot_lag_bytes'])} of WAL"
        + (f", in use by pid {details['slot_active_pid']}" if details["slot_active_pid"] else "")
    ]
    if details.get("slot_warning"):
        lines.append(f"  ! {details['slot_warning']}")
    return lines


def _spool_lines(spool: dict[str, Any]) -> list[str]:
    lines = [
        f"spool: {spool['ready_files']} file(s) / {format_size(spool['ready_bytes'])} of "
        f"{format_size(spool['quota_bytes'])} quota (when full: {spool['when_full']})"
    ]
    lines += [f"  ! {spool[key]}" for key in ("full", "last_error") if spool[key]]
    lines += [f"  ! quarantined {f['id']}: {f['error']}" for f in spool["failed_files"]]
    return lines
