"""``edge-agent collect``: the MQTT -> lake collector.

Subscribes ``$share/<share_group>/<topic_prefix>/+/batch`` (QoS 1, MQTT 5), so
several collectors split the devices' messages; hands each message to the
Receiver (lake/receiver.py: check, stage on disk, land in the lake, ack), then
acknowledges it to the broker (manual PUBACK, after it is staged). Collectors
of one share group must share ``staging_dir`` and ``lake`` (docs/mqtt.md).

The loop is single-threaded and step-able: paho's network loop runs inside
``step()``; a signal only sets a flag that the loop reads between steps.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.config import Config
from edge_agent.config_mqtt import CollectorConfig
from edge_agent.errors import EXIT_OK, ConfigError, ConfigErrors, EdgeAgentError
from edge_agent.lake.landing import Lake
from edge_agent.lake.receiver import Receiver, Reply
from edge_agent.lake.staging import Staging
from edge_agent.log import ErrorReporter, configure_logging, get_logger
from edge_agent.runtime.signals import SignalFlags
from edge_agent.shippers.mqtt_conn import (
    connack_error,
    disconnect_error,
    new_client,
    open_socket,
    user_properties,
)
from edge_agent.shippers.mqtt_wire import shared_subscription

log = get_logger("edge_agent.collect")

RETRY_MIN, RETRY_MAX = 0.5, 30.0  # reconnect backoff, seconds
HOUSEKEEPING_EVERY = 60.0  # rescan staging, expire idle entries, log the counters
MAX_PENDING_ACKS = 10_000  # acks waiting for a connection (recovery); beyond: resend asks
HEADROOM = 64 * 1024  # topic and user properties on top of a chunk's payload
CONNECT_TIMEOUT = 10.0
MQTT_MAX_PACKET = 268_435_455  # the protocol's own limit (MQTT 5, 1.5.5)


class Collector:
    def __init__(
        self,
        cfg: CollectorConfig,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.broker = cfg.broker
        self.clock = clock
        self.sleep = sleep
        self.staging = Staging(cfg.staging_dir, cfg.max_staging_bytes, cfg.staging_ttl)
        self.receiver = Receiver(cfg, self.staging, Lake(cfg.lake))
        self.topic = shared_subscription(cfg.share_group, cfg.topic_prefix)
        self.client: mqtt.Client | None = None
        self.subscribed = False
        self.failures = 0
        self.next_connect = 0.0
        self.subscribe_deadline = 0.0
        self.next_housekeeping = 0.0
        self.pending: list[Reply] = []
        self.reporter = ErrorReporter(log)
        self.rng = random.Random()  # noqa: S311 - jitter, not cryptography

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.receiver.counters)

    # -- the loop ---------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> None:
        log.info(
            "collector.started",
            broker=self.broker.where,
            subscription=self.topic,
            lake=str(self.cfg.lake),
            staging=str(self.cfg.staging_dir),
        )
        self.recover()
        try:
            while not should_stop():
                self.step()
        finally:
            self.close()
            self.staging.close()
            log.info("collector.stopped", **self.counters)

    def step(self, timeout: float = 0.2) -> None:
        """One turn: (re)connect when due, else let paho read and dispatch messages."""
        now = self.clock()
        if now >= self.next_housekeeping:
            self.housekeeping(now)
        if self.client is None:
            if now < self.next_connect:
                self.sleep(min(timeout, self.next_connect - now))
                return
            self._connect()
            return
        client = self.client
        rc = client.loop(timeout)
        if self.client is not client:
            return  # a callback already gave the connection up
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._lost(disconnect_error(self.broker, None, f"({mqtt.error_string(rc)})"))
        elif not self.subscribed and now > self.subscribe_deadline:
            self._lost(
                EdgeAgentError(
                    f"{self.broker.where} did not accept the connection and "
                    f"the subscription within {CONNECT_TIMEOUT:g}s"
                )
            )

    def recover(self) -> None:
        """After a restart: land entries that were complete when the last run ended;
        their acks go out once connected."""
        for header in self.staging.headers():
            try:
                reply = self.receiver.land_staged(header)
            except OSError as exc:
                log.error("collector.recover_failed", file=header.file_id, error=str(exc))
                continue
            if reply is not None:
                self._queue(reply)

    def housekeeping(self, now: float) -> None:
        self.next_housekeeping = now + HOUSEKEEPING_EVERY
        try:
            for header in self.staging.headers():
                with self.staging.lock(header):
                    self.staging.tidy(header)
            for orphan in self.staging.orphans():
                self.staging.remove_orphan(orphan)
            self.staging.rescan()
        except OSError as exc:
            log.error("collector.housekeeping_failed", error=str(exc))
        log.info("collector.summary", staged_bytes=self.staging.used, **self.counters)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()
            client.loop(0.1)  # let the DISCONNECT out

    # -- connection -------------------------------------------------------------
    def _connect(self) -> None:
        client = new_client(self.broker, self.cfg.client_id, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.subscribed = False
        try:
            open_socket(
                client,
                self.broker,
                CONNECT_TIMEOUT,
                max_packet=min(MQTT_MAX_PACKET, 2 * self.cfg.max_chunk_bytes + HEADROOM),
            )
        except EdgeAgentError as exc:
            self._lost(exc)
            return
        self.client = client
        self.subscribe_deadline = self.clock() + CONNECT_TIMEOUT

    def _lost(self, exc: EdgeAgentError) -> None:
        self.client = None
        self.subscribed = False
        self.failures += 1
        delay = min(RETRY_MAX, RETRY_MIN * 2 ** min(self.failures - 1, 16))
        self.next_connect = self.clock() + delay / 2 + self.rng.uniform(0, delay / 2)
        self.reporter.failed("collector.connection", str(exc), retry_in=round(delay, 1))

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            self._lost(connack_error(self.broker, reason))
            return
        client.subscribe(self.topic, options=SubscribeOptions(qos=1))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        if reasons[0].is_failure:
            client.disconnect()
            self._lost(
                EdgeAgentError(
                    f"{self.broker.where} refused the subscription {self.topic!r} ({reasons[0]}): "
                    "the broker must support MQTT 5 shared subscriptions and the ACL must allow "
                    "this user to subscribe to it"
                )
            )
            return
        self.subscribed = True
        self.failures = 0
        self.reporter.ok("collector.connection")
        log.info("collector.subscribed", broker=self.broker.where, subscription=self.topic)
        pending, self.pending = self.pending, []
        for reply in pending:
            self._publish(client, reply)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if self.client is client:
            self._lost(disconnect_error(self.broker, reason, "while collecting"))

    # -- messages -----------------------------------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            replies = self.receiver.handle(
                message.topic, user_properties(message), bytes(message.payload)
            )
        except Exception:  # a bug must not stop the collector for every other device:
            # logged with its traceback and counted; no ack, so the sender resends.
            self.receiver.counters["errors.internal"] += 1
            log.exception("collector.internal_error", topic=message.topic[:200])
            replies = []
        for reply in replies:
            self._publish(client, reply)
        client.ack(message.mid, message.qos)  # staged (or refused) for good: PUBACK now

    def _publish(self, client: mqtt.Client, reply: Reply) -> None:
        info = client.publish(reply.topic, reply.ack.to_json(), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._queue(reply)  # not connected: the sender may also time out and resend

    def _queue(self, reply: Reply) -> None:
        if len(self.pending) < MAX_PENDING_ACKS:
            self.pending.append(reply)


def run_collector(cfg: Config) -> int:
    """The ``collect`` command: run until SIGTERM or SIGINT (a second one exits at once;
    the staging area is crash-safe)."""
    if cfg.collector is None:
        raise ConfigErrors(
            [
                ConfigError(
                    "collector",
                    None,
                    "`edge-agent collect` needs a [collector] section with at "
                    "least lake = ...; see docs/mqtt.md",
                )
            ]
        )
    configure_logging(cfg.collector.log_format, cfg.collector.log_level)
    collector = Collector(cfg.collector)
    flags = SignalFlags()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        flags.install(write_end)
        collector.run(lambda: flags.stop)
    finally:
        os.close(read_end)
        os.close(write_end)
    return EXIT_OK
