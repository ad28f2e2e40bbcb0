"""Faster paho-mqtt property handling, with paho's own answers.

paho's MQTT 5 property code is pure Python and was most of the collector's CPU per
chunk (11 user properties on every message). Each replacement here is installed
only when it answers as this paho's own code does on a sample (checked once per
process), so another paho release keeps its own; tests/mqtt/test_wire.py checks
them against paho's own on many inputs. Imported by mqtt_conn (paho is loaded by then).
"""

from __future__ import annotations

import re
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

PAHO_LOOKUPS: list[Any] = []  # paho's own two lookups, once replaced (for the tests)
PAHO_UNPACK: list[Any] = []  # paho's own Properties.unpack, once bounded (for the tests)
USER_PROPERTY = 38  # its identifier (MQTT 5, 2.2.2.2)
_PUBLISH = PacketTypes.PUBLISH
_PRIVATE = frozenset(("packetType", "types", "names", "properties"))  # paho's own attributes
_NOT_MQTT = re.compile("[\x00\ud800-\udfff\ufeff]")  # what paho's readUTF refuses


def speed_up_properties() -> None:
    """Install the faster lookups and the bounded decoding (below); idempotent."""
    if getattr(Properties, "_edge_agent_lookups", False):
        return
    _replace_lookups()
    _bound_unpack()
    Properties._edge_agent_lookups = True  # type: ignore[attr-defined]  # decided


def _replace_lookups() -> None:
    """paho looks a property's name up by scanning all of its ~40 names with
    ``str.replace`` for every property of every packet (``getIdentFromName``,
    ``getNameFromIdent``): with 11 user properties per chunk that was about a third
    of the collector's CPU per message. The same answers from two dicts built once
    (the names are the same for every instance: paho's ``Properties.__init__``)."""
    if getattr(Properties.getIdentFromName, "_edge_agent", False):
        return
    probe = _properties(PacketTypes.PUBLISH)
    names: dict[str, int] = probe.names
    ident_of: dict[str, int] = {}
    name_of: dict[int, str] = {}
    for name, ident in names.items():
        ident_of.setdefault(name.replace(" ", ""), ident)  # paho: the first match
        name_of[ident] = name  # paho: the last match
    if not _same_answers(probe, ident_of, name_of):
        return  # another paho whose lookups differ: its own, slower ones stay

    def ident_from_name(self: Properties, compressed: str) -> int:
        return ident_of.get(compressed, -1)

    def name_from_ident(self: Properties, ident: int) -> str | None:
        return name_of.get(ident)

    ident_from_name._edge_agent = True  # type: ignore[attr-defined]
    PAHO_LOOKUPS[:] = [Properties.getIdentFromName, Properties.getNameFromIdent]
    Properties.getIdentFromName = ident_from_name  # type: ignore[method-assign]
    Properties.getNameFromIdent = name_from_ident  # type: ignore[method-assign]


def _same_answers(probe: Properties, ident_of: dict[str, int], name_of: dict[int, str]) -> bool:
    """Whether the dicts answer as this paho's own lookups do, for every name and ident
    (checked once per process, before anything is replaced: a paho whose lookups
    changed keeps its own)."""
    own_ident: Any = probe.getIdentFromName
    own_name: Any = probe.getNameFromIdent
    try:
        return all(own_ident(c) == ident_of.get(c, -1) for c in ident_of) and all(
            own_name(i) == name_of.get(i) for i in name_of
        )
    except Exception:  # any surprise means: do not replace
        return False


def _bound_unpack() -> None:
    """paho decodes a PUBLISH's properties from a buffer holding everything behind them,
    the payload too, and slices that buffer after every field it reads (~35 copies of a
    120 KiB chunk per message); it reads each string with a Python loop over its
    characters and sets each property through a check that rebuilds its ~40 names.
    User properties only, as every message of the protocol carries, are read here in one
    pass; anything else goes to paho's own ``unpack``, handed only the properties' bytes
    (their length leads them). Either way: paho's own answer."""
    own: Any = Properties.unpack
    if getattr(own, "_edge_agent_bounded", False):
        return

    def unpack(self: Properties, buffer: bytes) -> Any:
        try:
            length, used = VariableByteIntegers.decode(buffer[:4])  # type: ignore[no-untyped-call]
        except Exception:  # no valid length (MQTT 5, 1.5.5: at most 4 bytes): paho's answer
            return own(self, buffer)
        end = used + length
        pairs = _user_properties(buffer, used, end) if self.packetType == _PUBLISH else None
        if pairs is None:
            try:
                return own(self, buffer[:end])
            except Exception:  # it would read past the properties' length (a malformed
                return own(self, buffer)  # packet): paho's own answer, exactly
        if vars(self).keys() - _PRIVATE:
            self.clear()  # type: ignore[no-untyped-call]
        if pairs:
            object.__setattr__(self, "UserProperty", pairs)
        return self, end

    if not _same_unpack(own, unpack):
        return  # another paho that decodes differently keeps its own
    unpack._edge_agent_bounded = True  # type: ignore[attr-defined]
    PAHO_UNPACK[:] = [own]
    Properties.unpack = unpack  # type: ignore[method-assign]


def _user_properties(buffer: bytes, pos: int, end: int) -> list[tuple[str, str]] | None:
    """The pairs when ``buffer[pos:end]`` holds user properties only, each well-formed
    as paho reads them; None for anything else (paho's own code decides then)."""
    if end > len(buffer):
        return None
    pairs = []
    while pos < end:
        if buffer[pos] != USER_PROPERTY:
            return None
        key = _string(buffer, pos + 1, end)
        value = _string(buffer, key[1], end) if key is not None else None
        if key is None or value is None:
            return None
        pairs.append((key[0], value[0]))
        pos = value[1]
    return pairs


def _string(buffer: bytes, pos: int, end: int) -> tuple[str, int] | None:
    """A UTF-8 string at ``pos`` (a 2-byte length, then the bytes) and where it ends."""
    start = pos + 2
    if start > end:
        return None
    stop = start + (buffer[pos] << 8 | buffer[pos + 1])
    if stop > end:
        return None
    try:
        text = str(buffer[start:stop], "utf-8")
    except UnicodeDecodeError:
        return None
    return None if _NOT_MQTT.search(text) else (text, stop)


def _same_unpack(own: Any, bounded: Any) -> bool:
    """Whether both decode sample chunk properties, a payload behind them, alike: user
    properties only, and with another property."""
    for extra in (None, "application/octet-stream"):
        sample = _properties(PacketTypes.PUBLISH)
        sample.UserProperty = [("edge-kind", "chunk"), ("edge-index", "7")]
        if extra is not None:
            sample.ContentType = extra
        buffer = sample.pack() + bytes(range(256))  # type: ignore[no-untyped-call]
        try:
            a, b = _properties(PacketTypes.PUBLISH), _properties(PacketTypes.PUBLISH)
            if own(a, buffer)[1] != bounded(b, buffer)[1] or vars(a) != vars(b):
                return False
        except Exception:  # any surprise means: do not replace
            return False
    return True


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves it untyped
