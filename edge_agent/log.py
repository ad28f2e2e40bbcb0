"""structlog set-up, done once by the CLI: JSON lines under systemd, console on a tty."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    if fmt == "auto":
        under_systemd = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
        fmt = "console" if sys.stderr.isatty() and not under_systemd else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


class ErrorReporter:
    """Rate-limits a repeating error and logs one "recovered" line when it clears."""

    def __init__(self, log: Any, every: float = 300.0) -> None:
        self.log = log
        self.every = every
        self.active: dict[str, tuple[str, float, int]] = {}

    def failed(self, key: str, message: str, **fields: Any) -> None:
        now = time.monotonic()
        last = self.active.get(key)
        if last is None or last[0] != message or now - last[1] >= self.every:
            repeats = last[2] if last and last[0] == message else 0
            self.log.error(key, error=message, repeated=repeats, **fields)
            self.active[key] = (message, now, 0)
        else:
            self.active[key] = (last[0], last[1], last[2] + 1)

    def ok(self, key: str, **fields: Any) -> None:
        if self.active.pop(key, None) is not None:
            self.log.info(f"{key}.recovered", **fields)
