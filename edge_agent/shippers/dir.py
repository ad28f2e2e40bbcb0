"""The ``dir`` sink: a local or mounted lake directory (the embedded default).

The lake root must exist: the sink never creates it unless ``sink.create`` is
true, and then only the first time. A marker file (``.edge-agent-lake``) is
written into the root on first use; a root that vanishes, loses its marker or
moves to another filesystem while the agent runs (a removed directory, an
unmounted disk) is an error, and the files stay in the spool, instead of a new
lake silently growing on the wrong disk.
"""

from __future__ import annotations

import errno
from pathlib import Path

from edge_agent.errors import CorruptFileError, TerminalError, TransientError
from edge_agent.fsutil import ChecksumMismatch, copy_atomic, sha256_file, unwritable, write_atomic
from edge_agent.shippers.base import Receipt
from edge_agent.spool.state import FileRecord

_TERMINAL = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}


MARKER = ".edge-agent-lake"


class DirShipper:
    name = "dir"

    def __init__(self, root: Path, create: bool = False) -> None:
        self.root = root
        self.create = create
        self._device: int | None = None  # st_dev of the root once seen with its marker

    def put(self, local: Path, manifest: Path, rec: FileRecord) -> Receipt:
        try:
            self._check_root()
        except OSError as exc:
            raise self._map(exc) from exc
        dest = self.root / rec.relpath
        expect = (rec.bytes, rec.sha256)
        try:
            already = dest.exists() and sha256_file(dest) == expect
            if not already:
                copy_atomic(local, dest, expect)
            # The manifest goes last: its presence means the file beside it is whole.
            copy_atomic(manifest, self.root / rec.manifest_relpath)
        except ChecksumMismatch as exc:
            raise CorruptFileError(f"spooled file {rec.id} is corrupt: {exc}") from exc
        except FileNotFoundError as exc:
            if exc.filename in (str(local), str(manifest)):
                raise CorruptFileError(f"spooled file {rec.id} is missing: {exc}") from exc
            raise self._map(exc) from exc
        except OSError as exc:
            raise self._map(exc) from exc
        return Receipt(str(dest), rec.bytes, already)

    def probe(self, device: str) -> None:
        self._check_root()
        why = unwritable(self.root)
        if why is not None:
            raise TransientError(f"lake directory {str(self.root)!r}: {why}")

    def _check_root(self) -> None:
        where = f"lake directory {str(self.root)!r}"
        if not self.root.is_dir():
            if not self.create or self._device is not None:
                raise TransientError(
                    f"{where} does not exist (removed, or its filesystem is not mounted): "
                    "create or mount it (or set sink.create = true for a new lake); the "
                    "files stay in the spool and ship once it is there"
                )
            self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / MARKER
        device = self.root.stat().st_dev
        if self._device is None:
            if not marker.exists():
                write_atomic(marker, b"edge-agent lake root\n")
            self._device = device
            return
        if device != self._device or not marker.exists():
            raise TransientError(
                f"{where} is no longer the lake it was ({MARKER} is gone or it is on "
                "another filesystem: was it unmounted or removed?): mount it again; the "
                "files stay in the spool"
            )

    def _map(self, exc: OSError) -> Exception:
        where = f"lake directory {str(self.root)!r}"
        if exc.errno in _TERMINAL:
            return TerminalError(
                f"{where}: {exc.strerror} ({exc.filename}): check sink.path and its permissions"
            )
        return TransientError(f"{where}: {exc.strerror or exc}; will retry")

    def close(self) -> None:
        pass
