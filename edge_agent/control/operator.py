"""The operator's side of remote control: `edge-agent keys` and `edge-agent remote`.

The broker settings come from a TOML file with a [control] section, as a
device's (host, port, tls, ca_file, cert_file, key_file, username,
password_file, client_id, topic_prefix); the private key from `edge-agent keys
generate`. A config is validated here before it is signed and published, so
most mistakes never leave the operator's machine.
"""

from __future__ import annotations

import json
import queue
import time
import tomllib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent.config import apply_env, config_from_dict
from edge_agent.config_control import ControlConfig, merge_remote, parse_control
from edge_agent.config_mqtt import read_password_files_of, resolve_files
from edge_agent.control.documents import config_document, seal
from edge_agent.control.remote import Topics
from edge_agent.control.signing import Signer
from edge_agent.errors import ConfigError, ConfigErrors, EdgeAgentError, PendingError


def load_broker(path: Path, environ: Mapping[str, str]) -> ControlConfig:
    try:
        data = apply_env(tomllib.loads(path.read_text(encoding="utf-8")), environ)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigErrors([ConfigError("--broker", str(path), f"cannot read it: {exc}")]) from exc
    errors: list[ConfigError] = []
    found = parse_control(data.get("control", {}), errors, operator=True)
    if errors or found is None:
        raise ConfigErrors(
            errors or [ConfigError("--broker", str(path), "add a [control] section")]
        )

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (path.parent / p).resolve()

    return read_password_files_of(resolve_files(found, fix), "control")


def check_config(text: str) -> None:
    """The checks `edge-agent config check` makes, on a document meant for devices."""
    merged = merge_remote({}, text)
    config_from_dict(merged)


class Session:
    """A short MQTT session of the operator: subscribe, publish, wait for answers."""

    def __init__(self, broker: ControlConfig) -> None:
        from edge_agent.shippers.mqtt_conn import new_client

        self.broker = broker
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = new_client(broker.broker, f"edge-agent-operator-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda _c, _u, m: self.inbox.put((m.topic, bytes(m.payload)))
        port = broker.port or (8883 if broker.tls else 1883)
        try:
            self.client.connect(broker.host, port, 30)
        except OSError as exc:
            raise EdgeAgentError(
                f"broker {broker.host}:{port} unreachable ({exc}): check --broker's [control]"
            ) from exc
        self.client.loop_start()

    def topics(self, device: str) -> Topics:
        return Topics(self.broker.topic_prefix, device, "")

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        time.sleep(0.2)  # the SUBACK; retained messages follow it

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=30)
        if not info.is_published():
            raise EdgeAgentError(f"publishing on {topic} was not acknowledged by the broker")

    def wait(self, topic: str, match: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, payload = self.inbox.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if got != topic:
                continue
            try:
                value = json.loads(payload)
            except ValueError:
                continue
            if isinstance(value, dict) and match(value):
                return value
        raise PendingError(f"no answer on {topic} within {timeout:.0f} s (is the device online?)")

    def gather(self, topic: str, seconds: float) -> list[tuple[str, dict[str, Any]]]:
        self.subscribe(topic)
        end = time.monotonic() + seconds
        found = []
        while (left := end - time.monotonic()) > 0:
            try:
                got, payload = self.inbox.get(timeout=left)
                found.append((got, json.loads(payload)))
            except (queue.Empty, ValueError):
                continue
        return found

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def push(
    session: Session,
    signer: Signer,
    text: str,
    target: dict[str, str],
    version: int | None,
    wait: float | None,
) -> dict[str, Any]:
    """Sign and publish (retained) a config for a device or a group; with ``wait``, the
    device's report about that version (the target must be a device)."""
    check_config(text)
    version = version or int(time.time())
    doc = config_document(text, target, version, int(time.time() * 1000))
    prefix = session.broker.topic_prefix
    if "device" in target:
        topics = session.topics(target["device"])
        topic = topics.desired
        if wait is not None:
            session.subscribe(topics.reported)
    else:
        topic = f"{prefix}/groups/{target['group']}/config/desired"
    session.publish(topic, seal(doc, signer), retain=True)
    if wait is None or "device" not in target:
        return {"published": topic, "version": version}

    def settled(report: dict[str, Any]) -> bool:
        attempted = report.get("attempted") or {}
        return attempted.get("version") == version and report.get("state") != "applying"

    return session.wait(topics.reported, settled, wait)


def command(
    session: Session, signer: Signer, device: str, name: str, args: dict[str, Any], ttl: float
) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    request_id = uuid.uuid4().hex
    doc = {
        "type": "command",
        "target": {"device": device},
        "request_id": request_id,
        "command": name,
        "args": args,
        "issued_ms": now_ms,
        "expires_ms": now_ms + int(ttl * 1000),
    }
    topics = session.topics(device)
    session.subscribe(topics.cmd_result)
    session.publish(topics.cmd, seal(doc, signer), retain=False)
    return session.wait(topics.cmd_result, lambda r: r.get("request_id") == request_id, ttl + 60)


def statuses(session: Session, device: str | None) -> list[dict[str, Any]]:
    topic = session.topics(device or "+").status
    return [value for _, value in session.gather(topic, 1.5)]
