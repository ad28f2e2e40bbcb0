"""The spool's disk quota and its explicit policy when full.

``block`` (default): capture pauses; changes stay in the source's change log
and are captured once shipping frees space. ``drop_oldest``: whole oldest
sealed files are deleted, counted (``dropped_files``, ``dropped_changes``) and
reported in status; the lake sees the gap in the batch ordinals.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.bronze.writer import BronzeWriter
from edge_agent.clock import Clock
from edge_agent.config import BufferConfig
from edge_agent.log import get_logger
from edge_agent.spool.outbox import Spool
from edge_agent.spool.state import DROPPED, READY, FileRecord, StateDB

log = get_logger("edge_agent.quota")
NOTE = "spool.full"


@dataclass
class Room:
    ok: bool
    dropped_files: int = 0


class Quota:
    def __init__(
        self, cfg: BufferConfig, state: StateDB, spool: Spool, writer: BronzeWriter, clock: Clock
    ) -> None:
        self.cfg = cfg
        self.state = state
        self.spool = spool
        self.writer = writer
        self.clock = clock
        self.blocked = False
        state.set_note(NOTE, None, clock.wall_ms())  # recomputed by the first make_room()

    def used(self) -> int:
        return self.state.ready_bytes() + self.writer.open_disk_bytes()

    def make_room(self, incoming: int) -> Room:
        """Whether ``incoming`` more bytes may be captured now, dropping files if allowed."""
        used = self.used()
        dropped = 0
        if used + incoming > self.cfg.spool_quota and self.cfg.when_full == "drop_oldest":
            for rec in self.state.files(READY):
                self._drop(rec)
                self.spool.remove(rec)
                used -= rec.bytes
                dropped += 1
                if used + incoming <= self.cfg.spool_quota:
                    break
        ok = used + incoming <= self.cfg.spool_quota
        self._set_blocked(not ok, used)
        return Room(ok, dropped)

    def _drop(self, rec: FileRecord) -> None:
        """Counted here, and told to the lake: the source's next manifest lists it."""
        now_ms = self.clock.wall_ms()
        self.state.record_drop(rec, now_ms)
        self.state.set_status(rec.id, DROPPED, now_ms, "dropped: spool full (drop_oldest)")
        self.state.add_counter("dropped_files", 1)
        self.state.add_counter("dropped_changes", rec.rows)
        log.warning("spool.dropped", file=rec.id, changes=rec.rows)

    def _set_blocked(self, blocked: bool, used: int) -> None:
        if blocked == self.blocked:
            return
        self.blocked = blocked
        message = (
            (
                f"spool full ({used} of {self.cfg.spool_quota} bytes): capture paused "
                "until shipping frees space"
            )
            if blocked
            else None
        )
        self.state.set_note(NOTE, message, self.clock.wall_ms())
        if blocked:
            log.warning("spool.full", used=used, quota=self.cfg.spool_quota)
        else:
            log.info("spool.full.recovered")
