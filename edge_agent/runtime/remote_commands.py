"""Signed commands from the ``cmd`` topic, each answered on ``cmd/result``.

``flush`` (args: ``timeout`` seconds, default 60) seals and ships and answers
with what is still pending; ``snapshot`` (args: ``table``, optional) starts
re-snapshots; ``status`` answers with the status document; ``restart-capture``
(args: ``source``, optional) closes a source's pipeline so the next cycle
opens it afresh; ``trust-keys`` (args: ``keys``) replaces the trusted keys;
``replay`` is refused: the agent deletes a file once the sink confirmed it, so
there is no retained bronze to ship again (re-capture with ``snapshot``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.config_control import public_key
from edge_agent.control.documents import Command, Rejected
from edge_agent.control.signing import Verifier
from edge_agent.control.store import ConfigStore
from edge_agent.errors import EdgeAgentError
from edge_agent.runtime.agent import Agent

SEEN = 1000  # request ids remembered against replays (with their expiry)


class Hooks(Protocol):
    @property
    def agent(self) -> Agent | None: ...

    def flush(self, timeout: float) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...
    def figures(self) -> dict[str, float]: ...
    def request_snapshot(self, table: str | None) -> list[str]: ...


@dataclass
class Outcome:
    ok: bool
    outcome: str
    details: dict[str, Any]


class Commands:
    def __init__(self, hooks: Hooks, store: ConfigStore, on_keys: Callable[[Verifier], None]):
        self.hooks = hooks
        self.store = store
        self.on_keys = on_keys
        self.seen: dict[str, int] = {}

    def check(self, cmd: Command, now_ms: int) -> None:
        if cmd.expires_ms <= now_ms:
            raise Rejected(f"expired at {cmd.expires_ms} (now {now_ms}): send it again")
        if cmd.request_id in self.seen:
            raise Rejected(f"request {cmd.request_id!r} was already carried out (a replay)")
        self.seen[cmd.request_id] = cmd.expires_ms
        if len(self.seen) > SEEN:
            self.seen = {k: v for k, v in self.seen.items() if v > now_ms}

    def run(self, cmd: Command, now_ms: int) -> Outcome:
        handler = getattr(self, "_" + cmd.command.replace("-", "_"))
        try:
            result: Outcome = handler(cmd.args, now_ms, cmd.key_id)
        except Rejected:
            raise
        except (EdgeAgentError, ValueError, TypeError) as exc:
            raise Rejected(str(exc)) from exc
        return result

    def _flush(self, args: dict[str, Any], _now: int, _kid: str) -> Outcome:
        timeout = float(args.get("timeout", 60))
        answer = self.hooks.flush(min(max(timeout, 1.0), 3600.0))
        ok = bool(answer.get("ok"))
        return Outcome(ok, "flushed" if ok else "pending", answer)

    def _snapshot(self, args: dict[str, Any], _now: int, _kid: str) -> Outcome:
        table = args.get("table")
        if table is not None and not isinstance(table, str):
            raise Rejected("args.table: expected a table name")
        refused = self.hooks.request_snapshot(table)
        return Outcome(True, "snapshot started", {"table": table, "refused": refused})

    def _status(self, _args: dict[str, Any], _now: int, _kid: str) -> Outcome:
        return Outcome(True, "status", self.hooks.status())

    def _restart_capture(self, args: dict[str, Any], _now: int, _kid: str) -> Outcome:
        agent = self.hooks.agent
        source = args.get("source")
        if agent is None:
            raise Rejected("no agent is running")
        keys = [k for k in list(agent.pipelines) if source is None or k.split("/")[0] == source]
        if source is not None and not keys:
            raise Rejected(f"source {source!r} has no open capture: check the name")
        for key in keys:
            pipe = agent.pipelines.pop(key)
            pipe.rewind()  # unsealed work is read again by the new pipeline
            pipe.close()
        return Outcome(True, "capture restarted", {"pipelines": keys})

    def _trust_keys(self, args: dict[str, Any], now_ms: int, kid: str) -> Outcome:
        raw = args.get("keys")
        if not isinstance(raw, list) or not raw:
            raise Rejected("args.keys: expected a non-empty list of ed25519: keys")
        try:
            keys = tuple(public_key(k) for k in raw)
        except ValueError as exc:
            raise Rejected(f"args.keys: {exc} is not an ed25519: public key") from exc
        self.store.set_trusted_keys(keys, kid, now_ms)
        self.on_keys(Verifier(keys))
        return Outcome(True, "keys trusted", {"keys": len(keys)})

    def _replay(self, _args: dict[str, Any], _now: int, _kid: str) -> Outcome:
        raise Rejected(
            "replay is not available: the agent deletes a file once the sink confirmed it, "
            "so no shipped bronze is kept; use snapshot to capture the tables' rows again"
        )
