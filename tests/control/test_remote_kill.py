"""Remote control under faults: kill -9 at random moments while configs are pushed and
a random workload writes, and the broker going away in the middle of an apply."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.control import operator
from edge_agent.control.documents import config_document, seal
from edge_agent.control.signing import Signer, generate
from tests.children import agent_cmd, agent_env
from tests.conftest import WORKLOAD_TABLES, config_dict, run_cli, start_workload, write_config
from tests.lake import assert_exact
from tests.tomltext import toml_text

DEVICE = "gw-test"


def _setup(tmp: Path, db: Path, port: int, prefix: str, window: str) -> tuple[Path, Signer, Any]:
    public = generate(tmp / "fleet.key")
    control = {"host": "127.0.0.1", "port": port, "topic_prefix": prefix}
    (tmp / "broker.toml").write_text(toml_text({"control": control}))
    data = config_dict(tmp, db, list(WORKLOAD_TABLES),
                       buffer={"max_file_age": "300ms", "max_file_bytes": "64KiB",
                               "row_group_bytes": "16KiB"})
    data["control"] = {**control, "trusted_keys": [public], "health_window": window,
                       "status_interval": "1s"}
    config = write_config(tmp, data)
    session = operator.Session(operator.load_broker(tmp / "broker.toml", {}))
    return config, Signer(tmp / "fleet.key"), session


def _remote(tmp: Path, db: Path, age: str) -> str:
    data = config_dict(tmp, db, list(WORKLOAD_TABLES),
                       buffer={"max_file_age": age, "max_file_bytes": "64KiB",
                               "row_group_bytes": "16KiB"})
    del data["agent"]
    return toml_text(data)


@pytest.mark.slow
def test_sigkill_while_configs_are_pushed_loses_and_duplicates_nothing(
        tmp_path: Path, app_db: Path, mosquitto: Any, mqtt_prefix: str) -> None:
    config, signer, session = _setup(tmp_path, app_db, mosquitto.port, mqtt_prefix, "500ms")
    topic = session.topics(DEVICE).desired
    assert run_cli("triggers", "install", "--config", str(config)).returncode == 0
    rng = random.Random(4321)
    app = start_workload(app_db, seed=21, transactions=1200, pause=0.002)
    kills = version = 0
    try:
        with (tmp_path / "agent.log").open("ab") as log:
            while app.poll() is None or kills < 10:
                daemon = subprocess.Popen(agent_cmd("run", "--config", str(config)),
                                          env=agent_env(), stdout=log, stderr=log)
                for _ in range(rng.randint(1, 3)):
                    time.sleep(rng.uniform(0.2, 0.9))
                    version += 1  # every push a new version; two configs alternate
                    text = _remote(tmp_path, app_db, rng.choice(["300ms", "700ms"]))
                    doc = config_document(text, {"device": DEVICE}, version, 0)
                    session.publish(topic, seal(doc, signer), retain=True)
                daemon.send_signal(signal.SIGKILL)
                daemon.wait()
                kills += 1
    finally:
        session.publish(topic, b"", retain=True)
        session.close()
    expected = int(app.communicate()[0])
    flushed = run_cli("flush", "--config", str(config), "--timeout", "60")
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert kills >= 10
    assert_exact(tmp_path / "lake", app_db, WORKLOAD_TABLES, expected)


def test_the_broker_going_away_mid_apply_still_ends_in_a_report(
        tmp_path: Path, app_db: Path, mqtt_prefix: str) -> None:
    from tests.servers import Mosquitto

    broker = Mosquitto(tmp_path / "broker")
    config, signer, session = _setup(tmp_path, app_db, broker.port, mqtt_prefix, "2s")
    topics = session.topics(DEVICE)
    session.subscribe(topics.reported)
    log = (tmp_path / "agent.log").open("ab")
    daemon = subprocess.Popen(agent_cmd("run", "--config", str(config)), env=agent_env(),
                              stdout=log, stderr=log)
    try:
        session.wait(topics.reported, lambda r: r["state"] == "applied", 60)
        doc = config_document(_remote(tmp_path, app_db, "700ms"), {"device": DEVICE}, 3, 0)
        session.publish(topics.desired, seal(doc, signer), retain=True)
        session.wait(topics.reported, lambda r: r["state"] == "applying", 60)
        session.close()
        broker.kill()  # the health window runs on without the broker
        time.sleep(3)
        broker.start()
        session = operator.Session(operator.load_broker(tmp_path / "broker.toml", {}))
        session.subscribe(topics.reported)
        report = session.wait(topics.reported,
                              lambda r: (r.get("attempted") or {}).get("version") == 3
                              and r["state"] != "applying", 60)
        assert report["state"] == "applied" and report["version"] == 3
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        log.close()
        session.close()
        broker.close()
