"""The edge-agent command line: thin commands over the library, errors handled once.

Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 state directory in use,
4 flush finished with files still pending (docs/cli.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent import __version__, cli_lake, cli_remote
from edge_agent.config import Config, load_config
from edge_agent.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_SOURCE_FAILING,
    EXIT_USAGE,
    EdgeAgentError,
    PendingError,
    SourceFailingError,
    toml_value,
)

if TYPE_CHECKING:  # the runtime is imported lazily: import-time memory of small commands
    from edge_agent.runtime.agent import FlushResult

DEFAULT_CONFIG = "/etc/edge-agent/config.toml"

EXAMPLES = {
    "run": "example:\n  edge-agent run --config /etc/edge-agent/config.toml",
    "flush": "example:\n  edge-agent flush --config /etc/edge-agent/config.toml --timeout 120",
    "status": "examples:\n  edge-agent status --config /etc/edge-agent/config.toml --json\n"
    "  edge-agent status --watch 5",
    "triggers": "examples:\n  edge-agent triggers install --config config.toml\n"
    "  edge-agent triggers verify --config config.toml\n"
    "  edge-agent triggers uninstall --config config.toml --drop-log",
    "config": "example:\n  edge-agent config check /etc/edge-agent/config.toml",
    "snapshot": "example:\n  edge-agent snapshot --config /etc/edge-agent/config.toml "
    "--table readings",
    "demo": "example:\n  edge-agent demo --seconds 10 --dir ./demo",
    "collect": "example (on the lake side, with a [collector] section; see docs/mqtt.md):\n"
    "  edge-agent collect --config /etc/edge-agent/collector.toml",
}


def _seconds(text: str) -> float:
    """--timeout: a finite, positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= 7 * 86400:
        raise argparse.ArgumentTypeError(
            f"{text}: use a number of seconds above 0 and at most 604800 (7 days), e.g. 60"
        )
    return value


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("EDGE_AGENT_CONFIG", DEFAULT_CONFIG)),
        help=f"TOML config file (default: $EDGE_AGENT_CONFIG or {DEFAULT_CONFIG})",
    )


def _sub(
    subs: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
) -> argparse.ArgumentParser:
    return subs.add_parser(
        name,
        help=text,
        description=text,
        epilog=EXAMPLES.get(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Capture SQLite and PostgreSQL changes into bronze Parquet and ship them "
        "to a lake.",
        epilog="Run `edge-agent COMMAND --help` for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _config_arg(_sub(subs, "run", "Run the daemon in the foreground (systemd runs this)."))

    p = _sub(subs, "flush", "Seal open buffers, ship everything pending, wait for receipts.")
    _config_arg(p)
    p.add_argument(
        "--timeout", type=_seconds, default=60.0, help="seconds to wait for shipping (default 60)"
    )

    p = _sub(subs, "status", "Show positions, backlog, spool and errors per source and table.")
    _config_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=_seconds,
        metavar="SECONDS",
        help="show it again every SECONDS (default 2) until Ctrl-C; with --json, one JSON "
        "document per line",
    )

    p = _sub(subs, "triggers", "Install, verify or uninstall the capture triggers.")
    p.add_argument(
        "action",
        choices=("install", "verify", "uninstall"),
        help="install (or regenerate) the triggers and change log; verify that they are "
        "current; uninstall them (the log stays unless --drop-log). PostgreSQL logical mode: "
        "install checks the server and creates the publication, verify reports the slot, "
        "uninstall drops the slot (and the publication with --drop-log)",
    )
    _config_arg(p)
    p.add_argument(
        "--drop-log",
        action="store_true",
        help="uninstall: also drop the change log (refused while it holds "
        "uncaptured changes, unless --force)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="uninstall --drop-log even if changes are still waiting in the log (they are lost)",
    )

    p = _sub(subs, "snapshot", "Capture tables' current rows again (op r), then flush.")
    _config_arg(p)
    p.add_argument("--table", help="only this table (default: every configured table)")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=3600.0,
        help="seconds to wait for the snapshot and the flush (default 3600)",
    )

    p = _sub(subs, "config", "Validate a config file.")
    p.add_argument("action", choices=("check",), help="check: validate the file and the device")
    p.add_argument(
        "file", type=Path, nargs="?", default=None, help="the TOML file to check (or --config)"
    )
    _config_arg(p)

    _config_arg(_sub(subs, "collect", "Lake side: receive files over MQTT into the lake."))
    cli_remote.add_parsers(subs, _sub)
    cli_lake.add_parsers(subs, _sub)

    p = _sub(subs, "demo", "Run a demo app and the agent on embedded defaults; show the lake.")
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("demo"),
        help="working directory for the demo database, state, lake, config and log (default demo)",
    )
    p.add_argument(
        "--seconds", type=float, default=10.0, help="how long the demo app writes (default 10)"
    )
    return parser


def _load(path: Path) -> Config:
    from edge_agent.control.effective import load_effective

    cfg = load_effective(path, os.environ)
    from edge_agent.log import configure_logging

    configure_logging(cfg.agent.log_format, cfg.agent.log_level)
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.runtime.service import run_daemon

    cfg = _load(args.config)
    return run_daemon(
        cfg,
        lambda: _load(args.config),
        os.environ,
        lambda remote: load_config(args.config, os.environ, remote=remote),
    )


def cmd_flush(args: argparse.Namespace) -> int:
    from edge_agent.runtime.service import flush

    result = flush(_load(args.config), args.timeout)
    _refuse_unfinished(result, "")
    print("flushed: every captured change is shipped")
    return EXIT_OK


def _refuse_unfinished(result: FlushResult, what: str) -> None:
    """Files still pending (exit 4) and a failing source (exit 5) are different troubles
    with different fixes; each gets its own exit code and message."""
    errors = "; ".join(result.errors)
    if result.pending_files:
        raise PendingError(
            f"{what}{result.pending_files} file(s), {result.pending_bytes} bytes still pending"
            + (f": {errors}" if errors else "")
            + " — they stay in the spool and ship when the sink is reachable; "
            "see `edge-agent status`"
        )
    if not result.caught_up and not result.errors:
        raise PendingError(
            f"{what}capture did not catch up before the timeout: changes still wait in the "
            "source (nothing is lost); run flush again or give it a longer --timeout"
        )
    if result.errors:
        raise SourceFailingError(
            f"{what}nothing is left in the spool, but capture is failing: {errors} — "
            "changes of the failing source(s) are not being captured until that is fixed; "
            "see `edge-agent status`"
        )


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if args.watch is None:
        return _status_once(cfg, args.json, indent=2)
    code = EXIT_OK
    try:
        while True:
            if not args.json:
                # A terminal is redrawn in place; a pipe gets one frame after another.
                print("\033[H\033[2J" if sys.stdout.isatty() else "", end="")
            code = _status_once(cfg, args.json, indent=None)
            if not args.json:
                print()
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:  # Ctrl-C ends the watch: exit as the last report says
        return code


def _status_once(cfg: Config, as_json: bool, indent: int | None) -> int:
    from edge_agent.runtime.service import status
    from edge_agent.runtime.status import problems, render_text

    report = status(cfg)
    print(json.dumps(report, indent=indent) if as_json else render_text(report))
    unhealthy = problems(report)
    for reason in unhealthy:
        print(f"unhealthy: {reason}", file=sys.stderr)
    return EXIT_SOURCE_FAILING if unhealthy else EXIT_OK


def cmd_triggers(args: argparse.Namespace) -> int:
    from edge_agent.runtime.service import triggers

    lines, ok = triggers(_load(args.config), args.action, args.drop_log, args.force)
    for line, problem in lines:
        print(line, file=sys.stderr if problem else sys.stdout)
    return EXIT_OK if ok else EXIT_FAILURE


def cmd_snapshot(args: argparse.Namespace) -> int:
    from edge_agent.runtime.service import snapshot

    result = snapshot(_load(args.config), args.table, args.timeout, _progress_printer())
    _refuse_unfinished(result, "snapshot captured, but ")
    print("snapshot complete and shipped")
    return EXIT_OK


def _progress_printer() -> Callable[[dict[str, Any]], None]:
    """A progress bar on a terminal; silence otherwise (logs and status have it)."""

    def show(jobs: dict[str, Any]) -> None:
        if not sys.stderr.isatty() or not jobs:
            return
        done = sum(j["rows_done"] for j in jobs.values())
        total = max(1, sum(max(j["rows_total"], j["rows_done"]) for j in jobs.values()))
        share = 1.0 if all(j["finished"] for j in jobs.values()) else min(1.0, done / total)
        bar = "#" * int(share * 30)
        print(
            f"\rsnapshot [{bar:<30}] {share:4.0%} {done}/{total} rows",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if share >= 1.0:
            print(file=sys.stderr)

    return show


def cmd_config(args: argparse.Namespace) -> int:
    path = args.file or args.config
    cfg = _load(path)
    problems = _device_problems(cfg)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    print(
        f"ok: {path}: device {cfg.device_id}, {len(cfg.sources)} source(s), "
        f"sink {cfg.sink.kind} -> {_sink_target(cfg)}"
    )
    for src in cfg.sources:
        if not src.path.exists():
            print(f"warning: sources[{src.name}].path {str(src.path)!r} does not exist yet")
    return EXIT_OK


def _device_problems(cfg: Config) -> list[str]:
    """What a valid file can still get wrong on this device: tables and columns that
    do not exist, directories the agent cannot write."""
    from edge_agent.capture.registry import ops_for
    from edge_agent.fsutil import unwritable

    problems = [p for src in cfg.sources for p in ops_for(src).check(src)]
    dirs = [("agent.state_dir", cfg.agent.state_dir)]
    if cfg.sink.kind == "dir":
        dirs.append(("sink.path", cfg.sink.path))
    for key, where in dirs:
        why = unwritable(where)
        if why:
            problems.append(
                f"{key} = {toml_value(str(where))}: cannot be written ({why}): give a "
                "directory this user may write"
            )
    return problems


def cmd_collect(args: argparse.Namespace) -> int:
    from edge_agent.lake.collect import run_collector

    return run_collector(_load(args.config))


def _sink_target(cfg: Config) -> str:
    if cfg.sink.kind == "s3":
        return f"s3://{cfg.sink.bucket}/{cfg.sink.prefix}"
    if cfg.sink.kind == "mqtt":
        return f"{cfg.sink.broker.where}, topics {cfg.sink.topic_prefix}/{cfg.device_id}/..."
    return str(cfg.sink.path)


def cmd_demo(args: argparse.Namespace) -> int:
    from edge_agent.demo import run_demo

    return run_demo(args.dir, args.seconds)


COMMANDS = {
    "run": cmd_run,
    "flush": cmd_flush,
    "status": cmd_status,
    "triggers": cmd_triggers,
    "config": cmd_config,
    "demo": cmd_demo,
    "snapshot": cmd_snapshot,
    "collect": cmd_collect,
    "keys": cli_remote.cmd_keys,
    "remote": cli_remote.cmd_remote,
    "lake": cli_lake.cmd_lake,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edge_agent.log import configure_logging

    configure_logging("auto", "info")
    try:
        return COMMANDS[args.command](args)
    except EdgeAgentError as exc:
        print(f"edge-agent {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except BrokenPipeError:  # `edge-agent status | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
