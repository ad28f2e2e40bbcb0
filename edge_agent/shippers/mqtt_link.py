"""One connection of the ``mqtt`` sink to its broker: a publish window and an ack inbox.

paho runs its network loop in its own thread (``loop_start``); the callbacks
only record what happened, under one Condition, and the shipper's thread waits
on it with deadlines. Nothing here is durable, on purpose: a broken link is
thrown away, the next put() opens a new one (clean start, no broker session)
and sends the whole file again. The spool is the durability.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.config_mqtt import BrokerConfig
from edge_agent.errors import EdgeAgentError, TerminalError, TransientError
from edge_agent.log import get_logger
from edge_agent.shippers.mqtt_conn import (
    NO_MATCHING_SUBSCRIBERS,
    NOT_AUTHORIZED,
    PACKET_TOO_LARGE,
    connack_error,
    disconnect_error,
    new_client,
    open_socket,
    publish_properties,
)
from edge_agent.shippers.mqtt_wire import OK, Ack, FileHeader, WireError

log = get_logger("edge_agent.mqtt")


class Link:
    def __init__(
        self, broker: BrokerConfig, client_id: str, ack_topic: str, timeout: float
    ) -> None:
        self.broker = broker
        self.ack_topic = ack_topic
        self.timeout = timeout
        self.cond = threading.Condition()
        self.connected = False
        self.failure: EdgeAgentError | None = None
        self.max_packet: int | None = None
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.outstanding: set[int] = set()  # message ids awaiting their PUBACK
        self.stale: set[int] = set()  # ones an earlier round left awaiting theirs
        self.no_subscribers = False
        self.acks: dict[str, list[Ack]] = {}  # file id -> its acks, for the files in flight
        self.client = new_client(broker, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @classmethod
    def open(cls, broker: BrokerConfig, client_id: str, ack_topic: str, timeout: float) -> Link:
        """Connect, wait for the CONNACK, subscribe to the ack topic; or raise."""
        link = cls(broker, client_id, ack_topic, timeout)
        open_socket(link.client, broker, timeout)
        link.client.loop_start()
        try:
            link.wait(lambda: link.connected, "answer to CONNECT (CONNACK)")
            link.subscribe()
        except BaseException:
            link.close()
            raise
        return link

    @property
    def healthy(self) -> bool:
        with self.cond:
            return self.connected and self.failure is None

    def subscribe(self) -> None:
        rc, mid = self.client.subscribe(self.ack_topic, options=SubscribeOptions(qos=1))
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise self.failure or TransientError(
                f"subscribing at {self.broker.where} failed ({mqtt.error_string(rc)}): will retry"
            )
        self.wait(lambda: mid in self.subacks, "answer to SUBSCRIBE (SUBACK)")
        with self.cond:
            code = self.subacks.pop(mid)[0]
        if code.is_failure:
            raise TerminalError(
                f"{self.broker.where} refused the subscription to {self.ack_topic!r} ({code}): "
                "allow this user to subscribe to it in the broker's ACL"
            )

    # -- publishing with a window of unacknowledged messages -------------------
    def publish(
        self, topic: str, payload: bytes, pairs: list[tuple[str, str]], window: int
    ) -> None:
        self.wait(lambda: self._in_flight() < window, "PUBACK from the broker")
        info = self.client.publish(topic, payload, qos=1, properties=publish_properties(pairs))
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise self.failure or TransientError(
                f"publishing to {self.broker.where} failed ({mqtt.error_string(info.rc)}): "
                "will retry"
            )
        with self.cond:
            self.outstanding.add(info.mid)

    def drain(self) -> None:
        """Wait until the broker acknowledged (PUBACK) every message published so far."""
        self.wait(lambda: self._in_flight() == 0, "PUBACK from the broker")

    def _in_flight(self) -> int:
        """Messages without PUBACK; records failures the PUBACKs report (under cond)."""
        waiting = set()
        for mid in self.outstanding:
            reason = self.pubacks.pop(mid, None)
            if reason is None:
                waiting.add(mid)
            elif reason.value == NO_MATCHING_SUBSCRIBERS:
                self.no_subscribers = True
            elif reason.is_failure and self.failure is None:
                self.failure = self._puback_error(reason)
        self.outstanding = waiting
        return len(waiting)

    def _puback_error(self, reason: ReasonCode) -> EdgeAgentError:
        refused = f"{self.broker.where} refused a message ({reason})"
        if reason.value == NOT_AUTHORIZED:
            return TerminalError(
                f"{refused}: allow this user to publish to its batch topic in the broker's ACL"
            )
        if reason.value == PACKET_TOO_LARGE:
            return TerminalError(f"{refused}: lower sink.chunk_bytes")
        return TransientError(f"{refused}: will retry")

    # -- the collector's acks ----------------------------------------------------
    def begin_round(self) -> None:
        """A new round of files: what the last one left (messages still without PUBACK,
        a "no matching subscribers", acks of files no longer awaited) is forgotten."""
        with self.cond:
            self.stale = (self.stale | self.outstanding) if len(self.stale) < 1024 else set()
            self.outstanding.clear()
            self.pubacks.clear()
            self.acks.clear()
            self.no_subscribers = False

    def expect(self, file_id: str) -> None:
        """Start collecting acks for a file (those of an earlier attempt are dropped)."""
        with self.cond:
            self.acks[file_id] = []

    def forget(self, file_id: str) -> None:
        """The file is settled: acks for it are no longer kept."""
        with self.cond:
            self.acks.pop(file_id, None)

    def answer(self, header: FileHeader) -> Ack | None:
        """The ack that settles this attempt, if it came: an "ok" for these bytes (from
        any attempt), or a negative ack for this very attempt."""
        with self.cond:
            return self._answer(header)

    def _answer(self, h: FileHeader) -> Ack | None:
        for ack in self.acks.get(h.file_id, ()):
            if ack.status == OK and ack.sha256 == h.sha256:
                return ack
            if ack.status != OK and ack.attempt == h.attempt:
                return ack
        return None

    def wait_answer(self, header: FileHeader, timeout: float, what: str) -> Ack | None:
        """The ack that settles this attempt; None when a PUBACK said that nobody
        subscribes to the batch topic and no ack came; TransientError after ``timeout``."""
        self.wait(lambda: self._answer(header) is not None or self._nobody_listens(), what, timeout)
        return self._answer(header)

    def _nobody_listens(self) -> bool:
        self._in_flight()  # reads the PUBACKs that came
        return self.no_subscribers

    # -- waiting ---------------------------------------------------------------
    def wait(self, ready: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        """Block until ``ready()`` (evaluated under the lock); raise the link's failure,
        or TransientError after ``timeout`` seconds."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self.cond:
            while True:
                done = ready()
                if self.failure is not None:
                    raise self.failure
                if done:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransientError(
                        f"no {what} within {limit:g}s from {self.broker.where}: will retry"
                    )
                self.cond.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks (network thread) ------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        with self.cond:
            if reason.is_failure:
                self.failure = connack_error(self.broker, reason)
            else:
                self.connected = True
                self.max_packet = getattr(properties, "MaximumPacketSize", None)
            self.cond.notify_all()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        with self.cond:
            during = "during a transfer" if self.connected else "before accepting it"
            if self.failure is None:
                self.failure = disconnect_error(self.broker, reason, during)
            self.connected = False
            self.cond.notify_all()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        with self.cond:
            if mid in self.stale:  # of a message an earlier round left behind
                self.stale.discard(mid)
                return
            self.pubacks[mid] = reason
            self.cond.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        with self.cond:
            self.subacks[mid] = reasons
            self.cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            ack = Ack.from_json(message.payload)
        except WireError as exc:
            log.warning("mqtt.ack_malformed", topic=message.topic, error=str(exc))
            return
        with self.cond:
            if ack.file_id in self.acks:
                self.acks[ack.file_id].append(ack)
                self.cond.notify_all()
