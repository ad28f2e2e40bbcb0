"""The ``mqtt`` sink: bronze files to the lake through an MQTT 5 broker and the
lake-side collector (``edge-agent collect``, edge_agent/lake/collect.py).

A file goes out as chunks then its manifest, QoS 1, on ``<prefix>/<device>/batch``
(wire format: shippers/mqtt_wire.py, docs/protocol.md). put() returns only when
the collector's ack for that file arrives on ``<prefix>/<device>/ack``: the ack
is sent after the collector verified size and sha256 and wrote file and
manifest durably into the lake. Neither publish() return codes nor PUBACKs nor
paho's in-memory session count as delivery (brokers drop QoS 1 messages, e.g.
Mosquitto beyond ``max_queued_messages``); without an ack in ``ack_timeout``
put() raises TransientError and the file stays in the spool for the next try.

Imported only when ``sink.kind = "mqtt"`` (paho costs ~20 MiB of memory).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import BinaryIO, Protocol

from edge_agent.config import SinkConfig
from edge_agent.errors import CorruptFileError, TerminalError, TransientError
from edge_agent.fsutil import sha256_file
from edge_agent.log import get_logger
from edge_agent.shippers.base import Receipt
from edge_agent.shippers.mqtt_link import Link
from edge_agent.shippers.mqtt_wire import (
    CHUNK,
    MANIFEST,
    OK,
    REJECTED,
    Ack,
    FileHeader,
    ack_topic,
    batch_topic,
    device_of_file_id,
    header_properties,
)
from edge_agent.shippers.throttle import ThrottledReader
from edge_agent.spool.state import FileRecord

log = get_logger("edge_agent.mqtt")


class _Reader(Protocol):
    def read(self, size: int = -1) -> bytes: ...


class MqttShipper:
    name = "mqtt"

    def __init__(self, cfg: SinkConfig) -> None:
        self.cfg = cfg
        self.broker = cfg.broker
        self.link: Link | None = None
        self.device = ""

    def put(self, local: Path, manifest: Path, rec: FileRecord) -> Receipt:
        manifest_data = _checked_manifest(local, manifest, rec)
        header = FileHeader(
            device_of_file_id(rec.id),
            rec.id,
            rec.relpath,
            rec.bytes,
            rec.sha256,
            self.cfg.chunk_bytes,
            secrets.token_hex(8),
        )
        link = self._link(header.device)
        try:
            ack = self._deliver(link, local, manifest_data, header)
        finally:
            if not link.healthy:
                self._drop_link()
        return Receipt(
            f"mqtt://{self.broker.host}:{self.broker.effective_port}/{rec.relpath}",
            rec.bytes,
            ack.existed,
        )

    def probe(self, device: str) -> None:
        self._link(device)

    def close(self) -> None:
        self._drop_link()

    # -- the connection: lazy, and thrown away when broken --------------------
    def _link(self, device: str) -> Link:
        if self.link is not None and (self.device != device or not self.link.healthy):
            self._drop_link()
        if self.link is None:
            client_id = self.broker.client_id or f"edge-agent-{device}"
            self.link = Link.open(
                self.broker,
                client_id,
                ack_topic(self.cfg.topic_prefix, device),
                self.cfg.ack_timeout,
            )
            self.device = device
            log.info("mqtt.connected", broker=self.broker.where, client_id=client_id)
        return self.link

    def _drop_link(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    # -- one file ---------------------------------------------------------------
    def _deliver(self, link: Link, local: Path, manifest_data: bytes, header: FileHeader) -> Ack:
        topic = batch_topic(self.cfg.topic_prefix, header.device)
        self._check_packet_size(link, topic, header)
        link.expect(header.file_id)
        early = self._send_chunks(link, local, topic, header)
        if early is not None:
            return _settle(early, header)
        link.publish(
            topic, manifest_data, header_properties(header, MANIFEST, _sha(manifest_data)), 1
        )
        link.drain()
        if link.no_subscribers and link.answer(header) is None:
            raise TransientError(
                f"{self.broker.where} has no subscriber for {topic!r}: start a collector "
                "(`edge-agent collect`) with the same topic_prefix; will resend"
            )
        ack = link.wait_answer(
            header, self.cfg.ack_timeout, f"ack from a collector for {header.file_id!r}"
        )
        return _settle(ack, header)

    def _send_chunks(self, link: Link, local: Path, topic: str, header: FileHeader) -> Ack | None:
        """Publish every chunk; returns early with an ack that settles the file already
        (a negative one for this attempt, or "ok" from an earlier attempt)."""
        with open(local, "rb") as raw:
            reader = self._reader(raw)
            for index in range(header.count):
                data = _read_exact(reader, header.chunk_length(index))
                if len(data) != header.chunk_length(index):
                    raise CorruptFileError(
                        f"spooled file {header.file_id} is corrupt: it shrank while being sent"
                    )
                early = link.answer(header)
                if early is not None:
                    return early
                link.publish(
                    topic,
                    data,
                    header_properties(header, CHUNK, _sha(data), index),
                    self.cfg.max_inflight,
                )
        return None

    def _reader(self, raw: BinaryIO) -> _Reader:
        if self.cfg.max_bandwidth:
            return ThrottledReader(raw, self.cfg.max_bandwidth)
        return raw

    def _check_packet_size(self, link: Link, topic: str, header: FileHeader) -> None:
        """Refuse early when the broker announced a Maximum Packet Size our chunks exceed
        (it would otherwise drop the connection on the first chunk)."""
        pairs = header_properties(header, CHUNK, "0" * 64, header.count)
        needed = packet_size(topic, pairs, header.chunk_bytes)
        if link.max_packet is not None and needed > link.max_packet:
            raise TerminalError(
                f"{self.broker.where} accepts messages of at most {link.max_packet} bytes, but "
                f"a chunk of sink.chunk_bytes = {header.chunk_bytes} makes {needed}: lower "
                f"sink.chunk_bytes to {max(1024, link.max_packet - (needed - header.chunk_bytes))}"
                " or less"
            )


def packet_size(topic: str, pairs: list[tuple[str, str]], payload: int) -> int:
    """Upper bound of a QoS 1 PUBLISH packet's size on the wire (MQTT 5, 3.3)."""
    props = sum(1 + 2 + len(k.encode()) + 2 + len(v.encode()) for k, v in pairs)
    variable = 2 + len(topic.encode()) + 2 + 4 + props
    return 1 + 4 + variable + payload


def _settle(ack: Ack, header: FileHeader) -> Ack:
    if ack.status == OK:
        return ack
    if ack.status == REJECTED:
        raise TerminalError(f"the collector refused file {header.file_id}: {ack.reason}")
    raise TransientError(f"the collector asked to resend file {header.file_id}: {ack.reason}")


def _checked_manifest(local: Path, manifest: Path, rec: FileRecord) -> bytes:
    """The manifest's bytes, once the spooled file is known to match its record."""
    try:
        size, sha = sha256_file(local)
        manifest_data = manifest.read_bytes()
    except FileNotFoundError as exc:
        raise CorruptFileError(f"spooled file {rec.id} is missing: {exc}") from exc
    if (size, sha) != (rec.bytes, rec.sha256):
        raise CorruptFileError(
            f"spooled file {rec.id} is corrupt: {size} bytes sha256 {sha}, expected "
            f"{rec.bytes} bytes sha256 {rec.sha256}"
        )
    return manifest_data


def _read_exact(reader: _Reader, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        data = reader.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
