"""The Shipper contract (shippers/base.py), run against every sink implementation.

Each sink plugs in through a fixture that yields (shipper, read_back) where
read_back(relpath) returns the bytes the sink holds, or None.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.bronze.layout import FileKey
from edge_agent.config import SinkConfig
from edge_agent.errors import CorruptFileError, TerminalError, TransientError
from edge_agent.shippers.base import Shipper
from edge_agent.shippers.dir import DirShipper
from edge_agent.shippers.s3 import S3Shipper
from edge_agent.spool.state import FileRecord
from tests.mqtt.support import ROWS, manifest_of, parquet_bytes

ReadBack = Callable[[str], bytes | None]
Overwrite = Callable[[str, bytes], None]


@dataclass
class Sink:
    shipper: Shipper
    read: ReadBack
    overwrite: Overwrite  # another writer puts other bytes at the same place


@pytest.fixture(params=["dir", "s3", "mqtt"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sink]:
    if request.param == "dir":
        root = tmp_path / "lake"

        def read(rel: str) -> bytes | None:
            p = root / rel
            return p.read_bytes() if p.exists() else None

        def overwrite(rel: str, data: bytes) -> None:
            (root / rel).write_bytes(data)

        shipper: Shipper = DirShipper(root, create=True)
        yield Sink(shipper, read, overwrite)
        shipper.close()
        return
    if request.param == "mqtt":
        yield from _mqtt_sink(request, tmp_path)
        return
    yield from _s3_sink(request)


def _mqtt_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sink]:
    """The agent's MqttShipper, a real Mosquitto and a running collector: the sink
    under test is the pair, and what it holds is what the collector wrote."""
    from edge_agent.shippers.mqtt import MqttShipper
    from tests.mqtt.support import collector_config

    broker = request.getfixturevalue("mosquitto")
    prefix = request.getfixturevalue("mqtt_prefix")
    cfg = collector_config(tmp_path / "collector", broker, prefix)
    request.getfixturevalue("collector_factory")(cfg)
    shipper = MqttShipper(SinkConfig(kind="mqtt", host="127.0.0.1", port=broker.port,
                                     topic_prefix=prefix, chunk_bytes=1024, ack_timeout=10.0))

    def read(rel: str) -> bytes | None:
        p = cfg.lake / rel
        return p.read_bytes() if p.exists() else None

    def overwrite(rel: str, data: bytes) -> None:
        (cfg.lake / rel).write_bytes(data)

    yield Sink(shipper, read, overwrite)
    shipper.close()


def _s3_sink(request: pytest.FixtureRequest) -> Iterator[Sink]:
    request.getfixturevalue("s3_env")
    server = request.getfixturevalue("moto_s3")
    bucket = request.getfixturevalue("bucket")
    cfg = SinkConfig(kind="s3", bucket=bucket, endpoint_url=server.url, region="us-east-1",
                     addressing_style="path")
    s3 = S3Shipper(cfg)
    client = server.client()

    def read(rel: str) -> bytes | None:
        try:
            return bytes(client.get_object(Bucket=bucket, Key=s3.key(rel))["Body"].read())
        except client.exceptions.NoSuchKey:
            return None

    def overwrite(rel: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=s3.key(rel), Body=data)

    yield Sink(s3, read, overwrite)
    s3.close()


def spooled(tmp_path: Path, data: bytes, name: str = "f") -> tuple[Path, Path, FileRecord]:
    """A sealed file and its manifest; files that reach the collector must be real
    Parquet with the manifest's rows and fingerprint (tests.mqtt.support.parquet_bytes)."""
    local = tmp_path / "spool" / f"{name}.parquet"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    manifest = local.with_suffix(".manifest.json")
    key = FileKey("gw", "src", "t", "2025-11-24", 1, 2)  # the real lake layout
    rec = FileRecord(key.file_id, "src", "t", 1, 1, 2, ROWS, len(data),
                     hashlib.sha256(data).hexdigest(), key.relpath, key.manifest_relpath, 0)
    manifest.write_bytes(manifest_of(rec))
    return local, manifest, rec


def test_put_delivers_bytes_and_manifest(sink, tmp_path: Path) -> None:
    shipper, read = sink.shipper, sink.read
    local, manifest, rec = spooled(tmp_path, parquet_bytes(5004))  # 5 chunks over MQTT
    receipt = shipper.put(local, manifest, rec)
    assert read(rec.relpath) == local.read_bytes()
    assert read(rec.manifest_relpath) == manifest.read_bytes()
    assert receipt.bytes == rec.bytes and not receipt.already_there


def test_put_is_idempotent(sink, tmp_path: Path) -> None:
    shipper, read = sink.shipper, sink.read
    data = parquet_bytes()
    local, manifest, rec = spooled(tmp_path, data)
    shipper.put(local, manifest, rec)
    again = shipper.put(local, manifest, rec)
    assert again.already_there
    assert read(rec.relpath) == data


def test_corrupt_local_file_is_refused_and_nothing_becomes_visible(sink, tmp_path: Path) -> None:
    shipper, read = sink.shipper, sink.read
    local, manifest, rec = spooled(tmp_path, b"PAR1 original")
    local.write_bytes(b"PAR1 0riginal")  # same size, different bytes
    with pytest.raises(CorruptFileError, match="corrupt"):
        shipper.put(local, manifest, rec)
    assert read(rec.relpath) is None
    assert read(rec.manifest_relpath) is None


def test_missing_local_file_is_reported_as_corrupt(sink, tmp_path: Path) -> None:
    shipper = sink.shipper
    local, manifest, rec = spooled(tmp_path, b"PAR1")
    local.unlink()
    with pytest.raises(CorruptFileError, match="missing"):
        shipper.put(local, manifest, rec)


def test_other_bytes_at_the_place_are_repaired_or_refused(sink, tmp_path: Path) -> None:
    """A sink the device writes itself repairs the place; the collector keeps what
    landed and refuses (a landed file is immutable there: issue 13 item 7)."""
    local, manifest, rec = spooled(tmp_path, parquet_bytes(seed=1))
    sink.shipper.put(local, manifest, rec)
    sink.overwrite(rec.relpath, b"PAR1 torn")
    if sink.shipper.name == "mqtt":
        with pytest.raises(TerminalError, match="already landed with other bytes"):
            sink.shipper.put(local, manifest, rec)
        assert sink.read(rec.relpath) == b"PAR1 torn"
        return
    again = sink.shipper.put(local, manifest, rec)
    assert not again.already_there
    assert sink.read(rec.relpath) == local.read_bytes()


def test_unwritable_dir_sink_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    local, manifest, rec = spooled(tmp_path, b"PAR1")
    with pytest.raises((TerminalError, TransientError), match="lake directory"):
        DirShipper(blocker / "lake").put(local, manifest, rec)
