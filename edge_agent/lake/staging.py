"""The collector's staging area: chunks of files still arriving, on disk, bounded.

Layout under ``staging_dir``::

    files/<key>/header.json        the file's header (FileHeader fields)
    files/<key>/<index>.chunk      chunk bytes, index zero-padded to 8 digits
    files/<key>/manifest.json      the manifest, once it arrived
    locks/<n>.lock                 64 lock stripes (flock); <key> -> one stripe

``<key>`` is FileHeader.staging_key: the same file, bytes and chunking give the
same entry whatever the attempt, so a resend after a restart finds the chunks
already there (resume). Every change to an entry happens under its stripe's
flock, so several collectors of one share group may share this directory (they
must: the broker spreads the chunks of one file over the group). Chunk files
are written tmp -> rename but not fsynced: the whole file's sha256 is checked
when it is assembled, and a damaged entry is discarded and asked for again.
Memory never holds more than one chunk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from edge_agent.errors import EdgeAgentError
from edge_agent.fsutil import TMP_SUFFIX
from edge_agent.shippers.mqtt_wire import FileHeader

STRIPES = 64
HEADER, MANIFEST = "header.json", "manifest.json"
CHUNK_SUFFIX = ".chunk"
EVICT_IDLE = 60.0  # seconds: a manifest-only entry this idle may go when staging is full


class StagingFull(EdgeAgentError):
    """No room for another chunk within collector.max_staging_bytes."""


class Staging:
    def __init__(
        self, root: Path, max_bytes: int, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = root
        self.files = root / "files"
        self.locks = root / "locks"
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self.files.mkdir(parents=True, exist_ok=True)
        self.locks.mkdir(parents=True, exist_ok=True)
        self.used = 0
        self.rescan()

    # -- entries ----------------------------------------------------------------
    def entry(self, h: FileHeader) -> Path:
        return self.files / h.staging_key

    @contextlib.contextmanager
    def lock(self, h: FileHeader) -> Iterator[None]:
        stripe = zlib.crc32(h.staging_key.encode()) % STRIPES
        with open(self.locks / f"{stripe:02d}.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def put_chunk(self, h: FileHeader, index: int, data: bytes) -> bool:
        """Stage one chunk (caller holds the lock). False when it was already there."""
        path = self._chunk(h, index)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size == len(data):
                return False
        self._make_room(h, len(data))
        self._ensure(h)
        _write(path, data)
        self.used += len(data)
        return True

    def put_manifest(self, h: FileHeader, data: bytes) -> None:
        """Stage the manifest (caller holds the lock); it counts against the quota too."""
        path = self.entry(h) / MANIFEST
        with contextlib.suppress(FileNotFoundError):
            self.used -= path.stat().st_size  # replaced below
        self._make_room(h, len(data))
        self._ensure(h)
        _write(path, data)
        self.used += len(data)

    def _make_room(self, h: FileHeader, size: int) -> None:
        """Everything staged counts (chunks, manifests, headers). When full, entries that
        hold only a manifest and have been idle a while go first: a resend brings the
        manifest again, and they are what a flood of manifest-only messages leaves."""
        if self.used + size <= self.max_bytes:
            return
        for entry in self._idle_manifest_only(skip=self.entry(h)):
            self._remove(entry)
            if self.used + size <= self.max_bytes:
                return
        raise StagingFull(
            f"collector staging {str(self.root)!r} is full ({self.used} of "
            f"{self.max_bytes} bytes): will accept again as files complete or expire "
            f"after collector.staging_ttl; raise collector.max_staging_bytes if it lasts"
        )

    def _idle_manifest_only(self, skip: Path) -> list[Path]:
        now = self.clock()
        found = []
        for entry in self.files.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry == skip or any(entry.glob(f"*{CHUNK_SUFFIX}")):
                    continue
                idle = now - entry.stat().st_mtime
                if idle >= min(self.ttl, EVICT_IDLE):
                    found.append((idle, entry))
        return [entry for _, entry in sorted(found, reverse=True)]

    def has_manifest(self, h: FileHeader) -> bool:
        return (self.entry(h) / MANIFEST).exists()

    def manifest(self, h: FileHeader) -> bytes:
        return (self.entry(h) / MANIFEST).read_bytes()

    def complete(self, h: FileHeader) -> bool:
        """Every chunk there with its exact length, and the manifest."""
        if not self.has_manifest(h):
            return False
        for index in range(h.count):
            try:
                if self._chunk(h, index).stat().st_size != h.chunk_length(index):
                    return False
            except FileNotFoundError:
                return False
        return True

    def chunk_paths(self, h: FileHeader) -> list[Path]:
        return [self._chunk(h, i) for i in range(h.count)]

    def discard(self, h: FileHeader) -> None:
        self._remove(self.entry(h))

    def _chunk(self, h: FileHeader, index: int) -> Path:
        return self.entry(h) / f"{index:08d}{CHUNK_SUFFIX}"

    def _ensure(self, h: FileHeader) -> None:
        header = self.entry(h) / HEADER
        if not header.exists():
            header.parent.mkdir(parents=True, exist_ok=True)
            data = json.dumps(asdict(h), sort_keys=True).encode()
            _write(header, data)
            self.used += len(data)

    def _remove(self, entry: Path) -> None:
        freed = _size(entry)
        shutil.rmtree(entry, ignore_errors=True)
        self.used = max(0, self.used - freed)

    # -- start-up and housekeeping ---------------------------------------------------
    def rescan(self) -> None:
        """Recount the bytes staged (other collectors may share the directory)."""
        self.used = sum(_size(entry) for entry in self.files.iterdir())

    def headers(self) -> list[FileHeader]:
        """The header of every entry, for recovery; unreadable entries are skipped."""
        found = []
        for header in sorted(self.files.glob(f"*/{HEADER}")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                found.append(FileHeader(**json.loads(header.read_bytes())))
        return found

    def tidy(self, h: FileHeader) -> bool:
        """Under the lock: drop temp files left by a crash; drop the entry when it saw
        no new chunk for ``ttl`` seconds. True when the entry was dropped."""
        entry = self.entry(h)
        for tmp in entry.glob(f".*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
        try:
            idle = self.clock() - entry.stat().st_mtime
        except FileNotFoundError:
            return True
        if idle > self.ttl:
            self._remove(entry)
            return True
        return False

    def orphans(self) -> list[Path]:
        """Entry directories without a readable header (a crash before it was written)."""
        return [
            d
            for d in self.files.iterdir()
            if d.is_dir()
            and not (d / HEADER).exists()
            and self.clock() - d.stat().st_mtime > self.ttl
        ]

    def remove_orphan(self, entry: Path) -> None:
        self._remove(entry)


def _size(entry: Path) -> int:
    """Bytes staged in one entry (chunks, manifest, header), as it is now."""
    total = 0
    for path in entry.glob("*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def _write(path: Path, data: bytes) -> None:
    """Whole or absent (rename), not fsynced: see the module docstring."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
