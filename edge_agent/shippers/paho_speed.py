"""Faster paho-mqtt property handling, with paho's own answers.

paho's MQTT 5 property code is pure Python and was most of the collector's CPU per
chunk (11 user properties on every message). Each replacement here is installed
only when it answers as this paho's own code does on a sample (checked once per
process), so another paho release keeps its own; tests/mqtt/test_wire.py checks
them against paho's own on many inputs. Imported by mqtt_conn (paho is loaded by then).
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

PAHO_LOOKUPS: list[Any] = []  # paho's own two lookups, once replaced (for the tests)
PAHO_UNPACK: list[Any] = []  # paho's own Properties.unpack, once bounded (for the tests)


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
    the payload too, and slices that buffer after every field it reads: ~35 copies of
    a 120 KiB chunk per message, about 40 % of decoding it. paho's own ``unpack``,
    handed only the properties' bytes (their length leads them), reads the same."""
    own: Any = Properties.unpack
    if getattr(own, "_edge_agent_bounded", False):
        return

    def unpack(self: Properties, buffer: bytes) -> Any:
        try:
            length, used = VariableByteIntegers.decode(buffer[:4])  # type: ignore[no-untyped-call]
        except IndexError:  # no valid length (MQTT 5 1.5.5: at most 4 bytes): paho's way
            return own(self, buffer)
        return own(self, buffer[: used + length])

    if not _same_unpack(own, unpack):
        return  # another paho that reads past the properties' length keeps its own
    unpack._edge_agent_bounded = True  # type: ignore[attr-defined]
    PAHO_UNPACK[:] = [own]
    Properties.unpack = unpack  # type: ignore[method-assign]


def _same_unpack(own: Any, bounded: Any) -> bool:
    """Whether both decode a sample chunk's properties, a payload behind them, alike."""
    sample = _properties(PacketTypes.PUBLISH)
    sample.UserProperty = [("edge-kind", "chunk"), ("edge-index", "7")]
    sample.ContentType = "application/octet-stream"
    buffer = sample.pack() + bytes(range(256))  # type: ignore[no-untyped-call]
    try:
        a, b = _properties(PacketTypes.PUBLISH), _properties(PacketTypes.PUBLISH)
        return bool(own(a, buffer)[1] == bounded(b, buffer)[1] and vars(a) == vars(b))
    except Exception:  # any surprise means: do not replace
        return False


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves it untyped
