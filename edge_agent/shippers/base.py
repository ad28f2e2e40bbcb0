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

Several files at once (:func:`ship_all`): a sink whose round trip is long (``mqtt``:
the collector's ack) also implements :class:`Pipelined` and keeps several files in
flight; every other sink is driven one ``put`` after the other. Either way each
outcome is paired with its own file, outcomes come in the order of the files, and
the first transient or terminal error ends the run (the files after it, in flight or
not, count as not shipped). A file is shipped only by its own successful outcome, so
an ack that arrives out of order never settles another file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from edge_agent.errors import CorruptFileError, EdgeAgentError, TerminalError, TransientError
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


@dataclass(frozen=True)
class Outgoing:
    """One sealed file to ship: its spooled bytes, its manifest, its ledger record."""

    local: Path
    manifest: Path
    rec: FileRecord


Outcome = Receipt | EdgeAgentError


@runtime_checkable
class Pipelined(Protocol):
    def put_many(self, files: Iterable[Outgoing]) -> Iterator[tuple[Outgoing, Outcome]]:
        """Ship the files with several in flight; yields each file with its outcome in
        order (see the module docstring). ``files`` is read lazily, only as the window
        has room, so the caller decides when to stop starting new ones."""
        ...


def ship_all(shipper: Shipper, files: Iterable[Outgoing]) -> Iterator[tuple[Outgoing, Outcome]]:
    if isinstance(shipper, Pipelined):
        return shipper.put_many(files)
    return put_each(shipper, files)


def put_each(shipper: Shipper, files: Iterable[Outgoing]) -> Iterator[tuple[Outgoing, Outcome]]:
    """One ``put`` after the other; a corrupt file does not stop the others."""
    for item in files:
        try:
            receipt = shipper.put(item.local, item.manifest, item.rec)
        except CorruptFileError as exc:
            yield item, exc
            continue
        except (TransientError, TerminalError) as exc:
            yield item, exc
            return
        yield item, receipt
