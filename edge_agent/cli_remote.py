"""`edge-agent keys` and `edge-agent remote`: the operator's commands for remote control
(docs/remote.md). Their imports (paho, cryptography) load only when they run."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.errors import EXIT_FAILURE, EXIT_OK

SubAdder = Callable[[Any, str, str], argparse.ArgumentParser]
EXAMPLES = {
    "keys": "example:\n  edge-agent keys generate --out fleet.key",
    "remote": "examples:\n"
    "  edge-agent remote push plant.toml --device gw-001 --key fleet.key "
    "--broker broker.toml --wait 120\n"
    "  edge-agent remote push plant.toml --group plant-a --key fleet.key --broker broker.toml\n"
    "  edge-agent remote cmd flush --device gw-001 --key fleet.key --broker broker.toml\n"
    "  edge-agent remote status --broker broker.toml",
}


def add_parsers(subs: Any, sub: SubAdder) -> None:
    p = sub(subs, "keys", "Generate the Ed25519 key pair that signs remote configs and commands.")
    p.add_argument("action", choices=("generate",), help="generate: a new key pair")
    p.add_argument("--out", type=Path, required=True, help="the private key file (mode 0600)")
    p.epilog = EXAMPLES["keys"]

    p = sub(subs, "remote", "Operator side: push signed configs, send commands, read status.")
    p.epilog = EXAMPLES["remote"]
    p.add_argument(
        "action",
        choices=("push", "cmd", "status"),
        help="push CONFIG to --device or --group; cmd NAME [ARGS] to --device; status of the "
        "fleet (or --device)",
    )
    p.add_argument(
        "what",
        nargs="*",
        help="push: the config file; cmd: the command name "
        "(flush, snapshot, status, restart-capture, trust-keys) and key=value args",
    )
    p.add_argument(
        "--broker",
        type=Path,
        required=True,
        help="a TOML file with the broker's [control] section (as on a device)",
    )
    p.add_argument("--device", help="the device id")
    p.add_argument("--group", help="push: the group (control.group on its devices)")
    p.add_argument("--key", type=Path, help="push, cmd: the private key (edge-agent keys generate)")
    p.add_argument(
        "--version",
        type=int,
        help="push: the config version (default: now, in "
        "seconds); a device applies only a version above the one it runs",
    )
    p.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=120.0,
        default=None,
        help="push: wait this many seconds (default 120) for the device's report",
    )
    p.add_argument(
        "--ttl",
        type=float,
        default=120.0,
        help="cmd: seconds the command stays valid and the answer is awaited (default 120)",
    )
    p.add_argument("--json", action="store_true", help="status: print JSON")


def cmd_keys(args: argparse.Namespace) -> int:
    from edge_agent.control.signing import generate

    public = generate(args.out)
    print(public)
    print(f"# private key in {args.out} (mode 0600); add the line above to control.trusted_keys")
    return EXIT_OK


def cmd_remote(args: argparse.Namespace) -> int:
    from edge_agent.control import operator

    broker = operator.load_broker(args.broker, os.environ)
    session = operator.Session(broker)
    try:
        if args.action == "status":
            return _status(operator.statuses(session, args.device), args.json)
        signer = _signer(args)
        if args.action == "push":
            return _push(args, session, signer)
        return _command(args, session, signer)
    finally:
        session.close()


def _signer(args: argparse.Namespace) -> Any:
    from edge_agent.control.signing import Signer
    from edge_agent.errors import EdgeAgentError

    if args.key is None:
        raise EdgeAgentError("--key: required to sign: give the private key file")
    return Signer(args.key)


def _push(args: argparse.Namespace, session: Any, signer: Any) -> int:
    from edge_agent.control import operator
    from edge_agent.errors import EdgeAgentError

    if len(args.what) != 1 or bool(args.device) == bool(args.group):
        raise EdgeAgentError("push: give one config file and either --device or --group")
    if args.wait is not None and not args.device:
        raise EdgeAgentError("push --wait: only with --device (a group has many reports)")
    text = Path(args.what[0]).read_text(encoding="utf-8")
    target = {"device": args.device} if args.device else {"group": args.group}
    result = operator.push(session, signer, text, target, args.version, args.wait)
    print(json.dumps(result, indent=2, sort_keys=True))
    return EXIT_OK if args.wait is None or result.get("state") == "applied" else EXIT_FAILURE


def _command(args: argparse.Namespace, session: Any, signer: Any) -> int:
    from edge_agent.control import operator
    from edge_agent.errors import EdgeAgentError

    if not args.what or not args.device:
        raise EdgeAgentError("cmd: give the command name and --device")
    name, extra = args.what[0], args.what[1:]
    values: dict[str, Any] = {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise EdgeAgentError(f"cmd argument {item!r}: use key=value, e.g. table=readings")
        values[key] = value.split(",") if key == "keys" else value
    result = operator.command(session, signer, args.device, name, values, args.ttl)
    print(json.dumps(result, indent=2, sort_keys=True))
    return EXIT_OK if result.get("ok") else EXIT_FAILURE


def _status(found: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps(found, indent=2, sort_keys=True))
        return EXIT_OK
    if not found:
        print("no device status on the broker")
        return EXIT_FAILURE
    for s in sorted(found, key=lambda v: str(v.get("device"))):
        cfg = s.get("config") or {}
        state = "online" if s.get("online") else "offline"
        print(
            f"{s.get('device')}: {state}, config v{cfg.get('version', '?')} "
            f"({cfg.get('scope', '?')}), spool {s.get('spool_bytes', '?')} B, "
            f"errors {len(s.get('errors') or [])}"
        )
    return EXIT_OK
