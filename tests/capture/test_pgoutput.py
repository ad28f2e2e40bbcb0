"""The pgoutput decoder: generated messages round-trip through an encoder written from
the PostgreSQL manual, damaged bytes are a ProtocolError (never another exception),
and the messages a real PostgreSQL slot produces decode into the changes made."""

from __future__ import annotations

import struct
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.capture import pgoutput as po
from tests.capture.test_pg_trigger import sql


def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def _row(row: po.Row) -> bytes:
    out = struct.pack("!h", len(row))
    for v in row:
        if v is None:
            out += b"n"
        elif v is po.UNCHANGED:
            out += b"u"
        else:
            assert isinstance(v, bytes)
            out += b"t" + struct.pack("!i", len(v)) + v
    return out


def encode(m: po.Decoded) -> bytes:  # noqa: PLR0911 - one branch per message type
    if isinstance(m, po.Begin):
        return b"B" + struct.pack("!QqI", m.final_lsn, m.commit_ts_us, m.xid)
    if isinstance(m, po.Commit):
        return b"C" + struct.pack("!BQQq", m.flags, m.commit_lsn, m.end_lsn, m.commit_ts_us)
    if isinstance(m, po.Origin):
        return b"O" + struct.pack("!Q", m.commit_lsn) + _s(m.name)
    if isinstance(m, po.Relation):
        cols = b"".join(struct.pack("!B", int(c.key)) + _s(c.name) +
                        struct.pack("!Ii", c.type_oid, c.typmod) for c in m.columns)
        return (b"R" + struct.pack("!I", m.oid) + _s(m.namespace) + _s(m.name) +
                m.replica_identity.encode() + struct.pack("!h", len(m.columns)) + cols)
    if isinstance(m, po.Type):
        return b"Y" + struct.pack("!I", m.oid) + _s(m.namespace) + _s(m.name)
    if isinstance(m, po.Insert):
        return b"I" + struct.pack("!I", m.relation) + b"N" + _row(m.new)
    if isinstance(m, po.Update):
        old = m.old_kind.encode() + _row(m.old) if m.old is not None else b""
        return b"U" + struct.pack("!I", m.relation) + old + b"N" + _row(m.new)
    if isinstance(m, po.Delete):
        return b"D" + struct.pack("!I", m.relation) + m.old_kind.encode() + _row(m.old)
    if isinstance(m, po.Truncate):
        return (b"T" + struct.pack("!IB", len(m.relations), m.options) +
                b"".join(struct.pack("!I", r) for r in m.relations))
    assert isinstance(m, po.Message)
    return (b"M" + struct.pack("!BQ", int(m.transactional), m.lsn) + _s(m.prefix) +
            struct.pack("!I", len(m.content)) + m.content)


u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
name = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
               max_size=20)
value = st.one_of(st.none(), st.just(po.UNCHANGED), st.binary(max_size=40))
rows = st.lists(value, max_size=8).map(tuple)
messages = st.one_of(
    st.builds(po.Begin, u64, i64, u32),
    st.builds(po.Commit, st.integers(0, 255), u64, u64, i64),
    st.builds(po.Origin, u64, name),
    st.builds(po.Relation, u32, name, name, st.sampled_from("dnfi"), st.lists(
        st.builds(po.RelationColumn, st.booleans(), name, u32,
                  st.integers(-(2**31), 2**31 - 1)), max_size=6).map(tuple)),
    st.builds(po.Type, u32, name, name),
    st.builds(po.Insert, u32, rows),
    st.one_of(st.builds(po.Update, u32, st.just(""), st.none(), rows),
              st.builds(po.Update, u32, st.sampled_from("KO"), rows, rows)),
    st.builds(po.Delete, u32, st.sampled_from("KO"), rows),
    st.builds(po.Truncate, st.integers(0, 3), st.lists(u32, max_size=5).map(tuple)),
    st.builds(po.Message, st.booleans(), name, u64, st.binary(max_size=50)),
)


@given(messages)
def test_every_message_round_trips(message: po.Decoded) -> None:
    assert po.decode(encode(message)) == message


@given(messages, st.data())
def test_a_cut_or_padded_message_is_a_protocol_error(message: po.Decoded,
                                                     data: st.DataObject) -> None:
    raw = encode(message)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(po.ProtocolError):
        po.decode(raw[:cut])
    with pytest.raises(po.ProtocolError):
        po.decode(raw + b"\0")


KINDS = {"B": po.Begin, "C": po.Commit, "O": po.Origin, "R": po.Relation, "Y": po.Type,
         "I": po.Insert, "U": po.Update, "D": po.Delete, "T": po.Truncate, "M": po.Message}


@given(st.binary(max_size=64))
def test_any_bytes_decode_as_their_type_or_are_a_protocol_error(raw: bytes) -> None:
    try:
        decoded = po.decode(raw)
    except po.ProtocolError as exc:
        assert "pgoutput" in str(exc)  # names what it was reading
        return
    assert isinstance(decoded, KINDS[raw[:1].decode("latin-1")])


def test_what_a_real_slot_sends_decodes_into_the_changes_made(pg_db: str) -> None:
    sql(pg_db, "CREATE TABLE items (id int PRIMARY KEY, note text)",
        "ALTER TABLE items REPLICA IDENTITY FULL",
        "CREATE PUBLICATION p FOR TABLE items",
        "SELECT pg_create_logical_replication_slot('s', 'pgoutput')")
    try:
        with psycopg.connect(pg_db) as con:
            con.execute("INSERT INTO items VALUES (1, 'a'), (2, NULL)")
            con.execute("UPDATE items SET note = 'b' WHERE id = 1")
            con.execute("DELETE FROM items WHERE id = 2")
            con.execute("SELECT pg_logical_emit_message(true, 'edge', 'beat')")
        sql(pg_db, "TRUNCATE items")
        with psycopg.connect(pg_db, autocommit=True) as con:
            rows = con.execute(
                "SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_binary_changes("
                "'s', NULL, NULL, 'proto_version', '1', 'publication_names', 'p',"
                " 'messages', 'true')").fetchall()
        decoded: list[Any] = [po.decode(bytes(r[2])) for r in rows]
    finally:
        sql(pg_db, "SELECT pg_drop_replication_slot('s')")
    kinds = [type(m).__name__ for m in decoded]
    assert kinds == ["Begin", "Relation", "Insert", "Insert", "Update", "Delete", "Message",
                     "Commit", "Begin", "Relation", "Truncate", "Commit"]
    rel = decoded[1]
    assert (rel.namespace, rel.name, rel.replica_identity) == ("public", "items", "f")
    assert [c.name for c in rel.columns] == ["id", "note"]
    assert decoded[2].new == (b"1", b"a") and decoded[3].new == (b"2", None)
    assert (decoded[4].old_kind, decoded[4].old, decoded[4].new) == ("O", (b"1", b"a"),
                                                                      (b"1", b"b"))
    assert decoded[5].old == (b"2", None)
    assert (decoded[6].prefix, decoded[6].content) == ("edge", b"beat")
    assert decoded[10].relations == (rel.oid,)
    commit = decoded[7]
    assert commit.commit_lsn < commit.end_lsn and po.lsn_text(commit.end_lsn) == rows[7][0]
    assert decoded[0].xid == int(rows[0][1])
