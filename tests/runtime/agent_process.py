"""The real `edge-agent run` daemon as a subprocess, read through its pipes; a systemd
notify socket; small helpers for the application's writes and the lake."""

from __future__ import annotations

import json
import select
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pyarrow.parquet as pq

from tests.conftest import agent_cmd, agent_env, run_cli, write_config
from tests.lake import lake_files

WAIT = 60.0  # generous bound for any condition a test waits for


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT,
               describe: Callable[[], str] = lambda: "") -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n"
                                 f"{describe()}")
        time.sleep(0.05)


def install_config(tmp: Path, data: dict[str, Any]) -> Path:
    """Write the config and install the capture triggers, as an operator does first."""
    config = write_config(tmp, data)
    installed = run_cli("triggers", "install", "--config", str(config))
    assert installed.returncode == 0, installed.stderr
    return config


def insert_readings(db: Path, rows: int, per_transaction: int = 50, start: int = 0) -> int:
    """The application commits ``rows`` inserts into ``readings``; returns the count."""
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        for first in range(start, start + rows, per_transaction):
            last = min(first + per_transaction, start + rows)
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO readings (sensor, value) VALUES (?, ?)",
                            [(f"s{i}", i * 0.5) for i in range(first, last)])
            con.execute("COMMIT")
    finally:
        con.close()
    return rows


def lake_row_count(lake: Path) -> int:
    """Rows in every Parquet file of the lake whose manifest (written last) is present."""
    total = 0
    for path in lake_files(lake):
        if path.with_suffix(".manifest.json").exists():
            total += pq.ParquetFile(path).metadata.num_rows
    return total


class AgentProcess:
    """`edge-agent run` with stdout and stderr on pipes (not a tty), read by threads."""

    def __init__(self, config: Path, **env: str) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(agent_cmd("run", "--config", str(config)),
                                     env=agent_env(**env), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in (self.proc.stdout, self.proc.stderr)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    # -- the log ------------------------------------------------------------
    def stderr_lines(self) -> list[str]:
        """Everything the daemon printed (stdout stays empty; logs go to stderr)."""
        with self._lock:
            return [line for line in self.lines if line.strip()]

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr_lines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]

    def captured(self) -> int:
        """Changes the daemon reports captured, summed over its cycle lines."""
        return sum(int(e.get("changes", 0)) for e in self.named("cycle"))

    def log_tail(self) -> str:
        return "daemon output:\n" + "\n".join(self.stderr_lines()[-30:])

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        def ready() -> bool:
            if condition():
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting "
                                     f"for {what}\n{self.log_tail()}")
            return False

        wait_until(ready, what, timeout, self.log_tail)

    def wait_event(self, event: str, timeout: float = WAIT) -> dict[str, Any]:
        self.wait_for(lambda: bool(self.named(event)), f"a {event!r} log line", timeout)
        return self.named(event)[-1]

    def wait_captured(self, changes: int) -> None:
        self.wait_for(lambda: self.captured() >= changes, f"{changes} changes captured")

    # -- the process --------------------------------------------------------
    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 2 * WAIT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running {timeout:.0f}s after being asked "
                                 f"to stop\n{self.log_tail()}") from None

    def running(self) -> bool:
        return self.proc.poll() is None


class NotifySocket:
    """A bound AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[list[str]] = []

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)

    def _receive(self) -> bool:
        """Take every datagram that arrives within a short wait; never the condition."""
        ready, _, _ = select.select([self.sock], [], [], 0.2)
        while ready:
            self.messages.append(self.sock.recv(4096).decode().split("\n"))
            ready, _, _ = select.select([self.sock], [], [], 0)
        return False

    def wait_for(self, condition: Callable[[list[list[str]]], bool], what: str,
                 timeout: float = WAIT) -> None:
        """Receive notifications until ``condition(messages)`` holds."""
        wait_until(lambda: condition(self.messages) or self._receive(), what, timeout,
                   lambda: f"notifications so far: {self.messages}")

    def index(self, field: str, after: int = -1) -> int:
        """Position of the first message after ``after`` holding ``field``; -1 if none."""
        for i, message in enumerate(self.messages):
            if i > after and field in message:
                return i
        return -1
