"""Shipping stage: ready files to the sink in order, with capped backoff and jitter
(several in flight when the sink can: shippers/base.py, ``ship_all``).

A local file is deleted only after the sink's put() returned (verified); the
ledger row moves to ``shipped`` first, so a crash in between only leaves a
local copy that the next start removes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from edge_agent.clock import Clock
from edge_agent.errors import CorruptFileError, EdgeAgentError
from edge_agent.log import get_logger
from edge_agent.shippers.base import Outgoing, Shipper, ship_all
from edge_agent.spool.outbox import Spool
from edge_agent.spool.state import READY, SHIPPED, FileRecord, StateDB

NOTE = "sink.last_error"
log = get_logger("edge_agent.shipping")


@dataclass
class ShipResult:
    shipped: int = 0
    quarantined: int = 0
    error: str | None = None


class ShipStage:
    def __init__(
        self,
        shipper: Shipper,
        spool: Spool,
        state: StateDB,
        clock: Clock,
        retry_min: float,
        retry_max: float,
        rng: random.Random | None = None,
        device: str = "",
        min_valid_ms: int = 0,
    ) -> None:
        self.device = device  # for manifests rebuilt before shipping
        self.min_valid_ms = min_valid_ms
        self.shipper = shipper
        self.spool = spool
        self.state = state
        self.clock = clock
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.failures = 0
        self.next_attempt = 0.0

    def _check_manifest(self, rec: FileRecord) -> None:
        wrong = self.spool.repair_manifest(
            rec, self.device, self.min_valid_ms, self.state.drops_to_report(rec.source, rec.id)
        )
        if wrong is not None:
            self.state.add_counter("manifests_rebuilt", 1)
            log.warning("manifest.rebuilt", file=rec.id, problem=wrong)

    def backoff(self) -> float:
        """Capped exponential delay with "equal jitter" (half fixed, half random)."""
        delay = min(self.retry_max, self.retry_min * 2 ** min(self.failures - 1, 30))
        return float(delay / 2 + self.rng.uniform(0, delay / 2))

    def due(self, now: float) -> bool:
        return now >= self.next_attempt

    def step(self, now: float, force: bool = False, budget: float = 2.0) -> ShipResult:
        result = ShipResult()
        if not force and not self.due(now):
            return result
        files = self._outgoing(self.clock.monotonic() + budget, result)
        for item, outcome in ship_all(self.shipper, files):
            if isinstance(outcome, CorruptFileError):
                self._quarantine(item.rec, outcome, result)
            elif isinstance(outcome, EdgeAgentError):
                self.failures += 1
                self.next_attempt = now + self.backoff()
                result.error = str(outcome)
                self.state.set_note(NOTE, result.error, self.clock.wall_ms())
                return result
            else:
                self.state.set_status(item.rec.id, SHIPPED, self.clock.wall_ms())
                self.spool.remove(item.rec)
                result.shipped += 1
        if self.failures or result.shipped:
            self.state.set_note(NOTE, None, self.clock.wall_ms())
        self.failures = 0
        self.next_attempt = 0.0
        return result

    def _outgoing(self, until: float, result: ShipResult) -> Iterator[Outgoing]:
        """The ready files in order, each with its manifest checked (a corrupt one is
        quarantined here); no new file is started after ``until``, the ones in flight
        finish."""
        for rec in self.state.files(READY):
            if self.clock.monotonic() > until:
                return
            try:
                self._check_manifest(rec)
            except CorruptFileError as exc:
                self._quarantine(rec, exc, result)
                continue
            yield Outgoing(self.spool.path(rec.relpath), self.spool.path(rec.manifest_relpath), rec)

    def _quarantine(self, rec: FileRecord, exc: CorruptFileError, result: ShipResult) -> None:
        self.spool.quarantine(rec, str(exc), self.clock.wall_ms())
        self.state.add_counter("corrupt_files", 1)
        result.quarantined += 1
