"""A bandwidth cap for metered links: a file reader that paces itself (token bucket)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import BinaryIO


class ThrottledReader:
    """Wraps a binary file; read() returns no faster than ``rate`` bytes per second.

    Time is injected (``clock``, ``sleep``) so tests need not wait.
    """

    def __init__(
        self,
        raw: BinaryIO,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.raw = raw
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.start = clock()
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self.rate:
            size = self.rate  # never take more than one second's worth at a time
        data = self.raw.read(size)
        self.sent += len(data)
        ahead = self.sent / self.rate - (self.clock() - self.start)
        if ahead > 0:
            self.sleep(ahead)
        return data

    # boto3 rewinds and measures bodies; delegate what it needs.
    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.raw.seek(offset, whence)
        if position == 0:
            self.start, self.sent = self.clock(), 0
        return position

    def tell(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        self.raw.close()
