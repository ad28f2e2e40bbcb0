"""Waking the loop early: a self-pipe, and file-system events on the source databases.

Polling stays the correctness path; events only shorten the wait. The pipe
is also the signal wake-up fd, so a signal interrupts the wait at once.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class Waker:
    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already full of wake-ups
            os.write(self.write_fd, b"\0")

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or the timeout; True when woken."""
        ready, _, _ = select.select([self.read_fd], [], [], max(0.0, timeout))
        if ready:
            self.drain()
        return bool(ready)

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class DatabaseWatcher:
    """Wakes the loop when a watched database or its -wal file changes."""

    def __init__(self, paths: Iterable[Path], waker: Waker) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        self.targets: set[str] = set()
        for p in paths:
            resolved = str(p.resolve())
            self.targets.update({resolved, resolved + "-wal"})
        targets = self.targets

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.src_path in targets or getattr(event, "dest_path", "") in targets:
                    waker.wake()

        self.observer = Observer()
        for directory in sorted({str(Path(t).parent) for t in self.targets}):
            if Path(directory).is_dir():
                self.observer.schedule(Handler(), directory, recursive=False)
        self.observer.daemon = True

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
