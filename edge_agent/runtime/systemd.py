"""sd_notify without libsystemd: READY, STATUS, WATCHDOG, RELOADING, STOPPING."""

from __future__ import annotations

import contextlib
import socket
import time


class Notifier:
    """Sends notifications to ``NOTIFY_SOCKET``; a no-op when not under systemd."""

    def __init__(self, notify_socket: str | None, watchdog_usec: str | None) -> None:
        self.address = notify_socket or None
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]  # abstract namespace
        usec = int(watchdog_usec) if watchdog_usec and watchdog_usec.isdigit() else 0
        # Ping at half the configured interval, as systemd recommends.
        self.watchdog_interval = usec / 2_000_000 if usec else 0.0
        self._last_ping = 0.0
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> None:
        if self.address is None:
            return
        # Never block the loop on systemd: a full queue or a vanished socket (shutdown)
        # just drops the notification.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto("\n".join(fields).encode(), socket.MSG_DONTWAIT, self.address)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """Sent only when it changed: no notification per idle cycle."""
        if status != self._last_status:
            self.send(f"STATUS={status}")
            self._last_status = status

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self, now: float) -> None:
        if self.watchdog_interval and now - self._last_ping >= self.watchdog_interval / 2:
            self.send("WATCHDOG=1")
            self._last_ping = now
