"""The MQTT wire protocol between the ``mqtt`` sink and the lake-side collector.

Pure data: no paho import, so both sides and the tests share it cheaply. The
normative description is docs/protocol.md; keep the two in step.

A file travels as ``count`` chunk messages then one manifest message, all on
``<prefix>/<device>/batch`` at QoS 1, each carrying the whole file header in
MQTT 5 user properties (so any message can start or resume staging, in any
order). The collector answers on ``<prefix>/<device>/ack`` with a JSON ack.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from edge_agent.bronze.layout import relpath_problem

VERSION = "1"
CHUNK, MANIFEST = "chunk", "manifest"
OK, RETRY, REJECTED = "ok", "retry", "rejected"

# User property names (docs/protocol.md, "Messages").
P_VERSION = "edge-version"
P_KIND = "edge-kind"
P_FILE = "edge-file"
P_PATH = "edge-path"
P_SIZE = "edge-size"
P_SHA256 = "edge-sha256"
P_CHUNK_BYTES = "edge-chunk-bytes"
P_COUNT = "edge-count"
P_INDEX = "edge-index"
P_PART_SHA256 = "edge-part-sha256"
P_ATTEMPT = "edge-attempt"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ATTEMPT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DEVICE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DECIMAL = re.compile(r"^[0-9]{1,18}$")
_MAX_FILE_ID = 1024


@dataclass(frozen=True)
class AckTo:
    """Enough of a message to answer it: whom, for which file and attempt."""

    device: str
    file_id: str
    attempt: str
    sha256: str = ""


class WireError(ValueError):
    """A message that breaks the protocol. ``status`` is the ack to answer with
    (RETRY: resend may fix it; REJECTED: it never will); ``to`` is set when the
    message names its device, file and attempt well enough to be answered;
    ``category`` is the collector's counter for it."""

    def __init__(
        self,
        reason: str,
        status: str = REJECTED,
        to: AckTo | None = None,
        category: str = "malformed",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.to = to
        self.category = category


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_chunk_bytes: int


@dataclass(frozen=True)
class FileHeader:
    """What every message of one file carries; identifies one staging entry."""

    device: str
    file_id: str
    relpath: str
    size: int
    sha256: str
    chunk_bytes: int
    attempt: str

    @property
    def count(self) -> int:
        return chunk_count(self.size, self.chunk_bytes)

    def chunk_length(self, index: int) -> int:
        return min(self.chunk_bytes, self.size - index * self.chunk_bytes)

    @property
    def ack_to(self) -> AckTo:
        return AckTo(self.device, self.file_id, self.attempt, self.sha256)

    @functools.cached_property
    def staging_key(self) -> str:
        """Same file, same bytes, same chunking -> same key, whatever the attempt."""
        ident = "\0".join(
            (
                self.device,
                self.file_id,
                self.relpath,
                self.sha256,
                str(self.size),
                str(self.chunk_bytes),
            )
        )
        return hashlib.sha256(ident.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Part:
    """One received message: a chunk (``index`` >= 0) or the manifest (index -1)."""

    kind: str
    header: FileHeader
    index: int
    part_sha256: str


@dataclass(frozen=True)
class Ack:
    file_id: str
    sha256: str
    status: str
    attempt: str = ""
    existed: bool = False
    reason: str = ""
    path: str = ""

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "v": int(VERSION),
            "file": self.file_id,
            "sha256": self.sha256,
            "status": self.status,
            "attempt": self.attempt,
        }
        if self.status == OK:
            body.update(existed=self.existed, path=self.path)
        else:
            body["reason"] = self.reason
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | bytearray) -> Ack:
        try:
            body = json.loads(payload)
            ack = cls(
                str(body["file"]),
                str(body["sha256"]),
                str(body["status"]),
                str(body.get("attempt", "")),
                bool(body.get("existed", False)),
                str(body.get("reason", "")),
                str(body.get("path", "")),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise WireError(f"malformed ack: {exc}") from exc
        if ack.status not in (OK, RETRY, REJECTED):
            raise WireError(f"malformed ack: unknown status {ack.status!r}")
        return ack


def chunk_count(size: int, chunk_bytes: int) -> int:
    """ceil(size / chunk_bytes), and one (empty) chunk for an empty file."""
    return max(1, -(-size // chunk_bytes))


def batch_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/batch"


def ack_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/ack"


def shared_subscription(group: str, prefix: str) -> str:
    return f"$share/{group}/{prefix}/+/batch"


def device_of_topic(topic: str, prefix: str) -> str:
    head, tail = f"{prefix}/", "/batch"
    device = (
        topic[len(head) : -len(tail)] if topic.startswith(head) and topic.endswith(tail) else ""
    )
    if not _DEVICE.match(device):
        raise WireError(f"topic {topic!r} is not {prefix}/<device>/batch", category="unknown_file")
    return device


def device_of_file_id(file_id: str) -> str:
    return file_id.split("/", 1)[0]


# -- encoding (agent side) ----------------------------------------------------
def header_properties(
    h: FileHeader, kind: str, part_sha256: str, index: int | None = None
) -> list[tuple[str, str]]:
    pairs = [
        (P_VERSION, VERSION),
        (P_KIND, kind),
        (P_FILE, h.file_id),
        (P_PATH, h.relpath),
        (P_SIZE, str(h.size)),
        (P_SHA256, h.sha256),
        (P_CHUNK_BYTES, str(h.chunk_bytes)),
        (P_COUNT, str(h.count)),
        (P_PART_SHA256, part_sha256),
        (P_ATTEMPT, h.attempt),
    ]
    if index is not None:
        pairs.append((P_INDEX, str(index)))
    return pairs


# -- decoding (collector side) ------------------------------------------------
def parse_part(
    topic: str, prefix: str, pairs: list[tuple[str, str]], payload_len: int, limits: Limits
) -> Part:
    """Check a received message against the protocol and the collector's limits."""
    device = device_of_topic(topic, prefix)
    first: dict[str, str] = {}
    for name, value in pairs:
        first.setdefault(name, value)
    # Whom to answer comes from the first of each property, so that even a message
    # with a property twice gets its "rejected" (docs/protocol.md).
    to = _ack_to(first, device)
    try:
        props = _unique(pairs)
        if props.get(P_VERSION) != VERSION:
            raise WireError(
                f"unsupported protocol version {props.get(P_VERSION)!r} (want "
                f"{VERSION!r}): upgrade the older side"
            )
        kind = props.get(P_KIND, "")
        if kind not in (CHUNK, MANIFEST):
            raise WireError(f"unknown message kind {kind!r}")
        header = _header(props, to)
        _check_limits(header, props, limits)
        index = _int(props, P_INDEX) if kind == CHUNK else -1
        part = Part(kind, header, index, _hex(props, P_PART_SHA256))
        _check_length(part, payload_len, limits)
    except WireError as exc:
        exc.to = exc.to or to
        raise
    return part


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    props: dict[str, str] = {}
    for name, value in pairs:
        if name in props:
            raise WireError(f"user property {name!r} appears twice")
        props[name] = value
    return props


def _ack_to(props: dict[str, str], device: str) -> AckTo:
    if P_FILE not in props or P_ATTEMPT not in props:
        raise WireError(
            f"not an edge-agent message: user properties {P_FILE} and {P_ATTEMPT} are missing"
        )
    file_id = props[P_FILE]
    if not 0 < len(file_id) <= _MAX_FILE_ID or device_of_file_id(file_id) != device:
        raise WireError(
            f"file id {file_id[:80]!r} does not belong to device {device!r} "
            f"(want {device}/<source>/<table>/<first>-<last>)",
            category="unknown_file",
        )
    attempt = props.get(P_ATTEMPT, "")
    if not _ATTEMPT.match(attempt):
        raise WireError(f"malformed {P_ATTEMPT} {attempt[:80]!r}")
    sha = props.get(P_SHA256, "")
    return AckTo(device, file_id, attempt, sha if _HEX64.match(sha) else "")


def _header(props: dict[str, str], to: AckTo) -> FileHeader:
    header = FileHeader(
        to.device,
        to.file_id,
        props.get(P_PATH, ""),
        _int(props, P_SIZE),
        _hex(props, P_SHA256),
        _int(props, P_CHUNK_BYTES),
        to.attempt,
    )
    problem = relpath_problem(header.relpath, to.device)
    if problem:
        raise WireError(f"{P_PATH} {header.relpath[:200]!r}: {problem}", category="unknown_file")
    return header


def _check_limits(h: FileHeader, props: dict[str, str], limits: Limits) -> None:
    if h.size > limits.max_file_bytes:
        raise WireError(
            f"file of {h.size} bytes exceeds collector.max_file_bytes "
            f"({limits.max_file_bytes}): raise it on the collector, or lower "
            "buffer.max_file_bytes on the agent",
            category="oversized",
        )
    if not 0 < h.chunk_bytes <= limits.max_chunk_bytes:
        raise WireError(
            f"chunks of {h.chunk_bytes} bytes exceed collector.max_chunk_bytes "
            f"({limits.max_chunk_bytes}): lower sink.chunk_bytes on the agent, or "
            "raise max_chunk_bytes on the collector",
            category="oversized",
        )
    if _int(props, P_COUNT) != h.count:
        raise WireError(
            f"{P_COUNT} {props[P_COUNT]} does not match size {h.size} in chunks "
            f"of {h.chunk_bytes} (want {h.count})"
        )


def _check_length(part: Part, payload_len: int, limits: Limits) -> None:
    h = part.header
    if part.kind == MANIFEST:
        if not 0 < payload_len <= limits.max_chunk_bytes:
            raise WireError(
                f"manifest of {payload_len} bytes: want 1 to {limits.max_chunk_bytes}",
                RETRY,
                category="oversized",
            )
        return
    if not 0 <= part.index < h.count:
        raise WireError(f"chunk index {part.index} out of range 0..{h.count - 1}")
    want = h.chunk_length(part.index)
    if payload_len != want:
        word = "truncated" if payload_len < want else "too long"
        raise WireError(
            f"chunk {part.index} {word}: {payload_len} bytes, want {want}",
            RETRY,
            category="truncated",
        )


def _int(props: dict[str, str], name: str) -> int:
    raw = props.get(name, "")
    if not _DECIMAL.match(raw):
        raise WireError(f"{name} must be a decimal number, got {raw[:40]!r}")
    return int(raw)


def _hex(props: dict[str, str], name: str) -> str:
    raw = props.get(name, "")
    if not _HEX64.match(raw):
        raise WireError(f"{name} must be 64 lowercase hex digits (sha256), got {raw[:80]!r}")
    return raw
