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

import contextlib
import hashlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from edge_agent.config import SinkConfig
from edge_agent.errors import CorruptFileError, EdgeAgentError, TerminalError, TransientError
from edge_agent.log import get_logger
from edge_agent.shippers.base import Outcome, Outgoing, Receipt
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
        with contextlib.closing(self.put_many([Outgoing(local, manifest, rec)])) as outcomes:
            _, outcome = next(outcomes)
        if isinstance(outcome, EdgeAgentError):
            raise outcome
        return outcome

    def put_many(
        self, files: Iterable[Outgoing]
    ) -> Generator[tuple[Outgoing, Outcome], None, None]:
        """Up to ``max_files_in_flight`` files sent and awaiting their acks; outcomes in
        the order of the files (shippers/base.py). Sending the next file overlaps the
        collector's work on the earlier ones."""
        window: deque[_Sent] = deque()
        limit = self.cfg.max_files_in_flight
        if self.link is not None:
            self.link.begin_round()
        try:
            for item in files:
                device = device_of_file_id(item.rec.id)

                def full(device: str = device) -> bool:
                    return len(window) >= limit or device != self.device

                if (yield from self._settle_front(window, full)):
                    return
                try:
                    window.append(self._start(item))
                except CorruptFileError as exc:
                    yield item, exc
                except (TransientError, TerminalError) as exc:
                    # The files before it that were answered already are settled; the
                    # first one that was not gets the error.
                    if not (yield from self._settle_front(window, lambda: False)):
                        yield (window.popleft().item if window else item), exc
                    return
            yield from self._settle_front(window, lambda: True)
        finally:
            for sent in window:
                sent.link.forget(sent.header.file_id)
            if self.link is not None and not self.link.healthy:
                self._drop_link()

    def _settle_front(
        self, window: deque[_Sent], wait: Callable[[], bool]
    ) -> Generator[tuple[Outgoing, Outcome], None, bool]:
        """Settle the files at the front of the window that are answered, and while
        ``wait()`` the next one whatever it takes; True when an outcome ended the run."""
        while window and (wait() or window[0].answered):
            sent = window.popleft()
            outcome = self._outcome(sent)
            yield sent.item, outcome
            if _stops(outcome):
                return True
        return False

    def _outcome(self, sent: _Sent) -> Outcome:
        """The file's receipt or error, waiting for its ack until its deadline."""
        h = sent.header
        try:
            ack = sent.early or sent.link.wait_answer(
                h,
                max(0.0, sent.deadline - time.monotonic()),
                f"ack from a collector for {h.file_id!r}",
            )
            if ack is None:
                raise TransientError(
                    f"{self.broker.where} has no subscriber for {sent.topic!r}: start a "
                    "collector (`edge-agent collect`) with the same topic_prefix; will resend"
                )
            _settle(ack, h)
        except (TransientError, TerminalError) as exc:
            return exc
        finally:
            sent.link.forget(h.file_id)
        where = f"mqtt://{self.broker.host}:{self.broker.effective_port}/{sent.item.rec.relpath}"
        return Receipt(where, sent.item.rec.bytes, ack.existed)

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
    def _start(self, item: Outgoing) -> _Sent:
        """Send one file's chunks and manifest without waiting for its ack."""
        rec = item.rec
        manifest_data = _checked_manifest(item.local, item.manifest, rec)
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
        topic = batch_topic(self.cfg.topic_prefix, header.device)
        self._check_packet_size(link, topic, header)
        link.expect(header.file_id)
        try:
            early = self._send_chunks(link, item.local, topic, header)
            if early is None:
                pairs = header_properties(header, MANIFEST, _sha(manifest_data))
                link.publish(topic, manifest_data, pairs, self.cfg.max_inflight)
        except BaseException:
            link.forget(header.file_id)
            raise
        deadline = time.monotonic() + self.cfg.ack_timeout
        return _Sent(item, header, link, topic, deadline, early)

    def _send_chunks(self, link: Link, local: Path, topic: str, header: FileHeader) -> Ack | None:
        """Publish every chunk; returns early with an ack that settles the file already
        (a negative one for this attempt, or "ok" from an earlier attempt). The bytes
        sent are checked against the record's sha256 on the way (one read of the file):
        a CorruptFileError before the manifest, so the collector never lands them."""
        whole = hashlib.sha256()
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
                whole.update(data)
                link.publish(
                    topic,
                    data,
                    header_properties(header, CHUNK, _sha(data), index),
                    self.cfg.max_inflight,
                )
            grew = bool(raw.read(1))
        if grew or whole.hexdigest() != header.sha256:
            raise CorruptFileError(
                f"spooled file {header.file_id} is corrupt: the bytes sent do not match its "
                f"record ({header.size} bytes sha256 {header.sha256})"
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


@dataclass(frozen=True)
class _Sent:
    """A file whose chunks and manifest went out, awaiting its ack."""

    item: Outgoing
    header: FileHeader
    link: Link
    topic: str
    deadline: float  # time.monotonic() by which the ack is due
    early: Ack | None  # the answer that came while its chunks went out (none sent after)

    @property
    def answered(self) -> bool:
        return self.early is not None or self.link.answer(self.header) is not None


def _stops(outcome: Outcome | None) -> bool:
    """A transient or terminal error ends the run; a corrupt file does not."""
    return isinstance(outcome, EdgeAgentError) and not isinstance(outcome, CorruptFileError)


def _settle(ack: Ack, header: FileHeader) -> Ack:
    if ack.status == OK:
        return ack
    if ack.status == REJECTED:
        raise TerminalError(f"the collector refused file {header.file_id}: {ack.reason}")
    raise TransientError(f"the collector asked to resend file {header.file_id}: {ack.reason}")


def _checked_manifest(local: Path, manifest: Path, rec: FileRecord) -> bytes:
    """The manifest's bytes, once the spooled file has its record's size (its sha256 is
    checked as it is sent: ``_send_chunks``)."""
    try:
        size = local.stat().st_size
        manifest_data = manifest.read_bytes()
    except FileNotFoundError as exc:
        raise CorruptFileError(f"spooled file {rec.id} is missing: {exc}") from exc
    if size != rec.bytes:
        raise CorruptFileError(
            f"spooled file {rec.id} is corrupt: {size} bytes, expected {rec.bytes} bytes "
            f"sha256 {rec.sha256}"
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
