"""The device's MQTT connection for remote control: topics, last will, in and out.

paho's network thread keeps the connection (reconnecting with backoff) and
puts every message from the control topics into the daemon's inbox, then wakes
the daemon: verification and everything that follows run on the daemon's own
thread (runtime/remote_runtime.py). Retained messages are re-sent by the broker
on every subscribe, so a device offline when a config was pushed gets it when
it connects. The status topic carries a last will: the broker says "offline"
for a device that vanished. Importing this module imports paho.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.config_control import ControlConfig
from edge_agent.log import get_logger
from edge_agent.shippers.mqtt_conn import KEEPALIVE, new_client

log = get_logger("edge_agent.control")


@dataclass(frozen=True)
class Topics:
    prefix: str
    device: str
    group: str

    def device_topic(self, name: str) -> str:
        return f"{self.prefix}/{self.device}/{name}"

    @property
    def desired(self) -> str:
        return self.device_topic("config/desired")

    @property
    def group_desired(self) -> str | None:
        return f"{self.prefix}/groups/{self.group}/config/desired" if self.group else None

    @property
    def reported(self) -> str:
        return self.device_topic("config/reported")

    @property
    def status(self) -> str:
        return self.device_topic("status")

    @property
    def metrics(self) -> str:
        return self.device_topic("metrics")

    @property
    def cmd(self) -> str:
        return self.device_topic("cmd")

    @property
    def cmd_result(self) -> str:
        return self.device_topic("cmd/result")


Inbox = queue.Queue[tuple[str, bytes]]


def dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, default=str).encode()


class ControlLink:
    def __init__(
        self, cfg: ControlConfig, device: str, inbox: Inbox, wake: Callable[[], None]
    ) -> None:
        self.cfg = cfg
        self.topics = Topics(cfg.topic_prefix, device, cfg.group)
        self.inbox = inbox
        self.wake = wake
        self.connected = threading.Event()
        self.retained: dict[str, bytes] = {}  # published again on every connect
        self._lock = threading.Lock()
        client_id = cfg.client_id or f"edge-agent-control-{device}"[:128]
        self.client = new_client(cfg.broker, client_id, reconnect=True)
        self.client.will_set(
            self.topics.status, dumps({"online": False, "device": device}), qos=1, retain=True
        )
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> None:
        port = self.cfg.port or (8883 if self.cfg.tls else 1883)
        self.client.connect_async(self.cfg.host, port, KEEPALIVE)
        self.client.loop_start()

    def close(self, offline: dict[str, Any]) -> None:
        if self.connected.is_set():
            info = self.client.publish(self.topics.status, dumps(offline), qos=1, retain=True)
            info.wait_for_publish(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho's thread --------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("control.connect_failed", broker=self.cfg.host, reason=str(reason))
            return
        subs = [(self.topics.desired, 1), (self.topics.cmd, 1)]
        if self.topics.group_desired:
            subs.append((self.topics.group_desired, 1))
        client.subscribe(subs)
        with self._lock:
            for topic, payload in self.retained.items():
                client.publish(topic, payload, qos=1, retain=True)
        self.connected.set()
        log.info("control.connected", broker=self.cfg.host)
        self.wake()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        log.warning("control.disconnected", broker=self.cfg.host, reason=str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put((msg.topic, bytes(msg.payload)))
        self.wake()

    # -- the daemon's thread ------------------------------------------------------
    def publish(self, topic: str, value: dict[str, Any], retain: bool = False) -> None:
        """QoS 1; a retained value is also kept and sent again on every connect. While the
        broker is away, paho queues it (the broker gets it once connected)."""
        payload = dumps(value)
        if retain:
            with self._lock:
                self.retained[topic] = payload
        if retain and not self.connected.is_set():
            return  # sent by _on_connect
        self.client.publish(topic, payload, qos=1, retain=retain)
