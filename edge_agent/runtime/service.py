"""One library function per CLI command: build objects from config and run them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from edge_agent.capture.cursor import Checkpoint
from edge_agent.capture.registry import TriggerRequest, ops_for
from edge_agent.capture.slot_checkpoint import CHECKPOINT
from edge_agent.capture.slot_checkpoint import Checkpoint as SlotCheckpoint
from edge_agent.clock import SystemClock
from edge_agent.config import Config
from edge_agent.control.socket import send_request
from edge_agent.errors import EdgeAgentError, PendingError
from edge_agent.log import configure_logging
from edge_agent.runtime.agent import Agent, FlushResult
from edge_agent.runtime.loop import Daemon, RemoteSupport
from edge_agent.runtime.status import build_status, source_backlog
from edge_agent.runtime.systemd import Notifier
from edge_agent.shippers.factory import build_shipper
from edge_agent.spool.state import StateDB, snapshot_request
from edge_agent.spool.statedir import StateDir


def open_agent(cfg: Config, statedir: StateDir) -> Agent:
    return Agent(cfg, SystemClock(), build_shipper(cfg.sink), statedir)


def run_daemon(
    cfg: Config,
    reload_config: Callable[[], Config],
    environ: Mapping[str, str],
    load_remote: Callable[[str | None], Config] | None = None,
) -> int:
    """``load_remote``: a config from a remote document's text (None: the local file);
    remote control runs when it is given and the config has [control]."""
    configure_logging(cfg.agent.log_format, cfg.agent.log_level)
    statedir = StateDir(cfg.agent.state_dir)
    statedir.lock()
    try:
        notifier = Notifier(environ.get("NOTIFY_SOCKET"), environ.get("WATCHDOG_USEC"))
        support = None if load_remote is None else RemoteSupport(load_remote, _request_snapshots)
        daemon = Daemon(
            cfg, lambda c: open_agent(c, statedir), reload_config, notifier, SystemClock(), support
        )
        return daemon.run()
    finally:
        statedir.unlock()


def flush(cfg: Config, timeout: float) -> FlushResult:
    """Ask the running daemon to flush, or flush one-shot when none runs."""
    statedir = StateDir(cfg.agent.state_dir)
    answer = _ask_daemon(statedir, "flush", {"timeout": timeout}, timeout + 30)
    if answer is not None:
        if "pending_files" not in answer:
            why = answer.get("error") or "an answer without a flush result"
            raise EdgeAgentError(
                f"the daemon could not flush: {why}; see its log (journalctl -u edge-agent)"
            )
        return FlushResult(
            answer["pending_files"],
            answer["pending_bytes"],
            answer["errors"],
            caught_up=bool(answer.get("caught_up", True)),  # an older daemon does not say
        )
    statedir.lock()
    try:
        agent = open_agent(cfg, statedir)
        try:
            return agent.flush(agent.clock.monotonic() + timeout)
        finally:
            agent.close()
    finally:
        statedir.unlock()


def status(cfg: Config) -> dict[str, Any]:
    statedir = StateDir(cfg.agent.state_dir)
    answer = _ask_daemon(statedir, "status", {}, 30)
    if answer is not None and "status" in answer:
        report: dict[str, Any] = answer["status"]
        return report
    if not statedir.db_path.exists():
        raise EdgeAgentError(
            f"no state in {str(cfg.agent.state_dir)!r}: the agent has not run with this "
            "config yet (start it with `edge-agent run`)"
        )
    state = StateDB(statedir.db_path)
    try:
        return build_status(cfg, state)
    finally:
        state.close()


def _ask_daemon(
    statedir: StateDir, command: str, args: dict[str, Any], timeout: float
) -> dict[str, Any] | None:
    if not statedir.socket_path.exists():
        return None
    try:
        return send_request(statedir.socket_path, command, args, timeout)
    except ConnectionError:
        return None  # a stale socket: no daemon listens
    except TimeoutError as exc:
        raise EdgeAgentError(
            f"the daemon did not answer {command!r} in {timeout:.0f}s: see its log "
            "(journalctl -u edge-agent)"
        ) from exc


def triggers(
    cfg: Config, action: str, drop_log: bool, force: bool
) -> tuple[list[tuple[str, bool]], bool]:
    """Install, verify or uninstall capture triggers on every configured source.

    Returns the report lines, each with whether it is a problem, and overall success.
    """
    lines: list[tuple[str, bool]] = []
    ok = True
    positions, captured = _durable_positions(cfg)
    clock = SystemClock()
    for src in cfg.sources:
        req = TriggerRequest(
            action,
            positions.get(src.name, 0),
            clock.wall_ms(),
            drop_log,
            force,
            frozenset(captured.get(src.name, set())),
        )
        try:
            done, good = ops_for(src).triggers(src, req)
            lines += [(f"{src.name}: {line}", not good) for line in done]
            ok = ok and good
        except EdgeAgentError as exc:
            lines.append((f"{src.name}: error: {exc}", True))
            ok = False
    return lines, ok


def snapshot(
    cfg: Config, table: str | None, timeout: float, progress: Callable[[dict[str, Any]], None]
) -> FlushResult:
    """Re-capture tables' current rows as op "r" (all configured tables, or one), then flush.

    Works through the running daemon when there is one, else one-shot.
    """
    refused = _request_snapshots(cfg, table)
    result = _run_snapshots(cfg, timeout, progress)
    result.errors.extend(refused)
    return result


def _request_snapshots(cfg: Config, table: str | None) -> list[str]:
    """Start what can be snapshotted; returns why each other table cannot be."""
    now_ms = SystemClock().wall_ms()
    asked = 0
    refused: list[str] = []
    for src in cfg.sources:
        tables = [t for t in src.tables if table is None or table in (t, _bare(t, src.kind))]
        stamped = [
            t.name
            for t in src.timestamp_tables
            if table is None or table in (t.name, _bare(t.name, src.kind))
        ]
        asked += len(tables) + len(stamped)
        if tables and src.mode == "logical":
            _request_rereads(cfg, src.name, tables, now_ms)  # taken at a transaction boundary
        elif tables:
            refused += ops_for(src).request_snapshot(src, tables, now_ms).values()
        if stamped:
            _request_rereads(cfg, src.name, stamped, now_ms)
    if not asked:
        raise EdgeAgentError(f"table {table!r} is not in any source's tables: check the name")
    if len(refused) == asked:
        raise EdgeAgentError("nothing to snapshot: " + "; ".join(refused))
    return refused


def _bare(table: str, kind: str) -> str:
    """A PostgreSQL table of schema public may be named without it, as in the config."""
    return table.removeprefix("public.") if kind == "postgres" else table


def _request_rereads(cfg: Config, source: str, tables: list[str], now_ms: int) -> None:
    """Timestamp tables have no change log: the agent's state database carries the
    request, and the pipeline reads the table again from the start (op "r")."""
    statedir = StateDir(cfg.agent.state_dir)
    statedir.prepare()
    state = StateDB(statedir.db_path)
    try:
        for table in tables:
            state.set_note(snapshot_request(source, table), str(now_ms), now_ms)
    finally:
        state.close()


def _run_snapshots(
    cfg: Config, timeout: float, progress: Callable[[dict[str, Any]], None]
) -> FlushResult:
    statedir = StateDir(cfg.agent.state_dir)
    if _ask_daemon(statedir, "status", {}, 30) is not None:
        _wait_for_daemon_snapshots(cfg, statedir, timeout, progress)
        return flush(cfg, timeout)
    statedir.lock()
    try:
        agent = open_agent(cfg, statedir)
        try:
            return _snapshot_one_shot(agent, timeout, progress)
        finally:
            agent.close()
    finally:
        statedir.unlock()


def _snapshot_one_shot(
    agent: Agent, timeout: float, progress: Callable[[dict[str, Any]], None]
) -> FlushResult:
    deadline = agent.clock.monotonic() + timeout
    while agent.clock.monotonic() < deadline:
        now = agent.clock.monotonic()
        agent.step(now, drain_until=min(deadline, now + 0.5))
        jobs = _jobs(agent.cfg)
        progress(jobs)
        if all(j["finished"] for j in jobs.values()):
            return agent.flush(deadline)
    raise PendingError(_unfinished(_jobs(agent.cfg), timeout))


def _wait_for_daemon_snapshots(
    cfg: Config, statedir: StateDir, timeout: float, progress: Callable[[dict[str, Any]], None]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = _jobs(cfg)
        progress(jobs)
        if all(j["finished"] for j in jobs.values()):
            return
        time.sleep(0.5)
    raise PendingError(_unfinished(_jobs(cfg), timeout))


def _unfinished(jobs: dict[str, Any], timeout: float) -> str:
    open_jobs = {k: f"{j['percent']}%" for k, j in jobs.items() if not j["finished"]}
    return (
        f"snapshot not finished after {timeout:.0f}s ({open_jobs}); it continues where "
        "it stopped the next time the agent runs (or raise --timeout)"
    )


def _jobs(cfg: Config) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for src in cfg.sources:
        jobs = source_backlog(src, 0).snapshots if src.tables else {}
        found.update({f"{src.name}.{t}": j for t, j in jobs.items() if t in src.tables})
    found.update(_reread_jobs(cfg))
    return found


def _reread_jobs(cfg: Config) -> dict[str, Any]:
    """Timestamp tables being read again: finished once the request was taken and the
    re-read's end is in sealed files (the checkpoint's snapshot bound is cleared)."""
    path = StateDir(cfg.agent.state_dir).db_path
    stamped = [(s.name, t.name) for s in cfg.sources for t in s.timestamp_tables]
    logical = [(s.name, t) for s in cfg.sources if s.mode == "logical" for t in s.tables]
    if not (stamped or logical) or not path.exists():
        return {}
    state = StateDB(path)
    try:
        notes = state.notes()
        jobs = {}
        for source, table in stamped + logical:
            asked = snapshot_request(source, table) in notes
            if (source, table) in logical:
                slot = SlotCheckpoint.loads(state.cursor(source, CHECKPOINT))
                running = slot is not None and table in slot.snapshot
            else:
                running = Checkpoint.from_json(state.cursor(source, table)).snapshot
            if asked or running:
                jobs[f"{source}.{table}"] = {
                    "finished": False,
                    "percent": 0,
                    "rows_done": 0,
                    "rows_total": 0,
                }
        return jobs
    finally:
        state.close()


def _durable_positions(cfg: Config) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Seeds for new change logs (positions never repeat after a reinstall), and the
    tables each source has sealed files of (a reinstall then re-snapshots them)."""
    path = StateDir(cfg.agent.state_dir).db_path
    if not path.exists():
        return {}, {}
    state = StateDB(path)
    try:
        return (
            {s.name: state.source_position(s.name)[0] for s in cfg.sources},
            {s.name: set(state.table_positions(s.name)) for s in cfg.sources},
        )
    finally:
        state.close()
