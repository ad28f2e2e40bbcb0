"""Remote control on the daemon's thread: verify what arrives, apply or answer it, and
publish status, metrics and reports (topics in docs/protocol.md).

Nothing unsigned, expired, replayed, oversized or meant for another device is
acted on: each is rejected with its reason on ``config/reported`` or
``cmd/result``, counted (``remote_rejected``) and logged; the running config
is untouched. A message never raises out of here.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

from edge_agent import __version__
from edge_agent.config import Config
from edge_agent.control.documents import Rejected, command, desired_config, for_me, open_message
from edge_agent.control.remote import ControlLink, Inbox
from edge_agent.control.signing import Verifier
from edge_agent.control.store import ConfigStore
from edge_agent.log import get_logger
from edge_agent.runtime.remote_apply import Applier, Report, Switcher
from edge_agent.runtime.remote_commands import Commands, Hooks, Outcome
from edge_agent.runtime.status import problems

log = get_logger("edge_agent.remote")


class RemoteHooks(Switcher, Hooks, Protocol):
    """What the daemon offers remote control (runtime/loop.py's Daemon)."""


class RemoteControl:
    def __init__(
        self,
        cfg: Config,
        hooks: RemoteHooks,
        load: Callable[[str | None], Config],
        wake: Callable[[], None],
    ) -> None:
        control = cfg.control
        if control is None:
            raise ValueError("no [control] section")
        self.cfg, self.control, self.hooks = cfg, control, hooks
        self.device = cfg.device_id
        self.store = ConfigStore(cfg.agent.state_dir)
        self.verifier = Verifier(self.store.trusted_keys() or control.trusted_keys)
        self.inbox: Inbox = queue.Queue()
        self.link = ControlLink(control, self.device, self.inbox, wake)
        self.applier = Applier(self.store, hooks, load, control.health_window, self._reported)
        self.commands = Commands(hooks, self.store, self._set_verifier)
        self.started = time.monotonic()
        self._next_status = 0.0
        self._next_metrics = time.monotonic() + control.metrics_interval
        self._last_report: Report | None = None

    def start(self) -> None:
        self.applier.recover()
        if self._last_report is None:
            self._reported(Report("applied", 200, None, "running at start-up"))
        self.link.start()

    def close(self) -> None:
        self.link.close({"online": False, "device": self.device, "reason": "stopped"})

    def _set_verifier(self, verifier: Verifier) -> None:
        self.verifier = verifier

    # -- every cycle ------------------------------------------------------------
    def poll(self) -> None:
        now_ms = int(time.time() * 1000)
        while True:
            try:
                topic, payload = self.inbox.get_nowait()
            except queue.Empty:
                break
            self._handle(topic, payload, now_ms)
        later = self.applier.poll(now_ms)
        if later is not None:
            self.applier.offer(later, now_ms)
        now = time.monotonic()
        if now >= self._next_status:
            self._next_status = now + self.control.status_interval
            self.link.publish(self.link.topics.status, self._status(), retain=True)
        if now >= self._next_metrics:
            self._next_metrics = now + self.control.metrics_interval
            self.link.publish(self.link.topics.metrics, self._metrics())

    def _handle(self, topic: str, payload: bytes, now_ms: int) -> None:
        topics = self.link.topics
        if not payload:
            return  # a retained document cleared by the operator
        try:
            document, kid = open_message(payload, self.verifier, self.control.max_message_bytes)
            if topic == topics.cmd:
                self._command(document, kid, now_ms)
                return
            desired = desired_config(document, kid)
            for_me(desired.target, self.device, self.control.group)
            if (topic == topics.desired) != (desired.scope == "device"):
                raise Rejected(f"a {desired.scope} document on {topic}")
            self.applier.offer(desired, now_ms)
        except Rejected as exc:
            self._rejected(topic, payload, str(exc))
        except Exception as exc:  # a message must never stop the daemon
            log.exception("remote.failed", topic=topic)
            self._rejected(topic, payload, f"could not be handled ({type(exc).__name__}: {exc})")

    def _rejected(self, topic: str, payload: bytes, why: str) -> None:
        agent = self.hooks.agent
        if agent is not None:
            agent.state.add_counter("remote_rejected", 1)
        log.warning("remote.rejected", topic=topic, bytes=len(payload), reason=why)
        if topic == self.link.topics.cmd:
            result = {"request_id": None, "ok": False, "outcome": "rejected", "details": why}
            self.link.publish(self.link.topics.cmd_result, result)
        else:
            self._reported(Report("rejected", 400, None, why))

    def _command(self, document: dict[str, Any], kid: str, now_ms: int) -> None:
        cmd = command(document, kid)
        for_me(cmd.target, self.device, self.control.group)
        try:
            self.commands.check(cmd, now_ms)
            outcome = self.commands.run(cmd, now_ms)
        except Rejected as exc:
            outcome = Outcome(False, "rejected", {"reason": str(exc)})
            log.warning("remote.command_rejected", request_id=cmd.request_id, reason=str(exc))
        result = {
            "request_id": cmd.request_id,
            "command": cmd.command,
            "ok": outcome.ok,
            "outcome": outcome.outcome,
            "details": outcome.details,
            "at_ms": int(time.time() * 1000),
        }
        self.link.publish(self.link.topics.cmd_result, result)

    # -- what the device says -------------------------------------------------------
    def _reported(self, report: Report) -> None:
        self._last_report = report
        document = report.document(self.applier.running, int(time.time() * 1000))
        self.link.publish(self.link.topics.reported, document, retain=True)

    def _status(self) -> dict[str, Any]:
        running = self.applier.running
        status = self.hooks.status()
        return {
            "online": True,
            "device": self.device,
            "agent_version": __version__,
            "config": running.summary() if running else {"version": 0, "scope": "local"},
            "uptime_s": round(time.monotonic() - self.started),
            "sources": {
                s["source"]: {
                    "durable_pos": s["durable_pos"],
                    "waiting": s["waiting_in_source_log"],
                    "last_error": s["last_error"],
                }
                for s in status.get("sources", [])
            },
            "spool_bytes": status.get("spool", {}).get("ready_bytes"),
            "last_shipped": _last_shipped(status),
            "errors": problems(status),
        }

    def _metrics(self) -> dict[str, Any]:
        """The Prometheus endpoint's figures, and per source its backlog (and a logical
        source's slot lag)."""
        status = self.hooks.status()
        return {
            "device": self.device,
            "figures": self.hooks.figures(),
            "sources": {
                s["source"]: {
                    "durable_pos": s["durable_pos"],
                    "waiting": s["waiting_in_source_log"],
                    **{k: v for k, v in (s.get("database") or {}).items() if k.startswith("slot_")},
                }
                for s in status.get("sources", [])
            },
            "at_ms": int(time.time() * 1000),
        }

    def config_version(self) -> int:
        running = self.applier.running
        return running.version if running else 0


def _last_shipped(status: dict[str, Any]) -> str | None:
    shipped = [
        t["last_shipped_file"]
        for s in status.get("sources", [])
        for t in s.get("tables", [])
        if t.get("last_shipped_file")
    ]
    return shipped[-1] if shipped else None
