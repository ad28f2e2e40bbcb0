"""A full disk under the state directory shows in `status` (issue 12 item 11, 13 item 5).

With ENOSPC on the state directory the agent stalled capture correctly and lost
nothing, but status said `spool.last_error: null` and `spool_blocked: false`
while changes waited: the note could not be written to the state database on
that same full disk.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_agent.runtime.loop import live_figures
from edge_agent.runtime.status import build_status, problems, render_text
from edge_agent.spool.outbox import Spool
from edge_agent.spool.state import StateDB
from tests.conftest import make_config
from tests.runtime.agent_process import insert_readings


def test_a_full_state_disk_is_shown_with_its_cause(tmp_path: Path, app_db: Path,
                                                   harness_factory: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["readings"],
                                    buffer={"max_file_age": "1ms"}))
    insert_readings(app_db, 50)

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    real_note = StateDB.set_note

    def note(self: StateDB, name: str, *args: Any) -> None:
        if name == "spool.last_error":
            raise sqlite3.OperationalError("database or disk is full")
        real_note(self, name, *args)

    monkeypatch.setattr(Spool, "publish", no_space)
    monkeypatch.setattr(StateDB, "set_note", note)
    h.step(0.1)
    h.step(0.1)  # the open file is due now: sealing it hits the full disk

    report = build_status(h.cfg, h.agent.state, live_figures(h.agent))
    assert "No space left on device" in report["spool"]["last_error"]
    assert report["live"]["spool_blocked"] is True
    assert any("No space left" in p for p in problems(report))
    assert "No space left on device" in render_text(report)
