"""A reload whose new agent cannot be built keeps the running agent."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

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
    daemon.agent = build(cfg)
    daemon.agent.step(clock.monotonic())
    daemon.flags.reload = True
    try:
        daemon.reload()  # must log and keep going, not raise with a closed agent in place
        assert daemon.agent is built[0], "the running agent was replaced"
        con = sqlite3.connect(app_db)
        with con:
            con.execute("INSERT INTO readings (sensor, value) VALUES ('after-reload', 1.5)")
        con.close()
        clock.advance(0.1)
        daemon.agent.step(clock.monotonic())
        assert daemon.agent.flush(clock.monotonic() + 30).pending_files == 0
        sensors = [c["values"]["sensor"] for c in read_changes(tmp_path / "lake")]
        assert "after-reload" in sensors, "the kept agent stopped capturing"
    finally:
        for a in built:
            with contextlib.suppress(Exception):
                a.close()
