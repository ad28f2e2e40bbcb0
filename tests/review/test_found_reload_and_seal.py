"""Reload whose new agent cannot be built; a seal that fails half-way."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path

import pytest

from edge_agent.bronze.writer import BronzeWriter
from edge_agent.clock import ManualClock
from edge_agent.errors import TerminalError
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.loop import Daemon
from edge_agent.runtime.systemd import Notifier
from edge_agent.shippers.factory import build_shipper
from edge_agent.spool.statedir import StateDir
from tests.conftest import NOW_MS, make_config
from tests.lake import read_changes


def test_reload_whose_agent_cannot_be_built_keeps_the_running_agent(
        tmp_path: Path, app_db: Path) -> None:
    cfg = make_config(tmp_path, app_db, ["readings"])
    clock = ManualClock(NOW_MS, 1000.0)
    statedir = StateDir(cfg.agent.state_dir)
    built: list[Agent] = []

    def build(c):
        if built:  # the reloaded config's sink cannot be opened (e.g. boto3 missing)
            raise TerminalError("sink.kind = \"s3\" needs boto3")
        built.append(Agent(c, clock, build_shipper(c.sink), statedir))
        return built[-1]

    daemon = Daemon(cfg, build, lambda: cfg, Notifier(None, None), clock)
    daemon.agent = daemon._build(cfg)
    daemon.agent.step(clock.monotonic())
    daemon.flags.reload = True
    try:
        daemon._reload()  # must log and keep going, not raise with a closed agent in place
        assert daemon._current() is built[0], "the running agent was replaced"
        con = sqlite3.connect(app_db)
        with con:
            con.execute("INSERT INTO readings (sensor, value) VALUES ('after-reload', 1.5)")
        con.close()
        clock.advance(0.1)
        daemon._current().step(clock.monotonic())
        assert daemon._current().flush(clock.monotonic() + 30).pending_files == 0
        sensors = [c["values"]["sensor"] for c in read_changes(tmp_path / "lake")]
        assert "after-reload" in sensors, "the kept agent stopped capturing"
    finally:
        for a in built:
            with contextlib.suppress(Exception):
                a.close()


def test_seal_that_fails_closes_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         app_db: Path) -> None:
    """BronzeWriter.seal pops the file before writing its last row group: when that
    write fails, the ParquetWriter and its fd stay open and the temp file stays on disk
    (uncounted by the quota) until the next start."""
    from edge_agent.bronze.schema import Envelope, batch_schema, to_batch
    from edge_agent.sources.sqlite import Column, TableShape

    cfg = make_config(tmp_path, app_db, ["readings"])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    w = BronzeWriter(tmp, cfg.buffer)
    schema = batch_schema(TableShape("t", (Column("id", "INTEGER", 1),)).spec())
    batch = to_batch(schema, [(1, 1, "c", NOW_MS, 1)], Envelope("d", "s", NOW_MS))
    w.add("s", schema, "2025-11-24", batch, 0.0)
    w._write_row_group(w.open[("s", "t")])  # the file exists on disk now
    w.add("s", schema, "2025-11-24", to_batch(schema, [(2, 1, "c", NOW_MS, 2)],
                                              Envelope("d", "s", NOW_MS)), 0.0)
    fds_before = len(os.listdir("/proc/self/fd"))

    def enospc(self, f, table):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(BronzeWriter, "_write", enospc)
    with pytest.raises(OSError):
        w.seal(("s", "t"))
    assert list(tmp.iterdir()) == [], "the temp file of the failed seal was left behind"
    assert len(os.listdir("/proc/self/fd")) < fds_before, "its fd was not closed"
