"""A decoder for PostgreSQL's ``pgoutput`` logical replication messages (protocol 1).

Log-based capture (issue 10) reads a logical replication slot through the SQL
function ``pg_logical_slot_peek_binary_changes(slot, NULL, n, 'proto_version',
'1', 'publication_names', 'p')``: psycopg 3 has no replication-protocol API, and
the text functions refuse pgoutput. Each returned row carries one message in
the format the PostgreSQL manual documents under "Logical Replication Message
Formats"; this module turns such bytes into typed records, and nothing else
(no I/O, no state), so it is property-tested on its own.

Column values stay as PostgreSQL sends them: ``None`` (null), ``UNCHANGED`` (a
TOASTed value the update did not touch: pgoutput does not send it), or the
value's text form as bytes, for the type's own input function to read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class ProtocolError(ValueError):
    """Bytes that are not a pgoutput message of protocol 1."""


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()
Value = bytes | None | _Unchanged
Row = tuple[Value, ...]


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_ts_us: int  # microseconds since 2000-01-01 UTC (PostgreSQL's epoch)
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts_us: int


@dataclass(frozen=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True)
class RelationColumn:
    key: bool  # part of the replica identity
    name: str
    type_oid: int
    typmod: int


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str  # "" means pg_catalog
    name: str
    replica_identity: str  # d default, n nothing, f full, i index
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True)
class Type:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
class Insert:
    relation: int
    new: Row


@dataclass(frozen=True)
class Update:
    relation: int
    old_kind: str  # "" none sent, "K" the old key, "O" the whole old row (REPLICA IDENTITY FULL)
    old: Row | None
    new: Row


@dataclass(frozen=True)
class Delete:
    relation: int
    old_kind: str  # "K" or "O"
    old: Row


@dataclass(frozen=True)
class Truncate:
    options: int  # 1 CASCADE, 2 RESTART IDENTITY
    relations: tuple[int, ...]


@dataclass(frozen=True)
class Message:
    transactional: bool
    prefix: str
    lsn: int
    content: bytes


Decoded = Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate | Message
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ProtocolError(
                f"pgoutput message {self.data[:1]!r} ends at byte {len(self.data)}, "
                f"{n} more byte(s) expected at {self.at}"
            )
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def unpack(self, fmt: str) -> int:
        value: int = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def byte(self) -> str:
        return self.take(1).decode("latin-1")

    def string(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise ProtocolError(f"pgoutput string at byte {self.at} has no terminating NUL")
        text = self.data[self.at : end]
        self.at = end + 1
        return text.decode("utf-8", errors="surrogateescape")

    def row(self) -> Row:
        values: list[Value] = []
        for _ in range(self.unpack("!h")):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind in ("t", "b"):
                values.append(self.take(self.unpack("!i")))
            else:
                raise ProtocolError(f"pgoutput column kind {kind!r} at byte {self.at - 1}")
        return tuple(values)

    def done(self, decoded: Decoded) -> Decoded:
        if self.at != len(self.data):
            raise ProtocolError(
                f"pgoutput {type(decoded).__name__} message has {len(self.data) - self.at} "
                "byte(s) left over"
            )
        return decoded


def decode(data: bytes) -> Decoded:
    """One pgoutput message (protocol 1) as a typed record; ProtocolError otherwise."""
    if not data:
        raise ProtocolError("empty pgoutput message")
    r = _Reader(bytes(data))
    kind = r.byte()
    parse = _PARSERS.get(kind)
    if parse is None:
        raise ProtocolError(f"unknown pgoutput message type {kind!r} (protocol 1)")
    return r.done(parse(r))


def _begin(r: _Reader) -> Decoded:
    return Begin(r.unpack("!Q"), r.unpack("!q"), r.unpack("!I"))


def _commit(r: _Reader) -> Decoded:
    return Commit(r.unpack("!B"), r.unpack("!Q"), r.unpack("!Q"), r.unpack("!q"))


def _origin(r: _Reader) -> Decoded:
    return Origin(r.unpack("!Q"), r.string())


def _relation(r: _Reader) -> Decoded:
    oid, namespace, name = r.unpack("!I"), r.string(), r.string()
    identity = r.byte()
    columns = tuple(
        RelationColumn(bool(r.unpack("!B") & 1), r.string(), r.unpack("!I"), r.unpack("!i"))
        for _ in range(r.unpack("!h"))
    )
    return Relation(oid, namespace, name, identity, columns)


def _type(r: _Reader) -> Decoded:
    return Type(r.unpack("!I"), r.string(), r.string())


def _insert(r: _Reader) -> Decoded:
    oid = r.unpack("!I")
    if r.byte() != "N":
        raise ProtocolError("pgoutput Insert without its new tuple ('N')")
    return Insert(oid, r.row())


def _update(r: _Reader) -> Decoded:
    oid = r.unpack("!I")
    kind = r.byte()
    old: Row | None = None
    old_kind = ""
    if kind in ("K", "O"):
        old_kind, old = kind, r.row()
        kind = r.byte()
    if kind != "N":
        raise ProtocolError(f"pgoutput Update: expected the new tuple ('N'), got {kind!r}")
    return Update(oid, old_kind, old, r.row())


def _delete(r: _Reader) -> Decoded:
    oid = r.unpack("!I")
    kind = r.byte()
    if kind not in ("K", "O"):
        raise ProtocolError(f"pgoutput Delete: expected 'K' or 'O', got {kind!r}")
    return Delete(oid, kind, r.row())


def _truncate(r: _Reader) -> Decoded:
    count = r.unpack("!I")
    options = r.unpack("!B")
    return Truncate(options, tuple(r.unpack("!I") for _ in range(count)))


def _message(r: _Reader) -> Decoded:
    flags, lsn = r.unpack("!B"), r.unpack("!Q")
    prefix = r.string()
    return Message(bool(flags & 1), prefix, lsn, r.take(r.unpack("!I")))


_PARSERS = {
    "B": _begin,
    "C": _commit,
    "O": _origin,
    "R": _relation,
    "Y": _type,
    "I": _insert,
    "U": _update,
    "D": _delete,
    "T": _truncate,
    "M": _message,
}


def unix_ms(commit_ts_us: int) -> int:
    """A pgoutput timestamp (microseconds since 2000-01-01) as Unix milliseconds."""
    return (commit_ts_us + PG_EPOCH_US) // 1000


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it (``16/B374D848``)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
