"""What the collector does with one message, without MQTT: check it, stage it, land
the file in the lake when it is complete, and say which acks to send.

Nothing a message carries can crash this or reach the lake unverified: a
message that breaks the protocol or the limits, a manifest that contradicts its
file's headers, and a file that is not the Parquet file its manifest describes
(lake/content.py: read from the staged chunks, before anything is written) are
counted, logged and answered with a negative ack when they name their file well
enough (docs/protocol.md, "Negative acks").
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

from edge_agent.bronze.layout import partition_of
from edge_agent.config_mqtt import CollectorConfig
from edge_agent.lake.content import ChunkFile, parquet_problem
from edge_agent.lake.landing import AssemblyMismatch, Lake, staged_mismatch
from edge_agent.lake.staging import Staging, StagingFull
from edge_agent.log import get_logger
from edge_agent.shippers.mqtt_wire import (
    CHUNK,
    OK,
    REJECTED,
    RETRY,
    Ack,
    AckTo,
    FileHeader,
    Limits,
    Part,
    WireError,
    ack_topic,
    parse_part,
)

log = get_logger("edge_agent.collect")


@dataclass(frozen=True)
class Reply:
    topic: str
    ack: Ack


class Receiver:
    def __init__(self, cfg: CollectorConfig, staging: Staging, lake: Lake) -> None:
        self.prefix = cfg.topic_prefix
        self.limits = Limits(cfg.max_file_bytes, cfg.max_chunk_bytes)
        self.staging = staging
        self.lake = lake
        self.counters: Counter[str] = Counter()

    def handle(self, topic: str, pairs: list[tuple[str, str]], payload: bytes) -> list[Reply]:
        """One message in, the acks to publish out."""
        self.counters["messages"] += 1
        try:
            part = parse_part(topic, self.prefix, pairs, len(payload), self.limits)
            if hashlib.sha256(payload).hexdigest() != part.part_sha256:
                raise WireError(
                    f"{part.kind} {part.index} of {part.header.file_id}: payload "
                    "does not match edge-part-sha256 (corrupted in transit)",
                    RETRY,
                    part.header.ack_to,
                    "corrupt",
                )
        except WireError as exc:
            return self._refuse(topic, exc)
        try:
            return self._accept(part, payload)
        except StagingFull as exc:
            return self._refuse(
                topic, WireError(str(exc), RETRY, part.header.ack_to, "staging_full")
            )
        except OSError as exc:  # staging or lake I/O: the sender resends later
            reason = f"collector storage error ({exc.strerror or exc}): will accept a resend"
            return self._refuse(
                topic, WireError(reason, RETRY, part.header.ack_to, "storage_error")
            )

    def _accept(self, part: Part, payload: bytes) -> list[Reply]:
        h = part.header
        with self.staging.lock(h):
            if self._landed_already(part, payload):
                self.counters["parts_of_landed_files"] += 1
                return [self._reply(Ack(h.file_id, h.sha256, OK, h.attempt, True, path=h.relpath))]
            if part.kind == CHUNK:
                fresh = self.staging.put_chunk(h, part.index, payload)
                self.counters["chunks" if fresh else "chunks_already_staged"] += 1
                if not self.staging.has_manifest(h):
                    return []
            else:
                self.staging.put_manifest(h, payload)
                self.counters["manifests"] += 1
            ack = self._land(h, manifest_arrived=part.kind != CHUNK)
        return [self._reply(ack)] if ack is not None else []

    def _landed_already(self, part: Part, payload: bytes) -> bool:
        """A resent part of a file that landed already, judged by the landed manifest
        (its presence means the file beside it is whole): a chunk whose header names
        the same file, size and sha256 and whose bytes are the landed file's at that
        place, or the same manifest again with nothing staged for the file. Then the
        answer is "ok" at once, so the agent stops sending the file (it was resent
        because its ack came late or was lost); anything else takes the full path,
        where a conflict is found and refused."""
        h = part.header
        try:
            landed = self.lake.manifest_path(h).read_bytes()
            if part.kind == CHUNK:
                return _describes(landed, h) and self.lake.holds(
                    h, part.index * h.chunk_bytes, payload
                )
            return (
                landed == payload
                and not self.staging.entry(h).exists()
                and self.lake.path(h).stat().st_size == h.size
            )
        except FileNotFoundError:
            return False

    def land_staged(self, h: FileHeader) -> Reply | None:
        """Recovery after a restart: land an entry that is already complete."""
        with self.staging.lock(h):
            if self.staging.tidy(h) or not self.staging.complete(h):
                return None
            ack = self._land(h, manifest_arrived=False)
        return self._reply(ack) if ack is not None else None

    def _land(self, h: FileHeader, manifest_arrived: bool) -> Ack | None:
        """Under the entry's lock: write file and manifest into the lake when possible."""
        complete = self.staging.complete(h)
        if not complete and not manifest_arrived:
            return None
        conflict = self.lake.conflict(h, self.staging.manifest(h))
        if conflict is not None:
            self.staging.discard(h)
            self.counters["rejected.conflict"] += 1
            log.error("collector.conflict", file=h.file_id, error=conflict)
            return _ack(
                h.ack_to,
                REJECTED,
                f"{conflict}: a landed file is immutable; a device that sends other bytes "
                "for one file id has a bug or is not who it claims: check it before "
                "removing the lake's copy",
            )
        # No conflict: a file at the place holds exactly these bytes (a resend of a file
        # already landed needs no chunks).
        wrong = manifest_problem(h, self.staging.manifest(h))
        if wrong is not None:
            self.staging.discard(h)
            self.counters["rejected.bad_manifest"] += 1
            log.warning("collector.bad_manifest", file=h.file_id, error=wrong)
            return _ack(h.ack_to, REJECTED, f"manifest of {h.file_id}: {wrong}")
        existed = self.lake.path(h).exists()
        if not existed and not complete:
            return None
        refused = self._check_landed(h) if existed else self._check_content(h) or self._assemble(h)
        if refused is not None:
            return refused
        self.lake.write_manifest(h, self.staging.manifest(h))
        self.staging.discard(h)
        self.counters["files_existing" if existed else "files_landed"] += 1
        log.info("collector.landed", file=h.file_id, path=h.relpath, bytes=h.size, existed=existed)
        return Ack(h.file_id, h.sha256, OK, h.attempt, existed=existed, path=h.relpath)

    def _check_landed(self, h: FileHeader) -> Ack | None:
        """A file already in the lake (its manifest lost, or a resend): the manifest
        about to stand beside it must describe it too (rows, fingerprint)."""
        manifest = json.loads(self.staging.manifest(h))  # manifest_problem() passed
        with ChunkFile([(self.lake.path(h), h.size)]) as landed:
            problem = parquet_problem(landed, manifest["rows"], manifest["schema_fingerprint"])
        if problem is None:
            return None
        self.staging.discard(h)
        self.counters["rejected.bad_content"] += 1
        log.warning("collector.bad_content", file=h.file_id, error=problem, landed=True)
        return _ack(
            h.ack_to,
            REJECTED,
            f"manifest of {h.file_id} does not describe the landed file: {problem}",
        )

    def _assemble(self, h: FileHeader) -> Ack | None:
        """Under the entry's lock: the staged chunks into the lake, or a refusal."""
        try:
            self.lake.assemble(h, self.staging.data(h))
        except AssemblyMismatch as exc:
            return self._corrupt_staging(h, str(exc))
        return None

    def _corrupt_staging(self, h: FileHeader, error: str) -> Ack:
        self.staging.discard(h)
        self.counters["rejected.corrupt_staging"] += 1
        log.warning("collector.assembly_mismatch", file=h.file_id, error=error)
        return _ack(h.ack_to, RETRY, f"{error}: staged chunks discarded, send it again")

    def _check_content(self, h: FileHeader) -> Ack | None:
        """Under the entry's lock, a complete entry whose manifest passed: None when the
        staged file is a readable Parquet file with the manifest's rows and schema
        fingerprint (its footer only is read), else the entry is discarded and the
        answer is a refusal. A file that fails because a staged chunk was damaged at
        rest (the chunks no longer match the header's sha256) is asked for again."""
        manifest = json.loads(self.staging.manifest(h))  # manifest_problem() passed
        with ChunkFile([(self.staging.data(h), h.size)]) as staged:
            problem = parquet_problem(staged, manifest["rows"], manifest["schema_fingerprint"])
        if problem is None:
            return None
        damaged = staged_mismatch(h, self.staging.data(h))
        if damaged is not None:
            return self._corrupt_staging(h, damaged)
        self.staging.discard(h)
        self.counters["rejected.bad_content"] += 1
        log.warning("collector.bad_content", file=h.file_id, error=problem)
        return _ack(
            h.ack_to,
            REJECTED,
            f"content of {h.file_id}: {problem}; it was not landed (a device's files are "
            "the Parquet files its manifests describe: check the device's spool)",
        )

    def _refuse(self, topic: str, exc: WireError) -> list[Reply]:
        self.counters[f"rejected.{exc.category}"] += 1
        file_id = exc.to.file_id if exc.to else None
        log.warning(
            "collector.rejected",
            category=exc.category,
            topic=topic[:200],
            file=file_id,
            status=exc.status,
            reason=exc.reason,
        )
        if exc.to is None:
            return []  # nobody to answer: the sender times out and resends
        return [self._reply(_ack(exc.to, exc.status, exc.reason))]

    def _reply(self, ack: Ack) -> Reply:
        self.counters[f"acks.{ack.status}"] += 1
        device = ack.file_id.split("/", 1)[0]
        return Reply(ack_topic(self.prefix, device), ack)


def manifest_problem(h: FileHeader, data: bytes) -> str | None:
    """Why a manifest cannot stand beside the file its chunks' headers describe, or None:
    it must be a JSON object that names the same file, device, size, sha256 and
    partition, and states the file's rows and schema fingerprint (checked against the
    file's content before it lands); a device's own topic is still untrusted input."""
    try:
        found = json.loads(data)
    except (ValueError, RecursionError) as exc:  # also a 5,000-digit number, [[[[...
        return f"not JSON ({str(exc)[:200]})"
    if not isinstance(found, dict):
        return "not a JSON object"
    expected = {
        "id": h.file_id,
        "device": h.device,
        "bytes": h.size,
        "sha256": h.sha256,
        "partition": {"date": partition_of(h.relpath)},
    }
    wrong = [k for k, v in expected.items() if found.get(k) != v]
    if wrong:
        return f"contradicts the file's headers on {', '.join(wrong)}"
    rows = found.get("rows")
    if type(rows) is not int or rows < 0:
        return "has no rows (the file's row count, a non-negative integer)"
    fingerprint = found.get("schema_fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        return "has no schema_fingerprint (a non-empty string)"
    return None


def _describes(manifest: bytes, h: FileHeader) -> bool:
    """The landed manifest names the file, size and sha256 of these headers."""
    try:
        found = json.loads(manifest)
    except (ValueError, RecursionError):
        return False
    if not isinstance(found, dict):
        return False
    return (found.get("id"), found.get("bytes"), found.get("sha256")) == (
        h.file_id,
        h.size,
        h.sha256,
    )


def _ack(to: AckTo, status: str, reason: str) -> Ack:
    return Ack(to.file_id, to.sha256, status, to.attempt, reason=reason)
