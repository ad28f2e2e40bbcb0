"""Signal handling: handlers only set flags; the loop acts on them.

First SIGTERM/SIGINT: stop after a bounded final flush. Second: exit at once
(the on-disk state is crash-safe, so this loses nothing). SIGHUP: reload.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from edge_agent.errors import EXIT_FAILURE


class SignalFlags:
    def __init__(self) -> None:
        self.stop = False
        self.reload = False

    def install(self, wakeup_fd: int) -> None:
        signal.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop:
            os._exit(EXIT_FAILURE)
        self.stop = True

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload = True
