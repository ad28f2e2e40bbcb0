"""Applying a remote config: validate → store the candidate → switch → health window →
promote, or roll back to the last good config and say why.

Every step is durable before the next: a kill anywhere leaves a candidate file
that the next start rolls back (the agent then runs its last good config, or
the local file, and names it on ``config/reported``). Positions, the spool and
the state database belong to the state directory, which a config cannot move,
so nothing captured is lost across a switch, and a removed source's files
still ship.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.capture.registry import ops_for
from edge_agent.config import Config
from edge_agent.control.documents import DesiredConfig
from edge_agent.control.store import Applied, ConfigStore
from edge_agent.errors import ConfigErrors, EdgeAgentError
from edge_agent.log import get_logger
from edge_agent.runtime.agent import Agent

log = get_logger("edge_agent.remote")
HEALTH_KEYS = ("source.", "table.", "sink", "spool")


class Switcher(Protocol):
    @property
    def agent(self) -> Agent | None: ...

    def switch(self, cfg: Config) -> str | None:
        """Run ``cfg`` from now on; returns why not (the running config is kept)."""
        ...


@dataclass
class Report:
    """What ``config/reported`` says (after the IoT device twins' acknowledgements)."""

    state: str  # applying | applied | rejected | rolled_back
    code: int  # 102 applying, 200 applied, 400 rejected, 500 rolled back
    attempted: dict[str, Any] | None
    description: str

    def document(self, running: Applied | None, now_ms: int) -> dict[str, Any]:
        return {
            "state": self.state,
            "status_code": self.code,
            "version": running.version if running else 0,
            "sha256": running.sha256 if running else None,
            "scope": running.scope if running else "local",
            "attempted": self.attempted,
            "description": self.description,
            "at_ms": now_ms,
        }


class Applier:
    def __init__(
        self,
        store: ConfigStore,
        switcher: Switcher,
        load: Callable[[str | None], Config],
        health_window: float,
        report: Callable[[Report], None],
    ) -> None:
        self.store = store
        self.switcher = switcher
        self.load = load
        self.health_window = health_window
        self.report = report
        self.running = store.last_good()
        self.applying: Applied | None = None
        self.started = 0.0
        self.waiting: DesiredConfig | None = None  # arrived during an apply

    def recover(self) -> None:
        """At start-up: a candidate left by a kill or power cut is rolled back."""
        cand = self.store.abandon(
            "interrupted: the agent stopped while applying it or during its health window"
        )
        if cand is not None:
            log.warning("remote.rolled_back", version=cand.version, reason="interrupted")
            self.report(Report("rolled_back", 500, _ref(cand), self.store.refused()[_key(cand)]))

    # -- a new desired document ---------------------------------------------
    def offer(self, desired: DesiredConfig, now_ms: int) -> None:
        if self.applying is not None:
            self.waiting = desired
            return
        why = self._skip(desired)
        if why is not None:
            if why:
                self.report(Report("rejected", 400, _ref(desired), why))
            return
        try:
            cfg = self.load(desired.config)
            problems = [p for src in cfg.sources for p in ops_for(src).check(src)]
        except (ConfigErrors, EdgeAgentError) as exc:
            return self._reject(desired, f"invalid config: {exc}")
        if problems:
            return self._reject(desired, "checks on the device failed: " + "; ".join(problems))
        cand = Applied(
            desired.version, desired.sha256, desired.key_id, now_ms, desired.config, desired.scope
        )
        self.store.begin(cand)
        self.report(Report("applying", 102, _ref(cand), "validated; running its health window"))
        failed = self.switcher.switch(cfg)
        if failed is not None:
            self.store.abandon(f"could not start it: {failed}")
            self.report(Report("rolled_back", 500, _ref(cand), f"could not start it: {failed}"))
            return
        self.applying, self.started = cand, time.monotonic()
        log.info("remote.applying", version=cand.version, scope=cand.scope)

    def _skip(self, d: DesiredConfig) -> str | None:
        """None: apply it; "": nothing to do (said before); else why it is rejected."""
        running = self.running
        if _key(d) in self.store.refused():
            return ""  # its rejection is already reported (retained)
        if running is not None and d.scope == "group" and running.scope == "device":
            return ""  # a device's own document wins over its group's
        if running is not None and d.scope == running.scope:
            if d.version == running.version and d.sha256 == running.sha256:
                return ""
            if d.version <= running.version:
                return (
                    f"version {d.version} is not above the applied {running.version} "
                    "(a replay, or reuse of a version number): push a higher version"
                )
        return None

    def _reject(self, d: DesiredConfig, why: str) -> None:
        self.store.refuse(d.version, d.scope, why)
        log.warning("remote.rejected", version=d.version, reason=why)
        self.report(Report("rejected", 400, _ref(d), why))

    # -- the health window ----------------------------------------------------
    def poll(self, now_ms: int) -> DesiredConfig | None:
        """Promote or roll back once the window is over; returns a document that
        arrived meanwhile (the caller offers it next)."""
        cand = self.applying
        if cand is None or time.monotonic() - self.started < self.health_window:
            return None
        failures = self._failures()
        self.applying = None
        if failures:
            self._roll_back(cand, "unhealthy at the end of its health window: " + failures)
        else:
            self.store.promote()
            self.running = cand
            log.info("remote.applied", version=cand.version, scope=cand.scope)
            self.report(Report("applied", 200, _ref(cand), "healthy through its health window"))
        waiting, self.waiting = self.waiting, None
        return waiting

    def _failures(self) -> str:
        """The agent's active failures (sources, tables, sink, spool), and a probe of the
        sink: a sink that had nothing to ship yet is reached once."""
        agent = self.switcher.agent
        if agent is None:
            return "no agent"
        active = agent.reporter.active
        found = [f"{k}: {v[0]}" for k, v in sorted(active.items()) if k.startswith(HEALTH_KEYS)]
        if not any(k.startswith("sink") for k in active):
            try:
                agent.shipping.shipper.probe(agent.cfg.device_id)
            except EdgeAgentError as exc:
                found.append(f"sink {agent.cfg.sink.kind}: {exc}")
        return "; ".join(found)

    def _roll_back(self, cand: Applied, why: str) -> None:
        self.store.abandon(why)
        back = self.running.config if self.running else None
        failed = self.switcher.switch(self.load(back))
        log.warning("remote.rolled_back", version=cand.version, reason=why, back_failed=failed)
        suffix = f" (the previous config did not start either: {failed})" if failed else ""
        self.report(Report("rolled_back", 500, _ref(cand), why + suffix))


def _key(d: DesiredConfig | Applied) -> str:
    return f"{d.scope}:{d.version}"


def _ref(d: DesiredConfig | Applied) -> dict[str, Any]:
    return {"version": d.version, "sha256": d.sha256, "scope": d.scope}
