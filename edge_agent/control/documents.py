"""Signed documents on the control topics: what they hold and how one is checked.

On the wire a message is a JSON object ``{"document": TEXT, "signature": B64,
"key": KEY_ID}``; the signature covers the exact UTF-8 bytes of TEXT, itself
a JSON object (docs/protocol.md):

- a desired config: ``{"type": "config", "target": {"device": D} | {"group": G},
  "version": N, "config": TOML, "sha256": HEX, "issued_ms": MS}``;
- a command: ``{"type": "command", "target": {"device": D}, "request_id": ID,
  "command": NAME, "args": {...}, "issued_ms": MS, "expires_ms": MS}``.

Every check raises ``Rejected`` with a reason an operator can act on; nothing
here touches the agent's state.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from edge_agent.control.signing import SignatureError, Signer, Verifier
from edge_agent.errors import EdgeAgentError

COMMANDS = ("flush", "snapshot", "replay", "status", "restart-capture", "trust-keys")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Rejected(EdgeAgentError):
    """A control message refused, with why."""


@dataclass(frozen=True)
class DesiredConfig:
    target: dict[str, str]
    version: int
    config: str
    sha256: str
    issued_ms: int
    key_id: str

    @property
    def scope(self) -> str:
        return "device" if "device" in self.target else "group"


@dataclass(frozen=True)
class Command:
    target: dict[str, str]
    request_id: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    issued_ms: int = 0
    expires_ms: int = 0
    key_id: str = ""


def seal(document: dict[str, Any], signer: Signer) -> bytes:
    """The wire form of ``document`` signed with ``signer`` (the operator's side)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    wire = {"document": text, "signature": signer.sign(text.encode()), "key": signer.key_id}
    return json.dumps(wire).encode()


def config_document(
    config_text: str, target: dict[str, str], version: int, now_ms: int
) -> dict[str, Any]:
    return {
        "type": "config",
        "target": target,
        "version": version,
        "config": config_text,
        "sha256": hashlib.sha256(config_text.encode()).hexdigest(),
        "issued_ms": now_ms,
    }


def open_message(payload: bytes, verifier: Verifier, max_bytes: int) -> tuple[dict[str, Any], str]:
    """The verified document and the key id that signed it."""
    if len(payload) > max_bytes:
        raise Rejected(
            f"message of {len(payload)} bytes is above control.max_message_bytes ({max_bytes})"
        )
    try:
        wire = json.loads(payload)
        text, signature, kid = wire["document"], wire["signature"], wire["key"]
        if not all(isinstance(v, str) for v in (text, signature, kid)):
            raise TypeError("document, signature and key must be strings")
    except (ValueError, KeyError, TypeError) as exc:
        raise Rejected(f"malformed message ({exc}): expected document, signature and key") from exc
    try:
        verifier.verify(text.encode(), signature, kid)
    except SignatureError as exc:
        raise Rejected(str(exc)) from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise Rejected(f"signed document is not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise Rejected("signed document is not a JSON object")
    return document, kid


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Rejected(f"{key} {value!r}: expected a non-negative integer")
    return value


def _target(doc: dict[str, Any]) -> dict[str, str]:
    target = doc.get("target")
    if (
        not isinstance(target, dict)
        or len(target) != 1
        or not set(target) <= {"device", "group"}
        or not all(isinstance(v, str) and v for v in target.values())
    ):
        raise Rejected(f"target {target!r}: expected {{'device': D}} or {{'group': G}}")
    return {str(k): str(v) for k, v in target.items()}


def desired_config(doc: dict[str, Any], kid: str) -> DesiredConfig:
    if doc.get("type") != "config":
        raise Rejected(f"type {doc.get('type')!r} on a config topic: expected 'config'")
    text = doc.get("config")
    if not isinstance(text, str):
        raise Rejected("config: expected the TOML text as a string")
    digest = hashlib.sha256(text.encode()).hexdigest()
    if doc.get("sha256") != digest:
        raise Rejected(f"sha256 {doc.get('sha256')!r} does not match the config ({digest})")
    version = _int(doc, "version")
    if version < 1:
        raise Rejected("version 0: versions start at 1")
    return DesiredConfig(_target(doc), version, text, digest, _int(doc, "issued_ms"), kid)


def command(doc: dict[str, Any], kid: str) -> Command:
    if doc.get("type") != "command":
        raise Rejected(f"type {doc.get('type')!r} on the cmd topic: expected 'command'")
    target = _target(doc)
    if "device" not in target:
        raise Rejected("a command names one device, not a group")
    request_id = doc.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise Rejected(f"request_id {request_id!r}: 1-64 characters from A-Z a-z 0-9 . _ : -")
    name = doc.get("command")
    if name not in COMMANDS:
        raise Rejected(f"command {name!r}: use one of {', '.join(COMMANDS)}")
    args = doc.get("args", {})
    if not isinstance(args, dict):
        raise Rejected("args: expected a JSON object")
    return Command(
        target, request_id, str(name), args, _int(doc, "issued_ms"), _int(doc, "expires_ms"), kid
    )


def for_me(target: dict[str, str], device: str, group: str) -> None:
    if target.get("device", device) != device:
        raise Rejected(f"document for device {target['device']!r}, this is {device!r}")
    if "group" in target and target["group"] != group:
        raise Rejected(
            f"document for group {target['group']!r}, this device follows "
            f"{group or 'no group'!r} (control.group)"
        )
