"""Helpers for the MQTT tests: collectors in threads or as real processes, raw
publishing of hand-made messages, real Parquet payloads for them, and the config
sections that point at a broker."""

from __future__ import annotations

import hashlib
import io
import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pyarrow as pa
import pyarrow.parquet as pq
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge_agent.bronze.layout import FileKey
from edge_agent.bronze.schema import batch_schema
from edge_agent.config_mqtt import CollectorConfig
from edge_agent.lake.collect import Collector
from edge_agent.records import ColumnSpec, TableSpec
from edge_agent.shippers import mqtt_wire as wire
from edge_agent.shippers.mqtt_conn import publish_properties
from edge_agent.spool.state import FileRecord
from tests.conftest import agent_cmd, agent_env, toml_text
from tests.servers import Mosquitto


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0,
               every: float = 0.02) -> None:
    """Bounded polling: the only kind of waiting the tests do."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def staged_chunks(files: Path) -> int:
    """Chunks staged under a collector's ``<staging_dir>/files`` (marked present)."""
    return sum(p.read_bytes().count(1) for p in files.glob("*/present"))


def mqtt_sink(broker: Mosquitto, prefix: str, **extra: Any) -> dict[str, Any]:
    """A [sink] section for config_dict(); short timeouts so failures retry fast."""
    return {"kind": "mqtt", "host": "127.0.0.1", "port": broker.port, "topic_prefix": prefix,
            "ack_timeout": "10s", **extra}


def collector_config(tmp: Path, broker: Mosquitto, prefix: str, **extra: Any) -> CollectorConfig:
    base = CollectorConfig(lake=tmp / "lake", host="127.0.0.1", port=broker.port,
                           topic_prefix=prefix, staging_dir=tmp / "staging")
    return replace(base, **extra)


@dataclass
class CollectorThread:
    """An in-process collector on its own thread (its loop is the real one)."""

    collector: Collector
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> CollectorThread:
        self.thread = threading.Thread(target=self.collector.run, args=(self.stop_event.is_set,),
                                       daemon=True)
        self.thread.start()
        wait_until(lambda: self.collector.subscribed, "the collector's subscription")
        return self

    @property
    def counters(self) -> dict[str, int]:
        return self.collector.counters

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=30)


class CollectorProcess:
    """A real `edge-agent collect` process with a generated config file."""

    def __init__(self, tmp: Path, section: dict[str, Any], name: str = "collector") -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = tmp / f"{name}.toml"
        self.config.write_text(toml_text({"collector": {"log_format": "json", **section}}))
        self.log_path = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CollectorProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(agent_cmd("collect", "--config", str(self.config)),
                                     stdout=log, stderr=log, env=agent_env())
        log.close()
        wait_until(lambda: "collector.subscribed" in self.log(), "the collector's subscription")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            if f'"{name}"' in line:
                found.append(json.loads(line))
        return found

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def collector_section(tmp: Path, broker: Mosquitto, prefix: str, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": broker.port, "topic_prefix": prefix,
            "lake": str(tmp / "lake"), "staging_dir": str(tmp / "staging"), **extra}


# --- hand-made files and messages ------------------------------------------------
# The collector lands only readable Parquet whose row count and schema fingerprint
# are the manifest's: hand-made files are real ones, of the agent's bronze schema.
SCHEMA = batch_schema(TableSpec("t", (ColumnSpec("id", pa.int64(), "INTEGER", 1),
                                      ColumnSpec("payload", pa.binary(), "BLOB"))))
FINGERPRINT = SCHEMA.fingerprint
ROWS = 2  # what record() and the default manifests say a file holds


def parquet_bytes(size: int = 0, rows: int = ROWS, fingerprint: str = FINGERPRINT,
                  seed: int = 0) -> bytes:
    """A Parquet file like the agent's (the bronze envelope and schema metadata, with
    ``fingerprint`` as edge_agent.schema_fingerprint) of ``rows`` rows and about
    ``size`` bytes (within a few bytes, and never below the ~2.5 KB that its footer
    alone takes). Its ``payload`` column is random bytes from ``seed``: incompressible,
    and other seeds give other files."""
    metadata = {**SCHEMA.schema.metadata, b"edge_agent.schema_fingerprint": fingerprint.encode()}
    schema = SCHEMA.schema.with_metadata(metadata)

    def build(payload: int) -> bytes:
        rng = random.Random(seed)
        per, extra = divmod(max(payload, 0), max(rows, 1))
        columns: dict[str, list[Any]] = {f.name: [None] * rows for f in schema}
        columns.update(_op=["c"] * rows, _pos=list(range(1, rows + 1)), _device=["gw"] * rows,
                       _source=["src"] * rows, _table=["t"] * rows,
                       id=list(range(1, rows + 1)),
                       payload=[rng.randbytes(per + (i < extra)) for i in range(rows)])
        out = io.BytesIO()
        pq.write_table(pa.table(columns, schema=schema), out, compression="none",
                       use_dictionary=False, write_statistics=False)
        return out.getvalue()

    empty = len(build(0))
    if rows == 0 or size <= empty:
        return build(0)
    first = build(size - empty)
    return build(size - empty + size - len(first))


def record(data: bytes, device: str = "gw", first: int = 1, last: int = 2,
           rows: int = ROWS) -> FileRecord:
    key = FileKey(device, "src", "t", "2025-11-24", first, last)
    return FileRecord(key.file_id, "src", "t", 1, first, last, rows, len(data),
                      hashlib.sha256(data).hexdigest(), key.relpath, key.manifest_relpath, 0)


def manifest_of(rec: FileRecord, **extra: object) -> bytes:
    """A manifest that tells the truth about ``rec`` (the collector checks it against the
    chunks' headers, and a new file's Parquet footer against its rows and
    schema_fingerprint)."""
    data = {"id": rec.id, "device": rec.id.split("/", 1)[0], "bytes": rec.bytes,
            "sha256": rec.sha256, "partition": {"date": rec.relpath.split("date=")[1][:10]},
            "rows": rec.rows, "schema_fingerprint": FINGERPRINT, **extra}
    return json.dumps(data, sort_keys=True).encode()


def header_of(rec: FileRecord, chunk_bytes: int, attempt: str = "rawtest") -> wire.FileHeader:
    return wire.FileHeader(rec.id.split("/", 1)[0], rec.id, rec.relpath, rec.bytes, rec.sha256,
                           chunk_bytes, attempt)


class RawClient:
    """A plain paho client that publishes what a test hands it and keeps the acks."""

    def __init__(self, broker: Mosquitto, prefix: str, device: str = "gw") -> None:
        self.prefix = prefix
        self.acks: list[wire.Ack] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = lambda c, u, m: self.acks.append(wire.Ack.from_json(m.payload))
        subacked: dict[int, threading.Event] = {}
        self.client.on_subscribe = lambda c, u, mid, codes, p: subacked.setdefault(
            mid, threading.Event()).set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        rc, mid = self.client.subscribe(wire.ack_topic(prefix, device), qos=1)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        # Nothing is published before the broker's SUBACK: the acks must not be missed.
        assert subacked.setdefault(mid, threading.Event()).wait(10), "no SUBACK in 10 s"

    def publish(self, pairs: list[tuple[str, str]], payload: bytes, device: str = "gw",
                topic: str | None = None) -> None:
        info = self.client.publish(topic or wire.batch_topic(self.prefix, device), payload,
                                   qos=1, properties=publish_properties(pairs))
        info.wait_for_publish(10)

    def send_file(self, h: wire.FileHeader, data: bytes, manifest: bytes | None = None,
                  mangle: Callable[[int, bytes], bytes] = lambda i, d: d) -> None:
        if manifest is None:  # a truthful one for the header's file (of parquet_bytes())
            manifest = json.dumps({"id": h.file_id, "device": h.device, "bytes": h.size,
                                   "sha256": h.sha256,
                                   "partition": {"date": h.relpath.split("date=")[1][:10]},
                                   "rows": ROWS, "schema_fingerprint": FINGERPRINT}).encode()
        for i in range(h.count):
            chunk = data[i * h.chunk_bytes:(i + 1) * h.chunk_bytes]
            sha = hashlib.sha256(chunk).hexdigest()
            self.publish(wire.header_properties(h, wire.CHUNK, sha, i), mangle(i, chunk))
        sha = hashlib.sha256(manifest).hexdigest()
        self.publish(wire.header_properties(h, wire.MANIFEST, sha), manifest)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
