"""Atomic, durable file operations: tmp -> fsync -> rename -> fsync(dir).

A file is either absent or whole at its final path; temp files carry the
``.tmp`` suffix and are removed on the next start.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

TMP_SUFFIX = ".tmp"
CHUNK = 1024 * 1024


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Modes of what the agent creates, whatever the umask: the service user reads and
# writes, its group (e.g. the lake's readers) reads, nobody else.
FILE_MODE, DIR_MODE = 0o640, 0o750


def ensure_dir(path: Path) -> None:
    """mkdir -p (mode 0750), fsyncing each parent that gained an entry."""
    missing: list[Path] = []
    cur = path
    while not cur.exists():
        missing.append(cur)
        cur = cur.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        os.chmod(d, DIR_MODE)
        fsync_dir(d.parent)


def publish(tmp: Path, final: Path) -> None:
    """fsync a finished temp file (mode 0640) and rename it into place durably."""
    os.chmod(tmp, FILE_MODE)
    fsync_file(tmp)
    ensure_dir(final.parent)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_atomic(final: Path, data: bytes) -> None:
    ensure_dir(final.parent)
    tmp = final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")
    with open(tmp, "wb") as f:
        f.write(data)
    publish(tmp, final)


class ChecksumMismatch(Exception):
    """The bytes read do not match the expected size or sha256."""


def copy_atomic(src: Path, final: Path, expect: tuple[int, str] | None = None) -> tuple[int, str]:
    """Copy src to final atomically; returns (bytes, sha256 hex) of what was written.

    With ``expect`` = (size, sha256), a mismatch raises ChecksumMismatch before
    anything becomes visible at ``final``.
    """
    ensure_dir(final.parent)
    tmp = final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            for chunk in iter(lambda: fin.read(CHUNK), b""):
                digest.update(chunk)
                fout.write(chunk)
                size += len(chunk)
        if expect is not None and (size, digest.hexdigest()) != expect:
            raise ChecksumMismatch(
                f"{src}: {size} bytes sha256 {digest.hexdigest()}, expected "
                f"{expect[0]} bytes sha256 {expect[1]}"
            )
        publish(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def remove_durably(paths: Iterable[Path]) -> None:
    parents = set()
    for p in paths:
        try:
            p.unlink()
            parents.add(p.parent)
        except FileNotFoundError:
            pass
    for d in parents:
        fsync_dir(d)


def unwritable(path: Path) -> str | None:
    """Why ``path`` could not be created or written by this process, or None.

    Checks the path itself when it exists, else the nearest existing parent (the agent
    creates what is missing). Read-only: nothing is created.
    """
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return "no parent directory exists"
        probe = probe.parent
    if not probe.is_dir():
        return f"{str(probe)!r} is a file, not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{str(probe)!r} is not writable by this user"
    return None
