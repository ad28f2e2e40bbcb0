"""The wire format and the collector's receiving logic, without a broker: chunking,
header round trips, refusals, and landing from chunks in any order."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config_mqtt import CollectorConfig
from edge_agent.lake.landing import Lake
from edge_agent.lake.receiver import Receiver
from edge_agent.lake.staging import Staging
from edge_agent.shippers import mqtt_wire as wire
from tests.mqtt.support import FINGERPRINT, header_of, manifest_of, parquet_bytes, record

LIMITS = wire.Limits(max_file_bytes=1 << 20, max_chunk_bytes=1 << 16)
TOPIC = "edge/gw/batch"


@given(st.integers(0, 200_000), st.integers(1, 2**20))
def test_chunks_cover_the_file_exactly(size: int, chunk_bytes: int) -> None:
    h = wire.FileHeader("gw", "gw/s/t/1-2", "x", size, "0" * 64, chunk_bytes, "a")
    lengths = [h.chunk_length(i) for i in range(h.count)]
    assert sum(lengths) == size
    assert all(0 < n <= chunk_bytes for n in lengths) or size == 0
    assert h.count == 1 if size == 0 else h.count == -(-size // chunk_bytes)


@given(st.binary(min_size=0, max_size=5000), st.integers(1, 2048))
def test_every_message_of_a_file_parses_back_to_its_header(data: bytes, chunk_bytes: int) -> None:
    h = header_of(record(data), chunk_bytes)
    for i in range(h.count):
        chunk = data[i * chunk_bytes:(i + 1) * chunk_bytes]
        pairs = wire.header_properties(h, wire.CHUNK, hashlib.sha256(chunk).hexdigest(), i)
        part = wire.parse_part(TOPIC, "edge", pairs, len(chunk), LIMITS)
        assert (part.header, part.index, part.kind) == (h, i, wire.CHUNK)
    pairs = wire.header_properties(h, wire.MANIFEST, "a" * 64)
    assert wire.parse_part(TOPIC, "edge", pairs, 10, LIMITS).index == -1


@pytest.mark.parametrize(("change", "category", "answerable"), [
    ({wire.P_VERSION: "2"}, "malformed", True),
    ({wire.P_KIND: "other"}, "malformed", True),
    ({wire.P_FILE: "other/src/t/1-2"}, "unknown_file", False),
    ({wire.P_PATH: "bronze/src/t/date=2025-11-24/../../x/gw-1-2.parquet"}, "unknown_file", True),
    ({wire.P_PATH: "bronze/src/t/date=2025-11-24/other-1-2.parquet"}, "unknown_file", True),
    ({wire.P_PATH: "/etc/passwd"}, "unknown_file", True),
    ({wire.P_SIZE: "-1"}, "malformed", True),
    ({wire.P_SIZE: "²"}, "malformed", True),
    ({wire.P_SIZE: str(2 << 20)}, "oversized", True),
    ({wire.P_CHUNK_BYTES: str(1 << 17)}, "oversized", True),
    ({wire.P_COUNT: "7"}, "malformed", True),
    ({wire.P_INDEX: "3"}, "malformed", True),
    ({wire.P_SHA256: "XYZ"}, "malformed", True),
    ({wire.P_ATTEMPT: "a b"}, "malformed", False),
])
def test_a_broken_header_is_refused_with_its_category(change: dict[str, str], category: str,
                                                      answerable: bool) -> None:
    h = header_of(record(b"x" * 1500), 1000)
    pairs = [(k, change.get(k, v)) for k, v in wire.header_properties(h, wire.CHUNK, "b" * 64, 0)]
    with pytest.raises(wire.WireError) as info:
        wire.parse_part(TOPIC, "edge", pairs, 1000, LIMITS)
    assert info.value.category == category
    assert (info.value.to is not None) == answerable


def test_a_repeated_property_and_a_foreign_topic_are_refused() -> None:
    h = header_of(record(b"x" * 10), 1000)
    pairs = wire.header_properties(h, wire.CHUNK, "b" * 64, 0)
    with pytest.raises(wire.WireError, match="twice") as twice:
        wire.parse_part(TOPIC, "edge", [*pairs, pairs[0]], 10, LIMITS)
    # Answerable (issue 13 item 9): the sender hears "rejected" instead of waiting.
    assert twice.value.to is not None and twice.value.to.file_id == h.file_id
    with pytest.raises(wire.WireError, match="is not edge/<device>/batch"):
        wire.parse_part("other/gw/batch", "edge", pairs, 10, LIMITS)


def test_ack_json_round_trip_and_garbage() -> None:
    ack = wire.Ack("gw/s/t/1-2", "a" * 64, wire.OK, "x1", existed=True, path="bronze/p")
    assert wire.Ack.from_json(ack.to_json()) == ack
    nack = wire.Ack("gw/s/t/1-2", "a" * 64, wire.RETRY, "x1", reason="corrupt")
    assert json.loads(nack.to_json())["reason"] == "corrupt"
    for garbage in (b"", b"[]", b"{}", b'{"file": 1, "sha256": 2, "status": "maybe"}'):
        with pytest.raises(wire.WireError):
            wire.Ack.from_json(garbage)


# --- the receiver on a real staging directory and lake -----------------------------


def receiver(tmp: Path, **limits: int) -> Receiver:
    cfg = CollectorConfig(lake=tmp / "lake", staging_dir=tmp / "staging", **limits)
    return Receiver(cfg, Staging(cfg.staging_dir, cfg.max_staging_bytes, cfg.staging_ttl),
                    Lake(cfg.lake))


def messages(data: bytes, chunk_bytes: int, manifest: bytes | None = None,
             attempt: str = "a1") -> list[tuple[list[tuple[str, str]], bytes]]:
    h = header_of(record(data), chunk_bytes, attempt)
    manifest = manifest_of(record(data)) if manifest is None else manifest
    out = []
    for i in range(h.count):
        chunk = data[i * chunk_bytes:(i + 1) * chunk_bytes]
        out.append((wire.header_properties(h, wire.CHUNK, hashlib.sha256(chunk).hexdigest(), i),
                    chunk))
    out.append((wire.header_properties(h, wire.MANIFEST, hashlib.sha256(manifest).hexdigest()),
                manifest))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 4000), st.integers(0, 2**16), st.integers(50, 1200), st.randoms(),
       st.integers(0, 3))
def test_any_order_and_any_duplicates_land_the_file_once(tmp_path_factory, size: int, seed: int,
                                                         chunk_bytes: int, rng: random.Random,
                                                         dups: int) -> None:
    tmp = tmp_path_factory.mktemp("rx")
    rx = receiver(tmp)
    data = parquet_bytes(size, seed=seed)
    msgs = messages(data, chunk_bytes)
    msgs += [rng.choice(msgs) for _ in range(dups)]
    rng.shuffle(msgs)
    acks = [r.ack for pairs, payload in msgs for r in rx.handle(TOPIC, pairs, payload)]
    rec = record(data)
    assert (tmp / "lake" / rec.relpath).read_bytes() == data
    assert (tmp / "lake" / rec.manifest_relpath).read_bytes() == manifest_of(rec)
    assert acks and all(a.status == wire.OK and a.sha256 == rec.sha256 for a in acks)
    assert rx.counters["files_landed"] == 1
    assert not list((tmp / "lake").rglob("*.tmp"))


def test_staged_chunks_survive_a_restart_and_a_complete_entry_lands_on_start(
        tmp_path: Path) -> None:
    data = parquet_bytes(2560)  # 5 chunks of 512
    msgs = messages(data, 512)
    first = receiver(tmp_path)
    for pairs, payload in msgs[:3]:
        assert first.handle(TOPIC, pairs, payload) == []
    second = receiver(tmp_path)  # a restart: the same directories
    for pairs, payload in messages(data, 512, attempt="a2")[:-1]:
        second.handle(TOPIC, pairs, payload)
    assert second.counters["chunks_already_staged"] == 3
    # Everything but the landing happened; a third start finds it complete and lands it.
    pairs, payload = msgs[-1]
    h = header_of(record(data), 512)
    second.staging.put_manifest(h, payload)
    third = receiver(tmp_path)
    replies = [third.land_staged(x) for x in third.staging.headers()]
    assert [r.ack.status for r in replies if r] == [wire.OK]
    assert (tmp_path / "lake" / record(data).relpath).read_bytes() == data


@pytest.mark.parametrize("damaged", [0, 2], ids=["first-chunk", "footer-chunk"])
def test_a_damaged_staged_chunk_is_discarded_and_asked_for_again(tmp_path: Path,
                                                                 damaged: int) -> None:
    """Damage in the footer fails the content check too: still a resend (the chunks no
    longer match the header's sha256), not a refusal of the device's file."""
    data = parquet_bytes(3000)  # 3 chunks of 1000, the footer in the last
    rx = receiver(tmp_path)
    msgs = messages(data, 1000)
    rx.handle(TOPIC, *msgs[damaged])
    staged = next((tmp_path / "staging" / "files").glob("*/data"))
    with staged.open("r+b") as f:  # same size, other bytes: bit rot at rest
        f.seek(damaged * 1000)
        f.write(b"X" * 1000)
    replies = [r for i, (pairs, payload) in enumerate(msgs) if i != damaged
               for r in rx.handle(TOPIC, pairs, payload)]
    assert [r.ack.status for r in replies] == [wire.RETRY]
    assert "staged chunks discarded" in replies[0].ack.reason
    assert not (tmp_path / "lake" / record(data).relpath).exists()
    assert rx.counters["rejected.corrupt_staging"] == 1 and not rx.counters["rejected.bad_content"]
    replies = [r for pairs, payload in msgs for r in rx.handle(TOPIC, pairs, payload)]
    assert [r.ack.status for r in replies] == [wire.OK]


def test_staging_full_asks_for_a_resend(tmp_path: Path) -> None:
    # Room for one 2,000-byte file and one more chunk, headers (~300 bytes each) counted.
    rx = receiver(tmp_path, max_staging_bytes=3800, max_file_bytes=2000,
                  max_chunk_bytes=1000)
    big = messages(b"q" * 2000, 1000)
    for pairs, payload in big[:2]:
        rx.handle(TOPIC, pairs, payload)
    other = messages(b"r" * 2000, 1000)
    replies = rx.handle(TOPIC, *other[0]) + rx.handle(TOPIC, *other[1])
    assert [r.ack.status for r in replies] == [wire.RETRY]
    assert "max_staging_bytes" in replies[0].ack.reason
    assert rx.counters["rejected.staging_full"] == 1


def test_a_landed_file_is_immutable(tmp_path: Path) -> None:
    """Issue 13 item 7: the same bytes again is an idempotent ok; other bytes for a landed
    file id, or another manifest for it, is refused, counted and reported."""
    rx = receiver(tmp_path)
    data = parquet_bytes(2600)
    for pairs, payload in messages(data, 1000):
        rx.handle(TOPIC, pairs, payload)
    rec = record(data)
    landed = tmp_path / "lake" / rec.relpath
    assert landed.read_bytes() == data

    # Every part of a resend is answered "ok" at once (the agent stops at the first).
    again = [r.ack for pairs, payload in messages(data, 1000, attempt="a2")
             for r in rx.handle(TOPIC, pairs, payload)]
    assert [(a.status, a.existed) for a in again] == [(wire.OK, True)] * 4

    other = parquet_bytes(2600, seed=1)  # same length, same file id and path
    assert len(other) == len(data) and other != data
    forged = [(pairs, payload) for pairs, payload in messages(other, 1000, attempt="a3")]
    replies = [r.ack for pairs, payload in forged for r in rx.handle(TOPIC, pairs, payload)]
    assert [a.status for a in replies] == [wire.REJECTED]
    assert "already landed with other bytes" in replies[0].reason
    assert landed.read_bytes() == data

    manifest_only = messages(data, 1000, manifest=manifest_of(rec, note=2), attempt="a4")[-1]
    replies = [r.ack for r in rx.handle(TOPIC, *manifest_only)]
    assert [a.status for a in replies] == [wire.REJECTED]
    assert (tmp_path / "lake" / rec.manifest_relpath).read_bytes() == manifest_of(rec)
    assert rx.counters["rejected.conflict"] == 2


def test_manifests_count_against_the_staging_quota_and_a_flood_of_them_is_evicted(
        tmp_path: Path) -> None:
    """Issue 13 item 8: manifest-only messages filled staging far past its quota."""
    import time

    later = [0.0]
    cfg = CollectorConfig(lake=tmp_path / "lake", staging_dir=tmp_path / "staging",
                          max_staging_bytes=20_000, max_file_bytes=4000, max_chunk_bytes=1000)
    staging = Staging(cfg.staging_dir, cfg.max_staging_bytes, cfg.staging_ttl,
                      clock=lambda: time.time() + later[0])
    rx = Receiver(cfg, staging, Lake(cfg.lake))
    for i in range(40):  # manifests of files whose chunks never come
        data = bytes([i]) * 500
        pairs, payload = messages(data, 1000, manifest=manifest_of(record(data),
                                                                    pad="M" * 700))[-1]
        rx.handle(TOPIC, pairs, payload)
        later[0] += 10  # each entry idles a while before the next flood message
    on_disk = sum(p.stat().st_size for p in (tmp_path / "staging" / "files").rglob("*")
                  if p.is_file())
    assert on_disk <= 20_000 and staging.used == on_disk
    data = parquet_bytes(3600)
    acks = [r.ack for pairs, payload in messages(data, 1000)
            for r in rx.handle(TOPIC, pairs, payload)]
    assert [a.status for a in acks] == [wire.OK]
    assert (tmp_path / "lake" / record(data).relpath).read_bytes() == data


@pytest.mark.parametrize(("manifest", "said"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    ("other-device", "contradicts the file's headers on device"),
    ("wrong-sha", "contradicts the file's headers on sha256"),
    ("wrong-partition", "contradicts the file's headers on partition"),
    ("no-rows", "has no rows"),
    ("negative-rows", "has no rows"),
    ("no-fingerprint", "has no schema_fingerprint"),
    pytest.param(b"[" * 100_000, "not JSON", id="deep-nesting"),  # RecursionError
    pytest.param(b'{"rows": 1' + b"0" * 5000 + b"}", "not JSON", id="5000-digits"),  # ValueError
])
def test_a_manifest_that_lies_about_its_file_is_rejected(tmp_path: Path, manifest: Any,
                                                          said: str) -> None:
    """Issue 13 item 6 (manifest part): the collector landed such manifests."""
    data = b"payload " * 100
    rec = record(data)
    if isinstance(manifest, str):
        lie = {"other-device": {"device": "other"}, "wrong-sha": {"sha256": "0" * 64},
               "wrong-partition": {"partition": {"date": "2030-01-01"}},
               "no-rows": {"rows": None}, "negative-rows": {"rows": -1},
               "no-fingerprint": {"schema_fingerprint": 7}}[manifest]
        manifest = manifest_of(rec, **lie)
    rx = receiver(tmp_path)
    acks = [r.ack for pairs, payload in messages(data, 1000, manifest=manifest)
            for r in rx.handle(TOPIC, pairs, payload)]
    assert [a.status for a in acks] == [wire.REJECTED]
    assert said in acks[0].reason
    assert not (tmp_path / "lake" / rec.relpath).exists()
    assert rx.counters["rejected.bad_manifest"] == 1


def test_a_partition_that_is_no_real_date_is_rejected() -> None:
    h = header_of(record(b"x" * 10), 1000)
    bad = wire.FileHeader(h.device, h.file_id, h.relpath.replace("2025-11-24", "9999-99-99"),
                          h.size, h.sha256, h.chunk_bytes, h.attempt)
    pairs = wire.header_properties(bad, wire.CHUNK, "b" * 64, 0)
    with pytest.raises(wire.WireError, match="not a real date") as info:
        wire.parse_part(TOPIC, "edge", pairs, 10, LIMITS)
    assert info.value.to is not None  # answered "rejected"


def plain_parquet() -> bytes:
    """Readable Parquet, but not the agent's: no edge_agent schema metadata."""
    out = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2]}), out)
    return out.getvalue()


CONTENT_LIES = {
    "not-parquet": (lambda: b"PAR1" + b"x" * 3000 + b"PAR1", "not a readable Parquet file"),
    "garbage": (lambda: bytes(range(256)) * 12, "not a readable Parquet file"),
    "more-rows": (lambda: parquet_bytes(3000, rows=3), "it holds 3 rows, the manifest says 2"),
    "no-rows": (lambda: parquet_bytes(3000, rows=0), "it holds 0 rows, the manifest says 2"),
    "other-fingerprint": (lambda: parquet_bytes(3000, fingerprint="f" * 16),
                          f"its schema fingerprint is 'ffffffffffffffff', the manifest says "
                          f"'{FINGERPRINT}'"),
    "no-fingerprint": (plain_parquet,
                       "its schema metadata has no edge_agent.schema_fingerprint"),
}


@pytest.mark.parametrize("case", list(CONTENT_LIES))
def test_content_that_is_not_the_manifests_parquet_file_is_rejected(tmp_path: Path,
                                                                    case: str) -> None:
    """Issue 13 item 6 (content part): the collector landed any bytes whose headers and
    manifest agreed. Checked from the staged chunks' footer, before anything is written."""
    make, said = CONTENT_LIES[case]
    data = make()
    rec = record(data)
    rx = receiver(tmp_path)
    acks = [r.ack for pairs, payload in messages(data, 1000)
            for r in rx.handle(TOPIC, pairs, payload)]
    assert [a.status for a in acks] == [wire.REJECTED]
    assert acks[0].reason.startswith(f"content of {rec.id}: ") and said in acks[0].reason
    assert rx.counters["rejected.bad_content"] == 1 and not rx.counters["files_landed"]
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*"))
    assert not list((tmp_path / "staging" / "files").iterdir())  # the entry is discarded
    # The true manifest for those bytes lands them (another file id: a new lake place).
    truthful = parquet_bytes(3000, rows=5, seed=9)
    good = record(truthful, first=3, last=4, rows=5)
    h = header_of(good, 1000)
    msgs = [(wire.header_properties(h, wire.CHUNK, hashlib.sha256(c).hexdigest(), i), c)
            for i, c in enumerate(truthful[i:i + 1000] for i in range(0, len(truthful), 1000))]
    manifest = manifest_of(good)
    msgs.append((wire.header_properties(h, wire.MANIFEST, hashlib.sha256(manifest).hexdigest()),
                 manifest))
    acks = [r.ack for pairs, payload in msgs for r in rx.handle(TOPIC, pairs, payload)]
    assert [a.status for a in acks] == [wire.OK]
    assert (tmp_path / "lake" / good.relpath).read_bytes() == truthful


def test_a_staged_entry_with_bad_content_is_refused_at_start_up(tmp_path: Path) -> None:
    """Recovery lands complete entries at start-up: through the same content check."""
    data = parquet_bytes(3000, rows=3)  # the manifest says 2
    rec = record(data)
    first = receiver(tmp_path)
    h = header_of(rec, 1000)
    with first.staging.lock(h):
        for i in range(h.count):
            first.staging.put_chunk(h, i, data[i * 1000:(i + 1) * 1000])
        first.staging.put_manifest(h, manifest_of(rec))
    second = receiver(tmp_path)
    replies = [second.land_staged(x) for x in second.staging.headers()]
    assert [r.ack.status for r in replies if r] == [wire.REJECTED]
    assert not (tmp_path / "lake" / rec.relpath).exists()
    assert not list((tmp_path / "staging" / "files").iterdir())


def test_a_staging_read_error_during_the_content_check_asks_for_a_resend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error of the staging area is not a fault of the device's file: "retry",
    the entry kept, not "rejected"."""
    from edge_agent.lake import content

    def failing_open(*args: Any, **kwargs: Any) -> Any:
        raise OSError(5, "Input/output error")

    data = parquet_bytes(3000)
    rx = receiver(tmp_path)
    msgs = messages(data, 1000)
    monkeypatch.setattr(content, "open", failing_open, raising=False)
    acks = [r.ack for pairs, payload in msgs for r in rx.handle(TOPIC, pairs, payload)]
    assert [a.status for a in acks] == [wire.RETRY]
    assert "collector storage error" in acks[0].reason
    assert rx.counters["rejected.storage_error"] == 1 and not rx.counters["rejected.bad_content"]
    assert not (tmp_path / "lake" / record(data).relpath).exists()
    monkeypatch.undo()
    acks = [r.ack for r in rx.handle(TOPIC, *msgs[-1])]  # the resend's manifest: lands
    assert [a.status for a in acks] == [wire.OK]
    assert (tmp_path / "lake" / record(data).relpath).read_bytes() == data


def test_a_manifest_for_an_already_landed_file_must_describe_it(tmp_path: Path) -> None:
    """The file landed but its manifest did not (a crash in between): a resend whose
    manifest says other rows is refused; the truthful one lands."""
    rx = receiver(tmp_path)
    data = parquet_bytes(2600)
    rec = record(data)
    for pairs, payload in messages(data, 1000):
        rx.handle(TOPIC, pairs, payload)
    (tmp_path / "lake" / rec.manifest_relpath).unlink()  # lost with a crash
    lying = manifest_of(rec, rows=rec.rows + 5)
    acks = [r.ack for pairs, payload in messages(data, 1000, manifest=lying, attempt="a2")
            for r in rx.handle(TOPIC, pairs, payload)]
    assert [a.status for a in acks] == [wire.REJECTED]
    assert "does not describe the landed file" in acks[0].reason
    assert not (tmp_path / "lake" / rec.manifest_relpath).exists()
    again = [r.ack for pairs, payload in messages(data, 1000, attempt="a3")
             for r in rx.handle(TOPIC, pairs, payload)]
    assert [(a.status, a.existed) for a in again] == [(wire.OK, True)]
    assert (tmp_path / "lake" / rec.manifest_relpath).exists()


def test_a_resent_part_of_a_landed_file_is_answered_ok_at_once(tmp_path: Path) -> None:
    """A gateway whose ack came too late resends the whole file: the collector answers
    its first chunk from the landed manifest and the landed bytes, staging nothing."""
    rx = receiver(tmp_path)
    data = parquet_bytes(2600)
    for pairs, payload in messages(data, 1000):
        rx.handle(TOPIC, pairs, payload)
    resend = messages(data, 1000, attempt="a2")
    for part in (resend[1], resend[-1]):  # a chunk, the manifest
        acks = [r.ack for r in rx.handle(TOPIC, *part)]
        assert [(a.status, a.existed, a.attempt) for a in acks] == [(wire.OK, True, "a2")]
    assert rx.counters["parts_of_landed_files"] == 2
    assert not list((tmp_path / "staging" / "files").iterdir())
    assert rx.counters["files_landed"] == 1 and not rx.counters["files_existing"]


def test_a_resent_chunk_that_differs_from_the_landed_bytes_takes_the_full_path(
        tmp_path: Path) -> None:
    """The landed manifest alone is not enough: a chunk whose bytes differ from the landed
    file's (the lake's copy was damaged, or the device sends other bytes under the same
    sha256) is staged, and the manifest then finds the conflict."""
    rx = receiver(tmp_path)
    data = parquet_bytes(2600)
    for pairs, payload in messages(data, 1000):
        rx.handle(TOPIC, pairs, payload)
    landed = tmp_path / "lake" / record(data).relpath
    landed.write_bytes(b"Z" * 1000 + data[1000:])  # same size, first chunk damaged
    acks = [r.ack for pairs, payload in messages(data, 1000, attempt="a2")
            for r in rx.handle(TOPIC, pairs, payload)]
    assert acks[0].status == wire.OK  # chunk 1 matches the landed bytes
    assert acks[-1].status == wire.REJECTED and "other bytes" in acks[-1].reason
    assert rx.counters["rejected.conflict"] == 1


@pytest.mark.parametrize("where", ["staging", "lake-manifest"])
def test_a_full_disk_at_the_collector_asks_for_a_resend_and_never_leaves_half_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """ENOSPC while staging a chunk, or after the file landed but before its manifest:
    the answer is "retry", the lake never holds a manifest without its whole file, and
    the resend (space freed) lands the file with its manifest."""
    import errno
    import os

    from edge_agent.lake import staging as staging_module

    def no_space(*_: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    rx = receiver(tmp_path)
    data = parquet_bytes(2600)
    rec = record(data)
    with monkeypatch.context() as patch:
        if where == "staging":
            patch.setattr(staging_module, "_pwrite", no_space)
        else:
            patch.setattr(Lake, "write_manifest", lambda self, h, payload: no_space())
        acks = [r.ack for pairs, payload in messages(data, 1000)
                for r in rx.handle(TOPIC, pairs, payload)]
    assert acks and {a.status for a in acks} == {wire.RETRY}
    assert "No space left" in acks[0].reason
    assert not (tmp_path / "lake" / rec.manifest_relpath).exists()
    assert rx.counters["rejected.storage_error"] >= 1
    again = [r.ack for pairs, payload in messages(data, 1000, attempt="a2")
             for r in rx.handle(TOPIC, pairs, payload)]
    assert again and {a.status for a in again} == {wire.OK}
    assert (tmp_path / "lake" / rec.relpath).read_bytes() == data
    assert (tmp_path / "lake" / rec.manifest_relpath).read_bytes() == manifest_of(rec)


def test_the_faster_property_lookups_answer_as_paho_does() -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge_agent.shippers import mqtt_conn, paho_speed

    paho_speed.speed_up_properties()
    paho_speed.speed_up_properties()  # idempotent: paho's own stay recorded once
    paho_ident, paho_name = paho_speed.PAHO_LOOKUPS
    props = Properties(PacketTypes.PUBLISH)
    for name, ident in props.names.items():
        for asked in (name.replace(" ", ""), name):
            assert props.getIdentFromName(asked) == paho_ident(props, asked)
        assert props.getNameFromIdent(ident) == paho_name(props, ident)
    assert props.getIdentFromName("NoSuchProperty") == paho_ident(props, "NoSuchProperty")
    assert props.getNameFromIdent(999) == paho_name(props, 999)
    # A round trip of a chunk's properties through paho's packing and unpacking.
    h = header_of(record(b"x" * 10), 4)
    pairs = wire.header_properties(h, wire.CHUNK, "0" * 64, 2)
    packed = mqtt_conn.publish_properties(pairs).pack()
    back = Properties(PacketTypes.PUBLISH)
    back.unpack(packed + b"payload bytes")
    assert back.UserProperty == pairs


def test_a_paho_whose_lookups_answer_differently_keeps_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The dicts replace paho's lookups only when they give paho's own answers: a paho
    release that changed its names keeps its (slower) methods."""
    from paho.mqtt.properties import Properties

    from edge_agent.shippers import paho_speed

    def odd_ident(self: Properties, compressed: str) -> int:
        return 7  # not what the names table says

    def own_name(self: Properties, ident: int) -> str | None:
        return None

    monkeypatch.delattr(Properties, "_edge_agent_lookups", raising=False)
    monkeypatch.setattr(Properties, "getIdentFromName", odd_ident)
    monkeypatch.setattr(Properties, "getNameFromIdent", own_name)
    paho_speed.speed_up_properties()
    assert Properties.getIdentFromName is odd_ident
    assert Properties.getNameFromIdent is own_name
    monkeypatch.delattr(Properties, "_edge_agent_lookups", raising=False)


class _Watched(bytes):
    """A packet buffer that records how many bytes each slice of it copies."""

    copied: list[int]

    def __getitem__(self, key: Any) -> Any:
        got = super().__getitem__(key)
        if isinstance(key, slice):
            self.copied.append(len(got))
        return got


def test_a_messages_properties_are_decoded_without_copying_its_payload() -> None:
    """paho decodes a PUBLISH's properties from a buffer that holds the payload behind
    them, and slices that buffer after every field it reads: a 120 KiB chunk with 11
    user properties was copied ~35 times per message. Handed only the properties' bytes
    (their length leads them), paho reads the same properties and the same length."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge_agent.shippers import mqtt_conn, paho_speed

    paho_speed.speed_up_properties()
    pairs = wire.header_properties(header_of(record(b"x" * 10), 4), wire.CHUNK, "0" * 64, 2)
    packed = mqtt_conn.publish_properties(pairs).pack()
    buffer = _Watched(packed + b"p" * 100_000)
    buffer.copied = []
    props = Properties(PacketTypes.PUBLISH)
    _, used = props.unpack(buffer)
    assert used == len(packed) and props.UserProperty == pairs
    assert sum(buffer.copied) <= len(packed) + 4  # the payload was never copied


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_TEXT, _TEXT), max_size=12), st.none() | _TEXT,
       st.none() | st.integers(0, 2**32 - 1), st.binary(max_size=300), st.integers(0, 3),
       st.none() | st.tuples(st.integers(0, 2**20), st.integers(1, 255)))
def test_faster_property_decoding_answers_as_paho_does(
        pairs: list[tuple[str, str]], content_type: str | None, expiry: int | None,
        payload: bytes, cut: int, damage: tuple[int, int] | None) -> None:
    """Any PUBLISH properties (NUL and U+FEFF included, which paho refuses), with any
    payload behind them, cut short or with a damaged byte: the same properties, length
    or error as paho's own decoding of the whole buffer."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge_agent.shippers import paho_speed

    paho_speed.speed_up_properties()
    (paho_unpack,) = paho_speed.PAHO_UNPACK
    props = Properties(PacketTypes.PUBLISH)
    if pairs:
        props.UserProperty = pairs
    if content_type is not None:
        props.ContentType = content_type
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    packed = bytearray(props.pack())
    if damage is not None:
        packed[damage[0] % len(packed)] ^= damage[1]
    buffer = bytes((packed + payload)[: len(packed) - cut] if cut else packed + payload)

    def decoded(unpack: Any) -> Any:
        out = Properties(PacketTypes.PUBLISH)
        try:
            _, used = unpack(out, buffer)
        except Exception as exc:
            return type(exc), str(exc)
        return used, vars(out)

    assert decoded(Properties.unpack) == decoded(paho_unpack)


def test_a_paho_whose_property_decoding_differs_keeps_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded only when a sample decodes the same both ways: a paho whose unpack reads
    past the properties' length keeps its own."""
    from paho.mqtt.properties import Properties

    from edge_agent.shippers import paho_speed

    def reads_on(self: Properties, buffer: bytes) -> tuple[Properties, int]:
        return self, len(buffer)  # not bounded by the properties' length

    monkeypatch.setattr(Properties, "unpack", reads_on)
    monkeypatch.delattr(Properties, "_edge_agent_lookups", raising=False)
    paho_speed.speed_up_properties()
    assert Properties.unpack is reads_on
    monkeypatch.delattr(Properties, "_edge_agent_lookups", raising=False)


def test_a_chunks_user_properties_are_decoded_without_pahos_per_string_code(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """paho reads each string with a Python loop over its characters and sets each
    property through a check that rebuilds its ~40 names: user properties only, as
    every chunk carries, are read in one pass (what they decode to is paho's own
    answer: the hypothesis test above)."""
    from paho.mqtt import properties as paho_properties
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge_agent.shippers import mqtt_conn, paho_speed

    paho_speed.speed_up_properties()
    calls: list[int] = []
    own = paho_properties.readUTF
    monkeypatch.setattr(paho_properties, "readUTF",
                        lambda buffer, maxlen: calls.append(1) or own(buffer, maxlen))
    pairs = wire.header_properties(header_of(record(b"x" * 10), 4), wire.CHUNK, "0" * 64, 2)
    props = Properties(PacketTypes.PUBLISH)
    props.unpack(mqtt_conn.publish_properties(pairs).pack() + b"payload")
    assert props.UserProperty == pairs and calls == []
