"""Writing a staged file into the lake: the same layout and the same atomic,
idempotent rules as the ``dir`` sink (shippers/dir.py).

``<lake>/<relpath>`` is written tmp -> fsync -> rename -> fsync(dir) from the
staged chunks, streamed (one chunk in memory at a time) and verified against
the header's size and sha256 before it becomes visible; the manifest goes
beside it last, so its presence means the file beside it is whole. (The receiver
checks the staged file's Parquet footer against its manifest before it is
assembled: lake/content.py.) What has
landed is never replaced: the same bytes again are an idempotent success, other
bytes (or another manifest) for the same file are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from edge_agent.bronze.layout import manifest_relpath_of
from edge_agent.fsutil import TMP_SUFFIX, ensure_dir, publish, sha256_file, write_atomic
from edge_agent.shippers.mqtt_wire import FileHeader


class AssemblyMismatch(Exception):
    """The staged chunks do not add up to the header's size and sha256."""


class Lake:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, h: FileHeader) -> Path:
        return self.root / h.relpath

    def manifest_path(self, h: FileHeader) -> Path:
        return self.root / manifest_relpath_of(h.relpath)

    def conflict(self, h: FileHeader, manifest: bytes) -> str | None:
        """Why landing would change what the lake already holds for this file (a landed
        file and its manifest are immutable), or None."""
        try:
            size, sha = sha256_file(self.path(h))
        except FileNotFoundError:
            return None
        if (size, sha) != (h.size, h.sha256):
            return (
                f"file {h.file_id} already landed with other bytes ({size} bytes sha256 "
                f"{sha}, this one {h.size} bytes sha256 {h.sha256})"
            )
        with contextlib.suppress(FileNotFoundError):
            if self.manifest_path(h).read_bytes() != manifest:
                return f"file {h.file_id} already landed with another manifest"
        return None

    def assemble(self, h: FileHeader, chunks: list[Path]) -> None:
        """Concatenate the chunks into the file's place, atomically and verified."""
        dest = self.path(h)
        ensure_dir(dest.parent)
        # One name per file: a crashed earlier try is overwritten, not left behind.
        tmp = dest.with_name(f".{dest.name}.{h.staging_key[:12]}{TMP_SUFFIX}")
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    data = chunk.read_bytes()
                    digest.update(data)
                    out.write(data)
                    size += len(data)
            wrong = mismatch(h, size, digest.hexdigest())
            if wrong is not None:
                raise AssemblyMismatch(wrong)
            publish(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def write_manifest(self, h: FileHeader, data: bytes) -> None:
        path = self.manifest_path(h)
        with contextlib.suppress(FileNotFoundError):
            if path.read_bytes() == data:
                return
        write_atomic(path, data)


def staged_mismatch(h: FileHeader, chunks: list[Path]) -> str | None:
    """Why the staged chunks do not add up to the header's size and sha256, or None
    (streamed, one chunk in memory at a time)."""
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        data = chunk.read_bytes()
        digest.update(data)
        size += len(data)
    return mismatch(h, size, digest.hexdigest())


def mismatch(h: FileHeader, size: int, sha256: str) -> str | None:
    if (size, sha256) == (h.size, h.sha256):
        return None
    return (
        f"assembled {size} bytes sha256 {sha256}, the header says {h.size} bytes sha256 {h.sha256}"
    )
