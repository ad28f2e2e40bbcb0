"""Several files in flight (``sink.max_files_in_flight``): outcomes in file order, each
settled only by its own ack, and the first failure ends the run.

The collector here is a scripted one (a plain paho client on the batch topic) so that
the test decides when and in which order the acks go out; the real collector's
behaviour with a window is covered by the end-to-end and kill tests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge_agent.config import SinkConfig
from edge_agent.errors import TransientError
from edge_agent.shippers import mqtt_wire as wire
from edge_agent.shippers.base import Outgoing, Receipt, ship_all
from edge_agent.shippers.mqtt import MqttShipper
from edge_agent.shippers.mqtt_conn import user_properties
from tests.mqtt.support import manifest_of, parquet_bytes, record, wait_until
from tests.servers import Mosquitto


class ScriptedCollector:
    """Records each file's header once its manifest arrived; ``answer`` acks a file."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.prefix = prefix
        self.manifests: list[wire.FileHeader] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(wire.batch_topic(prefix, "gw"), qos=1)
        assert subscribed.wait(10), "no SUBACK in 10 s"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        limits = wire.Limits(1 << 30, 1 << 20)
        part = wire.parse_part(msg.topic, self.prefix, user_properties(msg), len(msg.payload),
                               limits)
        if part.kind == wire.MANIFEST:
            with self.lock:
                self.manifests.append(part.header)

    def answer(self, h: wire.FileHeader, status: str = wire.OK) -> None:
        ack = wire.Ack(h.file_id, h.sha256, status, h.attempt, reason="scripted")
        self.client.publish(wire.ack_topic(self.prefix, "gw"), ack.to_json(), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def outgoing(tmp: Path, n: int) -> list[Outgoing]:
    files = []
    for i in range(n):
        data = parquet_bytes(3000, seed=i)
        rec = record(data, first=10 * i + 1, last=10 * i + 2)
        local, manifest = tmp / f"f{i}.parquet", tmp / f"f{i}.manifest.json"
        local.write_bytes(data)
        manifest.write_bytes(manifest_of(rec))
        files.append(Outgoing(local, manifest, rec))
    return files


def run_scripted(tmp: Path, broker: Mosquitto, prefix: str, n: int,
                 script: Callable[[ScriptedCollector, list[wire.FileHeader]], None]
                 ) -> list[tuple[Outgoing, object]]:
    """Ship ``n`` files with a window of ``n``; once every manifest is there (so all ``n``
    were in flight at once), ``script`` sends the acks."""
    collector = ScriptedCollector(broker, prefix)
    shipper = MqttShipper(SinkConfig(kind="mqtt", host="127.0.0.1", port=broker.port,
                                     topic_prefix=prefix, chunk_bytes=1024, ack_timeout=20.0,
                                     max_files_in_flight=n))

    def acks() -> None:
        wait_until(lambda: len(collector.manifests) == n, f"{n} manifests")
        by_id = {h.file_id: h for h in collector.manifests}
        script(collector, [by_id[f.rec.id] for f in files])

    files = outgoing(tmp, n)
    acker = threading.Thread(target=acks)
    acker.start()
    try:
        return list(ship_all(shipper, files))
    finally:
        acker.join()
        shipper.close()
        collector.close()


def test_acks_in_reverse_order_settle_every_file_in_file_order(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str) -> None:
    outcomes = run_scripted(tmp_path, mosquitto, mqtt_prefix, 3,
                            lambda c, hs: [c.answer(h) for h in reversed(hs)])
    assert [item.rec.first_pos for item, _ in outcomes] == [1, 11, 21]
    assert all(isinstance(outcome, Receipt) for _, outcome in outcomes)


def test_a_failed_earlier_file_ends_the_run_though_later_ones_were_acked(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str) -> None:
    """Files 2 and 3 are acked "ok" first, then file 1 is asked for again: only file 1's
    failure comes out; 2 and 3 are not reported shipped (they stay in the spool and their
    resend is answered from the lake at once)."""
    def script(c: ScriptedCollector, hs: list[wire.FileHeader]) -> None:
        c.answer(hs[2])
        c.answer(hs[1])
        c.answer(hs[0], wire.RETRY)

    outcomes = run_scripted(tmp_path, mosquitto, mqtt_prefix, 3, script)
    assert len(outcomes) == 1
    item, outcome = outcomes[0]
    assert item.rec.first_pos == 1
    assert isinstance(outcome, TransientError) and "resend" in str(outcome)


def test_an_ack_for_another_attempt_does_not_settle_a_file(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str) -> None:
    """A negative ack of an older attempt is ignored; the file is settled by its own."""
    def script(c: ScriptedCollector, hs: list[wire.FileHeader]) -> None:
        from dataclasses import replace

        c.answer(replace(hs[0], attempt="old"), wire.REJECTED)
        c.answer(hs[1])
        c.answer(hs[0])

    outcomes = run_scripted(tmp_path, mosquitto, mqtt_prefix, 2, script)
    assert [isinstance(o, Receipt) for _, o in outcomes] == [True, True]


def test_a_files_messages_go_out_without_waiting_for_the_brokers_pubacks(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str) -> None:
    """A proxy holds back everything the broker sends the agent (PUBACKs, acks): the
    file's chunks and its manifest still all reach the collector, since they fit in
    ``max_inflight``; the sender does not drain its window before a manifest (that
    stalled the pipe at the end of every file). Once the replies flow, the file is
    settled by the collector's ack."""
    from tests.servers import TcpProxy

    proxy = TcpProxy(mosquitto.port)
    proxy.start()
    collector = ScriptedCollector(mosquitto, mqtt_prefix)
    shipper = MqttShipper(SinkConfig(kind="mqtt", host="127.0.0.1", port=proxy.port,
                                     topic_prefix=mqtt_prefix, chunk_bytes=1024, max_inflight=16,
                                     ack_timeout=30.0))
    f = outgoing(tmp_path, 1)[0]
    assert f.rec.bytes > 2 * 1024  # several chunks, then the manifest
    outcome: list[object] = []

    def send() -> None:
        with contextlib.suppress(TransientError):  # the outcome then stays empty
            outcome.append(shipper.put(f.local, f.manifest, f.rec))

    sender = threading.Thread(target=send)
    try:
        shipper.probe("gw")  # connected and subscribed to its acks
        proxy.hold_replies()
        sender.start()
        wait_until(lambda: collector.manifests, "the manifest while no PUBACK came back",
                   timeout=20)
        proxy.release_replies()
        collector.answer(collector.manifests[0])
    finally:
        proxy.release_replies()
        if sender.ident is not None:
            sender.join(timeout=60)
        shipper.close()
        collector.close()
        proxy.stop()
    assert [type(o) for o in outcome] == [Receipt]


@pytest.mark.parametrize("window", [1, 4])
def test_the_real_collector_lands_every_file_once_whatever_the_window(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str, collector_factory,
        window: int) -> None:
    from tests.mqtt.support import collector_config

    col = collector_factory(collector_config(tmp_path / "c", mosquitto, mqtt_prefix))
    files = outgoing(tmp_path, 6)
    shipper = MqttShipper(SinkConfig(kind="mqtt", host="127.0.0.1", port=mosquitto.port,
                                     topic_prefix=mqtt_prefix, chunk_bytes=1024,
                                     max_files_in_flight=window))
    try:
        first = list(ship_all(shipper, files))
        again = list(ship_all(shipper, files))  # a resend of landed files
    finally:
        shipper.close()
    assert [type(o) for _, o in first] == [Receipt] * 6
    assert [o.already_there for _, o in again if isinstance(o, Receipt)] == [True] * 6
    for f in files:
        assert (tmp_path / "c" / "lake" / f.rec.relpath).read_bytes() == f.local.read_bytes()
    assert col.counters["files_landed"] == 6 and col.counters["parts_of_landed_files"] >= 6


@pytest.mark.slow
def test_collector_killed_with_several_files_in_flight_loses_and_duplicates_nothing(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str) -> None:
    """kill -9 of the collector while files are in flight (some landed and unacked, one
    half staged): the round ends with an error for the first unsettled file and no
    later one is reported shipped; the next round, with a new collector, settles every
    file, and the lake holds each once, whole, with its manifest."""
    from tests.mqtt.support import CollectorProcess, collector_section, staged_chunks

    section = collector_section(tmp_path / "c", mosquitto, mqtt_prefix)
    collector = CollectorProcess(tmp_path / "c", section).start()
    files = outgoing(tmp_path, 8)
    shipper = MqttShipper(SinkConfig(kind="mqtt", host="127.0.0.1", port=mosquitto.port,
                                     topic_prefix=mqtt_prefix, chunk_bytes=512,
                                     max_bandwidth=24 * 1024, ack_timeout=5.0,
                                     max_files_in_flight=4))
    lake = tmp_path / "c" / "lake"
    first: list[tuple[Outgoing, object]] = []
    sender = threading.Thread(target=lambda: first.extend(ship_all(shipper, files)))
    sender.start()
    wait_until(lambda: len(list(lake.rglob("*.parquet"))) >= 2
               and staged_chunks(tmp_path / "c" / "staging" / "files") >= 2,
               "files landed and one half staged", timeout=120)
    collector.kill()
    sender.join(timeout=120)
    shipped = [item for item, outcome in first if isinstance(outcome, Receipt)]
    assert first and not isinstance(first[-1][1], Receipt)  # the round ended on an error
    assert shipped == files[: len(shipped)]  # in order: nothing after the failed one
    assert len(shipped) < len(files)

    collector = CollectorProcess(tmp_path / "c", section, name="collector-2").start()
    rest = files[len(shipped):]
    try:
        second = list(ship_all(shipper, rest))
    finally:
        shipper.close()
        assert collector.terminate() == 0
    assert [o if not isinstance(o, Receipt) else Receipt for _, o in second] == (
        [Receipt] * len(rest))
    for f in files:
        assert (lake / f.rec.relpath).read_bytes() == f.local.read_bytes()
        assert (lake / f.rec.manifest_relpath).read_bytes() == f.manifest.read_bytes()
    assert len(list(lake.rglob("*.parquet"))) == len(files)
    assert not list(lake.rglob("*.tmp")) and not list(lake.rglob(".*"))
