"""Scenario 7: shipping throughput of the MQTT and S3 sinks against plain clients.

N sealed bronze files (real Parquet of the bronze schema, 1000 rows whose payload
column is random, incompressible bytes) with a matching FileRecord and manifest
(the collector checks the file's footer against it), shipped as the daemon ships
them (``ship_all``: the MQTT sink keeps ``max_files_in_flight`` files in flight):

(a) MQTT, to a real Mosquitto on 127.0.0.1 (tests/servers.py): ``MqttShipper.put()``
    with a real collector process (``edge-agent collect``) writing into a lake
    dir; put() returns once the collector acknowledged the file. Baseline: raw
    paho (MQTT 5, QoS 1, the same chunk size and in-flight window) publishing the
    same chunks and manifest, waiting for every PUBACK, with a subscriber
    process draining the topic.
(b) S3, to a moto server process: ``S3Shipper.put()`` against a plain boto3
    ``put_object`` of the same file and manifest to the same server.

MB/s = file bytes / wall seconds of the shipping loop (1 MB = 10^6 bytes). Both
sides connect before timing (the shipper through one warm-up put of a small
file). The order of agent and baseline alternates between runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, MiB, agent_cmd, env, log, stop, summary
from bench.session import Session

PREFIX = "bench"
DEVICE = "bench-gw"
SUBSCRIBER = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
c.on_message = lambda cl, u, m: None
c.connect("127.0.0.1", int(sys.argv[1]))
c.subscribe(sys.argv[2], qos=1)
open(sys.argv[3], "w").write("subscribed")
c.loop_forever()
"""


ROWS = 1000  # per file


def _parquet(size: int) -> tuple[bytes, str]:
    """A bronze Parquet file of ROWS rows and about ``size`` bytes (at least ~45 KB),
    its payload random bytes; and its schema fingerprint."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from edge_agent.bronze.schema import batch_schema
    from edge_agent.records import ColumnSpec, TableSpec

    bs = batch_schema(TableSpec("t", (ColumnSpec("id", pa.int64(), "INTEGER", 1),
                                      ColumnSpec("payload", pa.binary(), "BLOB"))))

    def build(payload: int) -> bytes:
        per, extra = divmod(max(payload, 0), ROWS)
        columns: dict[str, list[Any]] = {f.name: [None] * ROWS for f in bs.schema}
        columns.update(_op=["c"] * ROWS, _pos=list(range(1, ROWS + 1)), id=list(range(ROWS)),
                       payload=[os.urandom(per + (i < extra)) for i in range(ROWS)])
        out = io.BytesIO()
        pq.write_table(pa.table(columns, schema=bs.schema), out, compression="none",
                       use_dictionary=False, write_statistics=False)
        return out.getvalue()

    overhead = len(build(0))
    return build(size - overhead), bs.fingerprint


def _files(work: Path, count: int, size: int, base: int = 0) -> list[tuple[Path, Path, Any]]:
    from edge_agent.bronze.layout import FileKey
    from edge_agent.spool.manifest import build as build_manifest
    from edge_agent.spool.state import FileRecord

    out = []
    spool = work / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        data, fingerprint = _parquet(size)
        local = spool / f"f{i}.parquet"
        local.write_bytes(data)
        first = (base + i) * ROWS + 1
        last = first + ROWS - 1
        key = FileKey(DEVICE, "src", "t", "2025-11-24", first, last)
        rec = FileRecord(key.file_id, "src", "t", 1, first, last, ROWS, len(data),
                         hashlib.sha256(data).hexdigest(), key.relpath, key.manifest_relpath, 0)
        # A real manifest: the collector checks it against the file's headers, and the
        # file's Parquet footer against its rows and schema_fingerprint.
        manifest = spool / f"f{i}.manifest.json"
        manifest.write_text(json.dumps(build_manifest(rec, DEVICE, fingerprint, 0)) + "\n")
        out.append((local, manifest, rec))
    return out


def _wait(cond: Any, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- MQTT -----------------------------------------------------------------------------
def _mqtt_agent(broker: Any, work: Path, files: list[tuple[Path, Path, Any]],
                warm: tuple[Path, Path, Any], run_no: int) -> float:
    from edge_agent.config import SinkConfig
    from edge_agent.shippers.base import Outgoing, Receipt, ship_all
    from edge_agent.shippers.mqtt import MqttShipper

    prefix = f"{PREFIX}{run_no}a"
    coll = work / f"collector-{run_no}"
    coll.mkdir()
    config = coll / "collector.toml"
    config.write_text(f'[collector]\nlog_format = "json"\nhost = "127.0.0.1"\n'
                      f'port = {broker.port}\ntopic_prefix = "{prefix}"\n'
                      f'lake = "{coll / "lake"}"\nstaging_dir = "{coll / "staging"}"\n')
    log_path = coll / "collector.log"
    with log_path.open("ab") as logf:
        proc = subprocess.Popen(agent_cmd("collect", "--config", str(config)), stdout=logf,
                                stderr=subprocess.STDOUT, cwd=ROOT, env=env())
    shipper = None
    try:
        _wait(lambda: "collector.subscribed" in log_path.read_text(errors="replace")
              or proc.poll() is not None, "the collector's subscription")
        if proc.poll() is not None:
            raise RuntimeError(f"collector exited: {log_path.read_text()[-1500:]}")
        shipper = MqttShipper(SinkConfig(kind="mqtt", host="127.0.0.1", port=broker.port,
                                         topic_prefix=prefix, ack_timeout=60.0))
        shipper.put(*warm)
        t0 = time.perf_counter()
        # As the daemon's shipping stage drives it (runtime/shipping.py): several files
        # in flight, each outcome in order.
        for item, outcome in ship_all(shipper, [Outgoing(*f) for f in files]):
            if not isinstance(outcome, Receipt):
                raise RuntimeError(f"shipping {item.rec.id} failed: {outcome}")
        wall = time.perf_counter() - t0
        _check_landed(coll / "lake", files, "collector")
        return wall
    finally:
        if shipper is not None:
            shipper.close()
        stop(proc)
        shutil.rmtree(coll, ignore_errors=True)


def _mqtt_raw(broker: Any, work: Path, files: list[tuple[Path, Path, Any]],
              chunk: int, inflight: int, run_no: int) -> float:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    topic = f"{PREFIX}{run_no}r/{DEVICE}/batch"
    ready = work / f"sub-{run_no}.ready"
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(broker.port), topic,
                            str(ready)], cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(inflight)
    try:
        _wait(lambda: ready.exists() or sub.poll() is not None, "the subscriber")
        time.sleep(0.2)  # let its SUBACK land
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        t0 = time.perf_counter()
        infos = []
        for local, manifest, _ in files:
            data = local.read_bytes()
            for i in range(0, len(data), chunk):
                infos.append(client.publish(topic, data[i:i + chunk], qos=1))
            infos.append(client.publish(topic, manifest.read_bytes(), qos=1))
        for info in infos:
            info.wait_for_publish(60)
            if not info.is_published():
                raise RuntimeError("raw paho: a PUBACK did not arrive within 60 s")
        return time.perf_counter() - t0
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
            client.loop_stop()
        stop(sub, timeout=10)


def _mqtt_floor(broker: Any, work: Path, files: list[tuple[Path, Path, Any]],
                chunk: int, inflight: int, run_no: int, fast: bool = False) -> float:
    """The durable floor: raw paho publishes every file's chunks and manifest (the
    collector's headers, QoS 1, the same window) to scenario 12's floor subscriber
    (bench/s12_floor.py: each file written with fsync of file, manifest and directory,
    then acked) and waits for every file's ack. ``fast``: the subscriber's paho decodes
    properties as the collector's does (what is left is the collector's own work)."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from bench.s12_floor import FAST_DECODING
    from edge_agent.shippers.mqtt_conn import publish_properties
    from edge_agent.shippers.mqtt_wire import (
        CHUNK,
        MANIFEST,
        OK,
        Ack,
        FileHeader,
        ack_topic,
        batch_topic,
        header_properties,
    )

    prefix = f"{PREFIX}{run_no}{'ff' if fast else 'f'}"
    where = work / f"floor-{run_no}{'-fast' if fast else ''}"
    where.mkdir()
    ready = where / "floor.ready"
    floor = subprocess.Popen([sys.executable, "-m", "bench.s12_floor", str(broker.port), prefix,
                              str(where / "lake"), str(ready)], cwd=ROOT,
                             env={**env(), FAST_DECODING: "1" if fast else "0"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    acked: set[str] = set()
    done = threading.Event()
    subscribed = threading.Event()

    def on_ack(_c: Any, _u: Any, message: Any) -> None:
        ack = Ack.from_json(message.payload)
        if ack.status == OK:
            acked.add(ack.file_id)
        if len(acked) == len(files):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(inflight)
    client.on_message = on_ack
    client.on_subscribe = lambda *_: subscribed.set()
    topic = batch_topic(prefix, DEVICE)
    try:
        _wait(lambda: ready.exists() or floor.poll() is not None, "the floor subscriber")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.subscribe(ack_topic(prefix, DEVICE), options=SubscribeOptions(qos=1))
        if not subscribed.wait(30):
            raise RuntimeError("floor publisher: no SUBACK within 30 s")
        t0 = time.perf_counter()
        for local, manifest, rec in files:
            h = FileHeader(DEVICE, rec.id, rec.relpath, rec.bytes, rec.sha256, chunk,
                           f"r{run_no}")
            data = local.read_bytes()
            for i in range(h.count):
                props = publish_properties(header_properties(h, CHUNK, rec.sha256, i))
                client.publish(topic, data[i * chunk:(i + 1) * chunk], qos=1,
                               properties=props)
            props = publish_properties(header_properties(h, MANIFEST, rec.sha256))
            client.publish(topic, manifest.read_bytes(), qos=1, properties=props)
        if not done.wait(120):
            raise RuntimeError(f"floor: {len(acked)} of {len(files)} acks within 120 s")
        wall = time.perf_counter() - t0
        _check_landed(where / "lake", files, "the floor")
        return wall
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
            client.loop_stop()
        stop(floor, timeout=10)
        shutil.rmtree(where, ignore_errors=True)


# -- S3 -------------------------------------------------------------------------------
def _s3_agent(url: str, bucket: str, files: list[tuple[Path, Path, Any]],
              warm: tuple[Path, Path, Any], run_no: int) -> float:
    from edge_agent.config import SinkConfig
    from edge_agent.shippers.s3 import S3Shipper

    shipper = S3Shipper(SinkConfig(kind="s3", bucket=bucket, endpoint_url=url,
                                   region="us-east-1", addressing_style="path",
                                   prefix=f"agent{run_no}"))
    try:
        shipper.put(*warm)
        t0 = time.perf_counter()
        for local, manifest, rec in files:
            shipper.put(local, manifest, rec)
        return time.perf_counter() - t0
    finally:
        shipper.close()


def _s3_raw(client: Any, bucket: str, files: list[tuple[Path, Path, Any]],
            run_no: int) -> float:
    client.put_object(Bucket=bucket, Key=f"raw{run_no}/warm", Body=b"x")
    t0 = time.perf_counter()
    for local, manifest, rec in files:
        client.put_object(Bucket=bucket, Key=f"raw{run_no}/{rec.relpath}",
                          Body=local.read_bytes())
        client.put_object(Bucket=bucket, Key=f"raw{run_no}/{rec.manifest_relpath}",
                          Body=manifest.read_bytes())
    return time.perf_counter() - t0


def _rates(agent: list[float], raw: list[float], total: int) -> dict[str, Any]:
    a = [total / w / 1e6 for w in agent]
    r = [total / w / 1e6 for w in raw]
    return {"agent_mb_s": summary(a), "baseline_mb_s": summary(r),
            "ratio": summary([x / y for x, y in zip(a, r, strict=True)])}


def run(session: Session) -> dict[str, Any]:
    mode = session.mode
    if shutil.which("mosquitto") is None and shutil.which("mosquitto",
                                                          path="/usr/sbin:/sbin") is None:
        raise RuntimeError("mosquitto not found: bash scripts/install-test-deps.sh")
    from edge_agent.config import SinkConfig
    from tests.servers import ACCESS_KEY, SECRET_KEY, Mosquitto, MotoS3

    work = session.scratch("transports")
    size = mode.transport_file_mib * MiB
    files = _files(work / "files", mode.transport_files, size)
    warm = _files(work / "warm", 1, 64 * 1024, base=10_000)[0]
    total = sum(rec.bytes for _, _, rec in files)
    defaults = SinkConfig(kind="mqtt")
    out: dict[str, Any] = {"files": len(files), "file_bytes": size, "bytes": total,
                           "chunk_bytes": defaults.chunk_bytes,
                           "max_inflight": defaults.max_inflight}

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_EC2_METADATA_DISABLED")}
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                      AWS_EC2_METADATA_DISABLED="true")
    broker = Mosquitto(work / "mosquitto")
    moto = MotoS3(work)
    try:
        mq_agent: list[float] = []
        mq_raw: list[float] = []
        mq_floor: list[float] = []
        mq_fast: list[float] = []
        for run_no in range(mode.runs):
            steps = [lambda r=run_no: mq_agent.append(_mqtt_agent(broker, work, files, warm, r)),
                     lambda r=run_no: mq_floor.append(_mqtt_floor(
                         broker, work, files, defaults.chunk_bytes, defaults.max_inflight, r)),
                     lambda r=run_no: mq_fast.append(_mqtt_floor(
                         broker, work, files, defaults.chunk_bytes, defaults.max_inflight, r,
                         fast=True)),
                     lambda r=run_no: mq_raw.append(_mqtt_raw(
                         broker, work, files, defaults.chunk_bytes, defaults.max_inflight, r))]
            for step in steps if run_no % 2 == 0 else steps[::-1]:
                step()
            log(f"transports: mqtt run {run_no + 1}/{mode.runs} done")
        out["mqtt"] = _rates(mq_agent, mq_raw, total)
        out["mqtt_durable"] = _rates(mq_agent, mq_floor, total)
        out["mqtt_durable_fast"] = _rates(mq_agent, mq_fast, total)

        client = moto.client()
        s3_agent: list[float] = []
        s3_raw: list[float] = []
        for run_no in range(mode.runs):
            bucket = f"lake-{run_no}"
            client.create_bucket(Bucket=bucket)
            steps = [lambda r=run_no, b=bucket: s3_agent.append(_s3_agent(
                         moto.url, b, files, warm, r)),
                     lambda r=run_no, b=bucket: s3_raw.append(_s3_raw(client, b, files, r))]
            for step in steps if run_no % 2 == 0 else steps[::-1]:
                step()
            log(f"transports: s3 run {run_no + 1}/{mode.runs} done")
        out["s3"] = _rates(s3_agent, s3_raw, total)
    finally:
        broker.close()
        moto.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(work, ignore_errors=True)
    return out


def _check_landed(lake: Path, files: list[Any], who: str) -> None:
    """Every file in ``lake``, whole (its sha256 as shipped)."""
    for _, _, rec in files:
        got = lake / rec.relpath
        if hashlib.sha256(got.read_bytes()).hexdigest() != rec.sha256:
            raise RuntimeError(f"{who} wrote a different {rec.relpath}")
