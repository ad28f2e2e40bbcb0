"""The agent's state directory: its layout, version file and single-agent lock.

<state_dir>/VERSION        storage version; a newer one is refused (no downgrade)
<state_dir>/agent.lock     flock held by the one agent using this directory
<state_dir>/state.db       positions, ordinals, file ledger (spool/state.py)
<state_dir>/control.sock   local control socket of a running daemon
<state_dir>/spool/tmp      open files (removed on start)
<state_dir>/spool/ready    sealed files waiting to be shipped, in the lake layout
<state_dir>/spool/failed   quarantined files, each with a .error note
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from edge_agent.errors import StateError, StateLockedError, toml_value
from edge_agent.fsutil import DIR_MODE, ensure_dir, fsync_dir, write_atomic

STORAGE_VERSION = 1


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_fd: int | None = None

    @property
    def db_path(self) -> Path:
        return self.root / "state.db"

    @property
    def socket_path(self) -> Path:
        return self.root / "control.sock"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def move_db_aside(self, now_ms: int) -> Path:
        """A damaged state database (and its -wal, -shm) renamed out of the way; the
        ledger is then rebuilt from the spool (spool/adopt.py)."""
        target = self.db_path.with_name(f"{self.db_path.name}.damaged-{now_ms}")
        for suffix in ("", "-wal", "-shm"):
            src = self.db_path.with_name(self.db_path.name + suffix)
            if src.exists():
                os.replace(src, target.with_name(target.name + suffix))
        fsync_dir(self.root)
        return target

    def prepare(self) -> None:
        """Create the layout and check the storage version."""
        try:
            for sub in ("tmp", "ready", "failed"):
                ensure_dir(self.spool / sub)
            # Nobody but the service user and its group gets in (the state database and
            # the spool hold the captured data), whatever made the directory; one made and
            # owned by someone else keeps its mode.
            with contextlib.suppress(PermissionError):
                os.chmod(self.root, DIR_MODE)
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory {str(self.root)!r} ({exc.strerror}): "
                "set agent.state_dir to a writable directory"
            ) from exc
        version_file = self.root / "VERSION"
        if not version_file.exists():
            write_atomic(version_file, f"{STORAGE_VERSION}\n".encode())
            return
        text = version_file.read_text().strip()
        if not text.isdigit() or int(text) > STORAGE_VERSION:
            raise StateError(
                f"state directory {str(self.root)!r} has storage version {text!r}, newer than "
                f"this agent's {STORAGE_VERSION}: upgrade edge-agent (downgrades are refused)"
            )

    def lock(self) -> None:
        """Take the directory for this process, or explain who holds it."""
        path = self.root / "agent.lock"
        try:
            ensure_dir(self.root)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise StateError(
                f"config: agent.state_dir = {toml_value(str(self.root))}: cannot create "
                f"{str(path)!r} ({exc.strerror}): give a directory the agent may write (the "
                "systemd unit's StateDirectory=, or ReadWritePaths= for another path)"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateLockedError(
                f"state directory {str(self.root)!r} is in use by another edge-agent "
                f"(pid {holder}): stop it, talk to it with `edge-agent flush`/`status`, "
                "or give this one another agent.state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
