"""Ed25519 keys and signatures for remote configuration and commands.

A public key is written ``ed25519:BASE64`` (the 32 raw bytes), its *key id* is
the first 16 hex digits of the key's sha256. A signature covers the exact
bytes of a document (docs/protocol.md). ``cryptography`` is imported only
here, and only when [control] is configured or an operator command runs.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from edge_agent.config_control import KEY_PREFIX, public_key
from edge_agent.errors import EdgeAgentError


class SignatureError(EdgeAgentError):
    """A signature that does not verify, or a key this device does not trust."""


def key_id(public: str) -> str:
    raw = base64.b64decode(public_key(public)[len(KEY_PREFIX) :])
    return hashlib.sha256(raw).hexdigest()[:16]


def generate(out: Path) -> str:
    """Write a new private key (PEM, PKCS#8, mode 0600) to ``out``; return its public key
    line. Refuses to overwrite a file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if out.exists():
        raise EdgeAgentError(f"{out}: exists; a key is never overwritten: choose another --out")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    except OSError as exc:
        raise EdgeAgentError(f"{out}: cannot create it ({exc})") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return public_of(private)


def public_of(private: object) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not isinstance(private, Ed25519PrivateKey):
        raise EdgeAgentError("not an Ed25519 private key")
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return KEY_PREFIX + base64.b64encode(raw).decode()


class Signer:
    """An operator's private key (from `edge-agent keys generate`)."""

    def __init__(self, path: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise EdgeAgentError(
                f"--key {str(path)!r}: cannot load it ({exc}): give the PEM file written by "
                "`edge-agent keys generate`"
            ) from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise EdgeAgentError(f"--key {str(path)!r}: not an Ed25519 key")
        self._private = private
        self.public = public_of(private)
        self.key_id = key_id(self.public)

    def sign(self, document: bytes) -> str:
        return base64.b64encode(self._private.sign(document)).decode()


class Verifier:
    """The keys a device trusts, by key id."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = {key_id(k): k for k in keys}

    def verify(self, document: bytes, signature: str, kid: str) -> str:
        """Returns the key id that signed ``document``; SignatureError otherwise."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        public = self.keys.get(kid)
        if public is None:
            raise SignatureError(f"unknown key {kid!r}: not in control.trusted_keys")
        try:
            raw_sig = base64.b64decode(signature, validate=True)
            raw_key = base64.b64decode(public[len(KEY_PREFIX) :])
            Ed25519PublicKey.from_public_bytes(raw_key).verify(raw_sig, document)
        except (InvalidSignature, ValueError) as exc:
            raise SignatureError(f"bad signature for key {kid!r}") from exc
        return kid
