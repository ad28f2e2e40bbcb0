"""Bad messages, limits, credentials and TLS, against a real Mosquitto: the collector
refuses with a counter and an ack, never crashes and never writes a bad file into
the lake; the agent gets an error that names the fix."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge_agent.config import SinkConfig, load_config
from edge_agent.errors import TerminalError, TransientError
from edge_agent.lake.collect import Collector
from edge_agent.shippers import mqtt_wire as wire
from edge_agent.shippers.mqtt import MqttShipper
from edge_agent.shippers.mqtt_link import Link
from edge_agent.spool.state import READY
from tests.conftest import WORKLOAD_TABLES, config_dict, run_workload, write_config
from tests.lake import assert_exact
from tests.mqtt.support import (
    FINGERPRINT,
    RawClient,
    collector_config,
    header_of,
    manifest_of,
    mqtt_sink,
    parquet_bytes,
    record,
    wait_until,
)
from tests.servers import Mosquitto, TlsFiles

DATA = parquet_bytes(5120)  # real Parquet (the collector checks its footer): 5 chunks of 1024


def spool_file(tmp: Path, data: bytes = DATA) -> tuple[Path, Path]:
    local, manifest = tmp / "f.parquet", tmp / "f.manifest.json"
    local.write_bytes(data)
    manifest.write_bytes(manifest_of(record(data)))
    return local, manifest


def shipper(broker: Mosquitto, prefix: str, **extra: object) -> MqttShipper:
    base: dict[str, object] = {"kind": "mqtt", "host": "127.0.0.1", "port": broker.port,
                               "topic_prefix": prefix, "chunk_bytes": 1024, "ack_timeout": 5.0}
    return MqttShipper(SinkConfig(**{**base, **extra}))  # type: ignore[arg-type]


def lake_is_empty(lake: Path) -> bool:
    return not lake.exists() or not any(p.is_file() for p in lake.rglob("*"))


# --- corrupt, unknown, malformed, truncated messages ----------------------------------


def test_a_chunk_corrupted_in_transit_is_nacked_and_the_resend_lands(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str, collector_factory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    col = collector_factory(collector_config(tmp_path, mosquitto, mqtt_prefix))
    real_publish = Link.publish
    flipped: list[int] = []

    def flip_one_byte(self: Link, topic: str, payload: bytes, pairs, window: int) -> None:
        if not flipped and dict(pairs)[wire.P_KIND] == wire.CHUNK:
            flipped.append(1)
            payload = bytes([payload[0] ^ 0xFF]) + payload[1:]
        real_publish(self, topic, payload, pairs, window)

    monkeypatch.setattr(Link, "publish", flip_one_byte)
    local, manifest = spool_file(tmp_path)
    rec = record(DATA)
    sink = shipper(mosquitto, mqtt_prefix)
    with pytest.raises(TransientError, match=r"resend .*corrupted in transit"):
        sink.put(local, manifest, rec)
    assert not (col.collector.cfg.lake / rec.relpath).exists()
    receipt = sink.put(local, manifest, rec)  # what the runtime's retry does
    assert (col.collector.cfg.lake / rec.relpath).read_bytes() == DATA
    assert not receipt.already_there
    assert col.counters["rejected.corrupt"] == 1
    sink.close()


def test_unknown_file_malformed_and_truncated_messages_are_refused(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str, collector_factory) -> None:
    col = collector_factory(collector_config(tmp_path, mosquitto, mqtt_prefix))
    raw = RawClient(mosquitto, mqtt_prefix)
    rec = record(DATA)
    h = header_of(rec, 1024)
    chunk = DATA[:1024]
    sha = hashlib.sha256(chunk).hexdigest()
    # A chunk for a file of another device, on this device's topic: nobody to answer.
    other = header_of(record(DATA, device="other"), 1024)
    raw.publish(wire.header_properties(other, wire.CHUNK, sha, 0), chunk)
    # A path out of the lake layout (traversal): answered "rejected".
    evil = wire.FileHeader("gw", rec.id, "bronze/../../../etc/gw-1-2.parquet", h.size,
                           h.sha256, 1024, "evil")
    raw.publish(wire.header_properties(evil, wire.CHUNK, sha, 0), chunk)
    # No properties at all, and a count that does not match the size.
    raw.publish([], b"hello")
    bad_count = [(k, "99" if k == wire.P_COUNT else v)
                 for k, v in wire.header_properties(h, wire.CHUNK, sha, 0)]
    raw.publish(bad_count, chunk)
    # A truncated chunk: answered "retry".
    raw.publish(wire.header_properties(h, wire.CHUNK, sha, 0), chunk[:100])
    wait_until(lambda: col.counters.get("messages", 0) >= 5, "the collector to see them all")
    wait_until(lambda: len(raw.acks) >= 3, "the negative acks")
    counters = col.counters
    assert counters["rejected.unknown_file"] == 2
    assert counters["rejected.malformed"] == 2
    assert counters["rejected.truncated"] == 1
    statuses = sorted((a.attempt, a.status) for a in raw.acks)
    assert statuses == [("evil", "rejected"), ("rawtest", "rejected"), ("rawtest", "retry")]
    assert lake_is_empty(col.collector.cfg.lake)
    assert not Path("/etc/gw-1-2.parquet").exists()
    # ... and the collector still works.
    raw.send_file(h, DATA)
    wait_until(lambda: any(a.status == wire.OK for a in raw.acks), "the ok ack")
    assert (col.collector.cfg.lake / rec.relpath).read_bytes() == DATA
    raw.close()


@pytest.mark.parametrize(("case", "said"), [
    ("not-parquet", "not a readable Parquet file (Parquet magic bytes not found"),
    ("rows", "it holds 7 rows, the manifest says 2"),
    ("fingerprint", f"its schema fingerprint is '0123456789abcdef', the manifest says "
                    f"'{FINGERPRINT}'"),
])
def test_content_that_disagrees_with_its_manifest_is_refused_and_not_landed(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str, collector_factory,
        case: str, said: str) -> None:
    """Issue 13 item 6 (content part): the collector landed any bytes whose headers and
    manifest agreed. Now the staged file's Parquet footer must show the manifest's rows
    and schema fingerprint before anything is written into the lake."""
    col = collector_factory(collector_config(tmp_path, mosquitto, mqtt_prefix))
    raw = RawClient(mosquitto, mqtt_prefix)
    data = {"not-parquet": b"PAR1" + b"x" * 5000,
            "rows": parquet_bytes(5120, rows=7),
            "fingerprint": parquet_bytes(5120, fingerprint="0123456789abcdef")}[case]
    rec = record(data)
    h = header_of(rec, 1024)
    raw.send_file(h, data, manifest_of(rec))
    wait_until(lambda: raw.acks, "the collector's answer")
    assert [a.status for a in raw.acks] == [wire.REJECTED]
    assert raw.acks[0].reason.startswith(f"content of {rec.id}: ") and said in raw.acks[0].reason
    assert col.counters["rejected.bad_content"] == 1
    assert lake_is_empty(col.collector.cfg.lake)
    assert not list((tmp_path / "staging" / "files").iterdir())  # the entry is discarded
    # The agent's shipper reports the refusal with its reason; the collector goes on.
    local, manifest = tmp_path / "bad.parquet", tmp_path / "bad.manifest.json"
    local.write_bytes(data)
    manifest.write_bytes(manifest_of(rec))
    sink = shipper(mosquitto, mqtt_prefix)
    with pytest.raises(TerminalError, match="the collector refused file .*" + said[:20]):
        sink.put(local, manifest, rec)
    assert lake_is_empty(col.collector.cfg.lake)
    local, manifest = spool_file(tmp_path)
    sink.put(local, manifest, record(DATA))
    assert (col.collector.cfg.lake / record(DATA).relpath).read_bytes() == DATA
    sink.close()
    raw.close()


# --- limits -------------------------------------------------------------------------


def test_oversized_chunks_and_files_are_refused_with_the_fix(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str, collector_factory) -> None:
    col = collector_factory(collector_config(tmp_path, mosquitto, mqtt_prefix,
                                             max_chunk_bytes=2048, max_file_bytes=4096,
                                             max_staging_bytes=64 * 1024))
    local, manifest = spool_file(tmp_path)
    rec = record(DATA)  # 5120 bytes > max_file_bytes
    sink = shipper(mosquitto, mqtt_prefix, chunk_bytes=1024)
    with pytest.raises(TerminalError, match=r"collector\.max_file_bytes"):
        sink.put(local, manifest, rec)
    small = parquet_bytes(4000, seed=1)
    local, manifest = spool_file(tmp_path, small)
    big_chunks = shipper(mosquitto, mqtt_prefix, chunk_bytes=3000)
    with pytest.raises(TerminalError, match=r"lower sink\.chunk_bytes.*collector"):
        big_chunks.put(local, manifest, record(small))
    assert col.counters["rejected.oversized"] >= 2
    assert lake_is_empty(col.collector.cfg.lake)
    sink.put(local, manifest, record(small))  # within the limits: lands
    assert (col.collector.cfg.lake / record(small).relpath).read_bytes() == small
    sink.close()
    big_chunks.close()


def test_a_broker_limit_below_the_chunk_size_names_sink_chunk_bytes(tmp_path: Path,
                                                                     mqtt_prefix: str) -> None:
    broker = Mosquitto(tmp_path / "broker", max_packet_size=2048)
    try:
        local, manifest = spool_file(tmp_path)
        sink = shipper(broker, mqtt_prefix, chunk_bytes=4096)
        with pytest.raises(TerminalError, match=r"at most 2048 bytes.*lower sink\.chunk_bytes"):
            sink.put(local, manifest, record(DATA))
        sink.close()
    finally:
        broker.close()


# --- credentials ---------------------------------------------------------------------


def test_wrong_credentials_name_the_fix_and_are_retried_with_backoff(
        tmp_path: Path, app_db: Path, mqtt_prefix: str, collector_factory,
        harness_factory) -> None:
    broker = Mosquitto(tmp_path / "broker", users={"gw": "right", "lake": "lakepw"})
    try:
        collector_factory(collector_config(tmp_path / "c", broker, mqtt_prefix,
                                           username="lake", password="lakepw"))
        data = config_dict(tmp_path, app_db, list(WORKLOAD_TABLES),
                           sink=mqtt_sink(broker, mqtt_prefix, username="gw"))
        password_file = tmp_path / "mqtt-password"
        password_file.write_text("wrong\n")
        data["sink"]["password_file"] = str(password_file)
        h = harness_factory(load_config(write_config(tmp_path, data), {}))
        h.step()
        expected = run_workload(app_db, seed=61, transactions=100)
        errors, waits = [], []
        for _ in range(6):
            due_in = h.agent.shipping.next_attempt - h.clock.monotonic()
            summary = h.step(advance=max(1.1, due_in + 0.01))  # sealed, and the retry due
            errors += summary.errors
            waits.append(h.agent.shipping.next_attempt - h.clock.monotonic())
        assert errors and h.agent.state.files(READY)
        assert "refused the connection" in errors[-1] and "as user 'gw'" in errors[-1]
        assert "sink.username" in errors[-1] and "EDGE_AGENT__SINK__PASSWORD" in errors[-1]
        assert h.agent.shipping.failures >= 4 and max(waits) > 2 * min(waits)  # backoff
        h.close()
        # The fix: the right password, from the environment this time.
        del data["sink"]["password_file"]
        env = {"EDGE_AGENT__SINK__PASSWORD": "right"}
        h = harness_factory(load_config(write_config(tmp_path, data), env))
        assert h.flush().ok
        assert_exact(tmp_path / "c" / "lake", app_db, WORKLOAD_TABLES, expected)
    finally:
        broker.close()


def test_a_collector_with_wrong_credentials_keeps_retrying(tmp_path: Path,
                                                           mqtt_prefix: str) -> None:
    broker = Mosquitto(tmp_path / "broker", users={"lake": "lakepw"})
    try:
        cfg = collector_config(tmp_path, broker, mqtt_prefix, username="lake", password="no")
        collector = Collector(cfg, sleep=lambda s: None)
        for _ in range(50):
            collector.step(timeout=0.05)
            collector.next_connect = 0.0  # skip the backoff wait, keep the counting
        assert collector.failures >= 3 and not collector.subscribed
        collector.close()
    finally:
        broker.close()


# --- TLS ---------------------------------------------------------------------------


def test_tls_with_a_ca_and_client_certificates_from_the_fixture(
        tmp_path: Path, mqtt_prefix: str, collector_factory) -> None:
    tls = TlsFiles.make(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "broker", tls=tls)
    try:
        col = collector_factory(collector_config(
            tmp_path / "c", broker, mqtt_prefix, port=broker.tls_port, tls=True,
            ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key))
        local, manifest = spool_file(tmp_path)
        rec = record(DATA)
        sink = shipper(broker, mqtt_prefix, port=broker.tls_port, tls=True, ca_file=tls.ca,
                       cert_file=tls.client_cert, key_file=tls.client_key)
        sink.put(local, manifest, rec)
        assert (col.collector.cfg.lake / rec.relpath).read_bytes() == DATA
        sink.close()
        untrusted = shipper(broker, mqtt_prefix, port=broker.tls_port, tls=True,
                            cert_file=tls.client_cert, key_file=tls.client_key)
        with pytest.raises(TerminalError, match=r"not trusted.*sink\.ca_file"):
            untrusted.put(local, manifest, rec)
        no_client_cert = shipper(broker, mqtt_prefix, port=broker.tls_port, tls=True,
                                 ca_file=tls.ca)
        with pytest.raises((TerminalError, TransientError)):
            no_client_cert.put(local, manifest, rec)
    finally:
        broker.close()


def test_no_collector_is_reported_without_waiting_for_the_ack_timeout(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str) -> None:
    """Mosquitto answers a message nobody subscribes to with reason code 16."""
    local, manifest = spool_file(tmp_path)
    sink = shipper(mosquitto, mqtt_prefix, ack_timeout=60.0)
    with pytest.raises(TransientError, match=r"no subscriber .*edge-agent collect"):
        sink.put(local, manifest, record(DATA))
    sink.close()


def test_an_internal_error_is_logged_and_counted_and_the_collector_goes_on(
        tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str, collector_factory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    col = collector_factory(collector_config(tmp_path, mosquitto, mqtt_prefix))
    receiver = col.collector.receiver
    real_handle = receiver.handle
    calls: list[int] = []

    def fail_once(topic: str, pairs, payload: bytes):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real_handle(topic, pairs, payload)

    monkeypatch.setattr(receiver, "handle", fail_once)
    local, manifest = spool_file(tmp_path)
    sink = shipper(mosquitto, mqtt_prefix, ack_timeout=1.0)
    with pytest.raises(TransientError, match="no ack"):
        sink.put(local, manifest, record(DATA))  # chunk 0 was lost to the bug
    sink.put(local, manifest, record(DATA))
    assert col.counters["errors.internal"] == 1
    assert (col.collector.cfg.lake / record(DATA).relpath).read_bytes() == DATA
    sink.close()
