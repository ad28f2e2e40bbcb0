"""Remote control against a real Mosquitto broker and the real daemon: signed configs
applied with a health window and rolled back, hostile messages refused with a reason,
commands answered, a kill -9 during an apply, key rotation."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.control import operator
from edge_agent.control.documents import config_document, seal
from edge_agent.control.signing import Signer, generate
from tests.children import agent_cmd, agent_env
from tests.conftest import config_dict, write_config
from tests.lake import read_changes
from tests.tomltext import toml_text

DEVICE = "gw-test"


class Fleet:
    """One device (the real daemon, started and killed as a process), its operator's key
    and broker file, and an operator session on the broker."""

    def __init__(self, tmp: Path, port: int, prefix: str) -> None:
        self.tmp, self.port, self.prefix = tmp, port, prefix
        self.key = tmp / "fleet.key"
        self.public = generate(self.key)
        self.signer = Signer(self.key)
        self.broker = tmp / "broker.toml"
        self.broker.write_text(toml_text({"control": self.control()}))
        self.db = tmp / "app.db"
        con = sqlite3.connect(self.db)
        con.executescript("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);"
                          "CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT);")
        con.close()
        data = config_dict(tmp, self.db, ["a"])
        data["control"] = {**self.control(), "trusted_keys": [self.public],
                           "health_window": "1s", "status_interval": "1s"}
        self.config = write_config(tmp, data)
        self.proc: subprocess.Popen[bytes] | None = None
        self.session = operator.Session(operator.load_broker(self.broker, {}))
        self.topics = self.session.topics(DEVICE)
        for topic in (self.topics.reported, self.topics.cmd_result, self.topics.status):
            self.session.subscribe(topic)

    def control(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "topic_prefix": self.prefix}

    def remote_config(self, tables: list[str], **sink: Any) -> str:
        data = config_dict(self.tmp, self.db, tables)
        del data["agent"]
        data["sink"].update(sink)
        return toml_text(data)

    def start(self) -> None:
        with (self.tmp / "agent.log").open("ab") as log:
            self.proc = subprocess.Popen(agent_cmd("run", "--config", str(self.config)),
                                         env=agent_env(), stdout=log, stderr=log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
            self.proc = None

    def push(self, text: str, version: int, signer: Signer | None = None,
             target: dict[str, str] | None = None) -> None:
        doc = config_document(text, target or {"device": DEVICE}, version, int(time.time() * 1000))
        self.raw(self.topics.desired, seal(doc, signer or self.signer), retain=True)

    def raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.session.publish(topic, payload, retain=retain)

    def report(self, match: Callable[[dict[str, Any]], bool],
               timeout: float = 60) -> dict[str, Any]:
        return self.session.wait(self.topics.reported, match, timeout)

    def write(self, table: str, *ids: int) -> None:
        con = sqlite3.connect(self.db)
        with con:
            con.executemany(f"INSERT INTO {table} VALUES (?, 'x')", [(i,) for i in ids])
        con.close()

    def lake_ids(self, table: str) -> list[int]:
        return sorted(c["values"]["id"] for c in read_changes(self.tmp / "lake")
                      if c["_table"] == table)

    def close(self) -> None:
        self.stop(signal.SIGKILL)
        self.raw(self.topics.desired, b"", retain=True)  # clear the retained document
        self.session.close()


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Any, mqtt_prefix: str) -> Iterator[Fleet]:
    f = Fleet(tmp_path, mosquitto.port, mqtt_prefix)
    yield f
    f.close()


def attempted(version: int, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: (r.get("attempted") or {}).get("version") == version and r["state"] == state


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_config_pushed_to_an_offline_device_is_applied_when_it_comes_online(
        fleet: Fleet) -> None:
    fleet.push(fleet.remote_config(["a", "b"]), version=5)  # retained; the device is off
    fleet.start()
    report = fleet.report(attempted(5, "applied"))
    assert report["version"] == 5 and report["scope"] == "device" and report["status_code"] == 200
    fleet.write("b", 1, 2)
    wait_for(lambda: fleet.lake_ids("b") == [1, 2], "table b in the lake")
    status = fleet.session.wait(fleet.topics.status, lambda s: s.get("online"), 30)
    assert status["config"]["version"] == 5 and status["device"] == DEVICE
    fleet.stop()
    fleet.start()  # the last good config is what runs after a restart
    fleet.write("b", 3)
    wait_for(lambda: fleet.lake_ids("b") == [1, 2, 3], "table b after a restart")


def test_a_config_that_cannot_run_is_rolled_back_and_capture_goes_on(fleet: Fleet) -> None:
    fleet.start()
    fleet.report(lambda r: r["state"] == "applied")
    broken = fleet.remote_config(["a"], kind="s3", bucket="nope", endpoint_url="http://127.0.0.1:9",
                                 retry_min="50ms", retry_max="200ms")
    fleet.push(broken, version=7)
    report = fleet.report(attempted(7, "rolled_back"))
    assert report["status_code"] == 500 and "sink" in report["description"]
    assert report["version"] == 0 and report["scope"] == "local"  # the local file runs again
    fleet.write("a", 1)
    wait_for(lambda: fleet.lake_ids("a") == [1], "capture after the roll-back")
    fleet.push(broken, version=7)  # the same version again: refused, not retried
    fleet.push(fleet.remote_config(["a", "b"]), version=8)
    fleet.report(attempted(8, "applied"))


def test_a_missing_table_is_rejected_before_anything_changes(fleet: Fleet) -> None:
    fleet.start()
    fleet.report(lambda r: r["state"] == "applied")
    fleet.push(fleet.remote_config(["a", "nope"]), version=3)
    report = fleet.report(attempted(3, "rejected"))
    assert "nope" in report["description"] and report["status_code"] == 400


@pytest.mark.parametrize("damage", ["forged", "unknown key", "other device", "truncated",
                                    "wrong sha256", "huge", "group for another group"])
def test_a_hostile_or_broken_message_is_rejected_with_its_reason(
        fleet: Fleet, tmp_path: Path, damage: str) -> None:
    fleet.start()
    fleet.report(lambda r: r["state"] == "applied")
    text = fleet.remote_config(["a", "b"])
    doc = config_document(text, {"device": DEVICE}, 9, 1)
    payload = seal(doc, fleet.signer)
    if damage == "forged":
        wire = json.loads(payload)
        wire["document"] = wire["document"].replace('"version":9', '"version":10')
        payload = json.dumps(wire).encode()
    elif damage == "unknown key":
        generate(tmp_path / "other.key")
        payload = seal(doc, Signer(tmp_path / "other.key"))
    elif damage == "other device":
        payload = seal({**doc, "target": {"device": "gw-other"}}, fleet.signer)
    elif damage == "truncated":
        payload = payload[: len(payload) // 2]
    elif damage == "wrong sha256":
        payload = seal({**doc, "sha256": "0" * 64}, fleet.signer)
    elif damage == "huge":
        payload = seal({**doc, "config": text + "#" * 300_000}, fleet.signer)
    else:
        payload = seal({**doc, "target": {"group": "elsewhere"}}, fleet.signer)
    fleet.raw(fleet.topics.desired, payload, retain=True)
    report = fleet.report(lambda r: r["state"] == "rejected")
    reasons = {"forged": "bad signature", "unknown key": "unknown key",
               "other device": "for device 'gw-other'", "truncated": "malformed",
               "wrong sha256": "does not match", "huge": "max_message_bytes",
               "group for another group": "document for group 'elsewhere'"}
    assert reasons[damage] in report["description"]
    assert report["version"] == 0  # the running config is untouched
    fleet.write("a", 1)
    wait_for(lambda: fleet.lake_ids("a") == [1], "capture after a rejected message")


def test_a_replayed_older_version_is_refused(fleet: Fleet) -> None:
    fleet.start()
    fleet.push(fleet.remote_config(["a", "b"]), version=20)
    fleet.report(attempted(20, "applied"))
    fleet.push(fleet.remote_config(["a"]), version=19)
    report = fleet.report(attempted(19, "rejected"))
    assert "not above the applied 20" in report["description"] and report["version"] == 20


def test_a_kill_during_the_health_window_rolls_back_at_the_next_start(fleet: Fleet) -> None:
    fleet.config.write_text(fleet.config.read_text().replace('health_window = "1s"',
                                                             'health_window = "1h"'))
    fleet.start()
    fleet.report(lambda r: r["state"] == "applied")
    fleet.push(fleet.remote_config(["a", "b"]), version=11)
    fleet.report(attempted(11, "applying"))
    fleet.stop(signal.SIGKILL)
    fleet.start()
    report = fleet.report(attempted(11, "rolled_back"))
    assert "interrupted" in report["description"] and report["version"] == 0
    fleet.write("a", 1)
    wait_for(lambda: fleet.lake_ids("a") == [1], "capture on the config it names")


def test_commands_are_answered_and_an_expired_one_is_refused(fleet: Fleet) -> None:
    fleet.start()
    fleet.report(lambda r: r["state"] == "applied")
    fleet.write("a", 1, 2)
    result = operator.command(fleet.session, fleet.signer, DEVICE, "flush", {"timeout": 30}, 30)
    assert result["ok"] and result["outcome"] == "flushed"
    assert result["details"]["pending_files"] == 0
    assert fleet.lake_ids("a") == [1, 2]  # the receipt means it is in the lake
    status = operator.command(fleet.session, fleet.signer, DEVICE, "status", {}, 30)
    assert status["ok"] and status["details"]["sources"][0]["source"] == "app"
    expired = operator.command(fleet.session, fleet.signer, DEVICE, "flush", {}, -1)
    assert not expired["ok"] and "expired" in expired["details"]["reason"]
    replay = operator.command(fleet.session, fleet.signer, DEVICE, "replay", {}, 30)
    assert not replay["ok"] and "snapshot" in replay["details"]["reason"]


def test_key_rotation_signed_by_a_trusted_key(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start()
    fleet.report(lambda r: r["state"] == "applied")
    new_public = generate(tmp_path / "new.key")
    new = Signer(tmp_path / "new.key")
    done = operator.command(fleet.session, fleet.signer, DEVICE, "trust-keys",
                            {"keys": [new_public]}, 30)
    assert done["ok"]
    fleet.push(fleet.remote_config(["a", "b"]), version=30)  # the old key: no longer trusted
    assert "unknown key" in fleet.report(lambda r: r["state"] == "rejected")["description"]
    fleet.push(fleet.remote_config(["a", "b"]), version=31, signer=new)
    fleet.report(attempted(31, "applied"))
