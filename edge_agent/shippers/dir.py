"""The ``dir`` sink: a local or mounted lake directory (the embedded default)."""

from __future__ import annotations

import errno
from pathlib import Path

from edge_agent.errors import CorruptFileError, TerminalError, TransientError
from edge_agent.fsutil import ChecksumMismatch, copy_atomic, sha256_file
from edge_agent.shippers.base import Receipt
from edge_agent.spool.state import FileRecord

_TERMINAL = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}


class DirShipper:
    name = "dir"

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, local: Path, manifest: Path, rec: FileRecord) -> Receipt:
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

    def _map(self, exc: OSError) -> Exception:
        where = f"lake directory {str(self.root)!r}"
        if exc.errno in _TERMINAL:
            return TerminalError(
                f"{where}: {exc.strerror} ({exc.filename}): check sink.path and its permissions"
            )
        return TransientError(f"{where}: {exc.strerror or exc}; will retry")

    def close(self) -> None:
        pass
