"""The collector's staging area: files still arriving, on disk, bounded.

Layout under ``staging_dir``::

    files/<key>/header.json        the file's header (FileHeader fields)
    files/<key>/data               the file itself, each chunk written at its offset
    files/<key>/present            one byte per chunk: 1 once that chunk is in ``data``
    files/<key>/manifest.json      the manifest, once it arrived
    locks/<n>.lock                 64 lock stripes (flock); <key> -> one stripe

``<key>`` is FileHeader.staging_key: the same file, bytes and chunking give the
same entry whatever the attempt, so a resend after a restart finds the chunks
already there (resume). Every change to an entry happens under its stripe's
flock, so several collectors of one share group may share this directory (they
must: the broker spreads the chunks of one file over the group). Chunks are
written in place (the file is assembled as it arrives, never copied) and not
fsynced: the whole file's sha256 is checked before it lands, and a damaged entry
is discarded and asked for again. A chunk is marked present only after its bytes
are written, so a crash between the two leaves it missing, never half there.
Memory never holds more than one chunk.

Entries of the older layout (one ``<index>.chunk`` file per chunk) never count as
complete; they expire after ``staging_ttl`` and the agent's resend lands the file.
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
from typing import NamedTuple

from edge_agent.errors import EdgeAgentError
from edge_agent.fsutil import TMP_SUFFIX
from edge_agent.shippers.mqtt_wire import FileHeader

STRIPES = 64
HEADER, MANIFEST, DATA, PRESENT = "header.json", "manifest.json", "data", "present"
EVICT_IDLE = 60.0  # seconds: a manifest-only entry this idle may go when staging is full
PATHS_KEPT = 1024  # entries whose paths are kept built (files arriving at once, roughly)


class _Paths(NamedTuple):
    """An entry's paths, built once: the per-chunk system calls take the strings
    (pathlib's joins were about a tenth of the collector's CPU per chunk)."""

    entry: Path
    data: str
    present: str
    manifest: str


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
        self._lock_fds: dict[int, int] = {}
        self._paths_of: dict[str, _Paths] = {}
        self.rescan()

    # -- entries ----------------------------------------------------------------
    def entry(self, h: FileHeader) -> Path:
        return self._paths(h).entry

    def _paths(self, h: FileHeader) -> _Paths:
        key = h.staging_key
        paths = self._paths_of.get(key)
        if paths is None:
            if len(self._paths_of) >= PATHS_KEPT:
                self._paths_of.clear()
            entry = self.files / key
            base = str(entry)
            paths = self._paths_of[key] = _Paths(
                entry, *(os.path.join(base, name) for name in (DATA, PRESENT, MANIFEST))
            )
        return paths

    @contextlib.contextmanager
    def lock(self, h: FileHeader) -> Iterator[None]:
        stripe = zlib.crc32(h.staging_key.encode()) % STRIPES
        fd = self._lock_fds.get(stripe)
        if fd is None:  # opened once, kept: one open() per message was a hot spot
            fd = self._lock_fds[stripe] = os.open(
                self.locks / f"{stripe:02d}.lock", os.O_RDWR | os.O_CREAT, 0o640
            )
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in self._lock_fds.values():
            os.close(fd)
        self._lock_fds.clear()

    def put_chunk(self, h: FileHeader, index: int, data: bytes) -> bool:
        """Stage one chunk at its place in the file (caller holds the lock). False when
        it was already there."""
        paths = self._paths(h)
        try:  # an entry's marks exist once it has a chunk: no other lookup per chunk
            marks = os.open(paths.present, os.O_RDWR)
        except FileNotFoundError:
            marks = -1
        try:
            if marks >= 0 and os.pread(marks, 1, index) == b"\1":
                return False
            self._make_room(h, len(data))
            if marks < 0:
                self._ensure(h)
                marks = os.open(paths.present, os.O_RDWR | os.O_CREAT, 0o640)
            _pwrite(paths.data, data, index * h.chunk_bytes)
            os.pwrite(marks, b"\1", index)  # after the bytes: see the docstring
        finally:
            if marks >= 0:
                os.close(marks)
        self.used += len(data) + 1
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
                if entry == skip or (entry / PRESENT).exists():
                    continue
                idle = now - entry.stat().st_mtime
                if idle >= min(self.ttl, EVICT_IDLE):
                    found.append((idle, entry))
        return [entry for _, entry in sorted(found, reverse=True)]

    def has_manifest(self, h: FileHeader) -> bool:
        return os.path.exists(self._paths(h).manifest)

    def manifest(self, h: FileHeader) -> bytes:
        return (self.entry(h) / MANIFEST).read_bytes()

    def complete(self, h: FileHeader) -> bool:
        """Every chunk there (marked present), and the manifest."""
        if not self.has_manifest(h):
            return False
        try:
            marks = (self.entry(h) / PRESENT).read_bytes()
        except FileNotFoundError:
            return False
        return marks[: h.count] == b"\1" * h.count

    def data(self, h: FileHeader) -> Path:
        """The staged file (whole once complete(); its sha256 is not checked yet)."""
        return self.entry(h) / DATA

    def discard(self, h: FileHeader) -> None:
        self._remove(self.entry(h))

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


def _pwrite(path: str, data: bytes, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o640)
    try:
        view = memoryview(data)
        while view:  # a regular file takes it whole; a short write is not an error
            done = os.pwrite(fd, view, offset)
            view, offset = view[done:], offset + done
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    """Whole or absent (rename), not fsynced: see the module docstring."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
