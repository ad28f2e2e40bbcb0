"""Writing a staged file into the lake: the same layout and the same atomic,
idempotent rules as the ``dir`` sink (shippers/dir.py).

The staged file (assembled in place as its chunks arrived: lake/staging.py) is
verified against the header's size and sha256, fsynced, and renamed to
``<lake>/<relpath>`` (then the directory is fsynced); when staging and lake are on
different file systems it is copied instead, tmp -> fsync -> rename -> fsync(dir),
verified on the way. Either way nothing is visible in the lake before it is whole
and durable. The manifest goes beside it last, so its presence means the file
beside it is whole. (The receiver checks the staged file's Parquet footer against
its manifest before it lands: lake/content.py.) What has landed is never
replaced: the same bytes again are an idempotent success, other bytes (or another
manifest) for the same file are refused.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
from pathlib import Path

from edge_agent.bronze.layout import manifest_relpath_of
from edge_agent.fsutil import TMP_SUFFIX, publish, sha256_file, write_atomic
from edge_agent.shippers.mqtt_wire import FileHeader

MANIFESTS_KEPT = 1024  # files whose manifest path is kept built


class AssemblyMismatch(Exception):
    """The staged chunks do not add up to the header's size and sha256."""


class Lake:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._manifests: dict[str, Path] = {}

    def path(self, h: FileHeader) -> Path:
        return self.root / h.relpath

    def manifest_path(self, h: FileHeader) -> Path:
        """Built once per file (it is looked up for every chunk): see staging._Paths."""
        path = self._manifests.get(h.relpath)
        if path is None:
            if len(self._manifests) >= MANIFESTS_KEPT:
                self._manifests.clear()
            path = self._manifests[h.relpath] = self.root / manifest_relpath_of(h.relpath)
        return path

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

    def holds(self, h: FileHeader, offset: int, data: bytes) -> bool:
        """The landed file has exactly ``data`` at ``offset`` (FileNotFoundError when
        nothing landed)."""
        with open(self.path(h), "rb") as f:
            f.seek(offset)
            return f.read(len(data)) == data

    def assemble(self, h: FileHeader, staged: Path) -> None:
        """Move the staged file into its place, verified, atomically and durably."""
        wrong = staged_mismatch(h, staged)
        if wrong is not None:
            raise AssemblyMismatch(wrong)
        dest = self.path(h)
        try:
            publish(staged, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._copy(h, staged, dest)  # staging on another file system

    def _copy(self, h: FileHeader, staged: Path, dest: Path) -> None:
        # One name per file: a crashed earlier try is overwritten, not left behind.
        tmp = dest.with_name(f".{dest.name}.{h.staging_key[:12]}{TMP_SUFFIX}")
        try:
            size, sha = _copy_hashing(staged, tmp)
            wrong = mismatch(h, size, sha)
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


def staged_mismatch(h: FileHeader, staged: Path) -> str | None:
    """Why the staged file does not match the header's size and sha256, or None."""
    size, sha = sha256_file(staged)
    return mismatch(h, size, sha)


def _copy_hashing(src: Path, dest: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as inp, open(dest, "wb") as out:
        for data in iter(lambda: inp.read(1024 * 1024), b""):
            digest.update(data)
            out.write(data)
            size += len(data)
    return size, digest.hexdigest()


def mismatch(h: FileHeader, size: int, sha256: str) -> str | None:
    if (size, sha256) == (h.size, h.sha256):
        return None
    return (
        f"assembled {size} bytes sha256 {sha256}, the header says {h.size} bytes sha256 {h.sha256}"
    )
