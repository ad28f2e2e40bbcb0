"""The shipping boundary: one narrow interface, one contract test suite per sink.

Contract of :meth:`Shipper.put` (tests/shippers/test_contract.py):
- Idempotent: putting the same file again leaves the same object (same bytes)
  at the same place, and succeeds.
- Atomic: a reader of the sink sees the whole file or nothing, never a part.
- Verified: it returns only after the sink holds bytes whose size and sha256
  equal the record's; the caller deletes the local copy only then.
- Other bytes already at the place: a sink the device writes itself (``dir``,
  ``s3``) replaces them with the verified file (a repair); the lake-side collector
  (``mqtt``) refuses, with a ``TerminalError`` naming the conflict, because a landed
  file is immutable there and other bytes under its id are a bug or an attack.
- Errors: ``CorruptFileError`` when the local file does not match its record
  (the caller quarantines it), ``TransientError`` for anything worth retrying,
  ``TerminalError`` for configuration problems (retried with backoff too, and
  reported, since an operator can fix them without restarting the agent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge_agent.spool.state import FileRecord


@dataclass(frozen=True)
class Receipt:
    location: str
    bytes: int
    already_there: bool = False


class Shipper(Protocol):
    name: str

    def put(self, local: Path, manifest: Path, rec: FileRecord) -> Receipt:
        """Deliver one sealed file and its manifest; see the module contract."""
        ...

    def probe(self, device: str) -> None:
        """Reach the sink without writing a file (remote config's health check); raises
        the same errors as ``put``."""
        ...

    def close(self) -> None: ...
