"""The agent's figures: a Prometheus endpoint on 127.0.0.1 (when agent.metrics_port is
set) and the remote metrics topic carry the same numbers."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from edge_agent.control import operator
from edge_agent.control.signing import generate
from tests.children import agent_cmd, agent_env
from tests.conftest import config_dict, write_config
from tests.servers import free_port
from tests.tomltext import toml_text


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("edge_agent_")}


def test_prometheus_endpoint_and_metrics_topic_count_the_same_changes(
        tmp_path: Path, mosquitto: Any, mqtt_prefix: str) -> None:
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
    con.close()
    port = free_port()
    control = {"host": "127.0.0.1", "port": mosquitto.port, "topic_prefix": mqtt_prefix}
    data = config_dict(tmp_path, db, ["a"])
    data["agent"]["metrics_port"] = port
    data["control"] = {**control, "trusted_keys": [generate(tmp_path / "k")],
                       "metrics_interval": "1s"}
    config = write_config(tmp_path, data)
    (tmp_path / "broker.toml").write_text(toml_text({"control": control}))
    session = operator.Session(operator.load_broker(tmp_path / "broker.toml", {}))
    topic = session.topics("gw-test").metrics
    session.subscribe(topic)
    with (tmp_path / "agent.log").open("ab") as log:
        daemon = subprocess.Popen(agent_cmd("run", "--config", str(config)), env=agent_env(),
                                  stdout=log, stderr=log)
    try:
        con = sqlite3.connect(db)
        with con:
            con.executemany("INSERT INTO a VALUES (?, 'x')", [(i,) for i in range(1, 101)])
        con.close()
        end = time.monotonic() + 60
        scraped: dict[str, float] = {}
        while time.monotonic() < end:
            try:
                scraped = _scrape(port)
            except OSError:
                scraped = {}
            if scraped.get("edge_agent_changes_captured_total") == 100:
                break
            time.sleep(0.3)
        assert scraped["edge_agent_changes_captured_total"] == 100
        assert scraped["edge_agent_spool_quota_bytes"] == 64 * 1024**2
        assert "edge_agent_files_dropped_total" in scraped
        # The counter moves at capture, the durable position only once the file is sealed
        # and synced: wait for a message that has both (one comes every second).
        published = session.wait(
            topic, lambda m: m.get("figures", {}).get("changes_captured_total") == 100
            and (m.get("sources", {}).get("app", {}).get("durable_pos") or 0) >= 100, 60)
        assert published["figures"]["changes_captured_total"] == scraped[
            "edge_agent_changes_captured_total"]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        session.close()
