"""Local control over a Unix socket in the state directory (JSON, one line each way).

The server thread only queues requests and waits for the run loop's answer;
all data-path work stays on the loop's thread.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.log import get_logger

log = get_logger("edge_agent.control")
MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 16  # connections served at once; more are refused with "busy"
READ_TIMEOUT = 5.0  # seconds a client has to send its request line


@dataclass
class Request:
    command: str
    args: dict[str, Any]
    reply: queue.Queue[dict[str, Any]] = field(default_factory=lambda: queue.Queue(maxsize=1))


class ControlServer:
    def __init__(
        self,
        path: Path,
        requests: queue.Queue[Request],
        wake: Any,
        max_clients: int = MAX_CLIENTS,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.slots = threading.BoundedSemaphore(max_clients)
        self.read_timeout = read_timeout
        self.path = path
        self.requests = requests
        self.wake = wake
        path.unlink(missing_ok=True)  # a stale socket of a dead agent (we hold the lock)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o660)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._closed = False

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if not self.slots.acquire(blocking=False):
                # Every handler is busy: refuse at once rather than pile up threads.
                with conn, contextlib.suppress(OSError):
                    conn.sendall(b'{"ok": false, "error": "control socket busy: try again"}\n')
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            self.slots.release()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                # A client that sends nothing (or too slowly) does not hold a handler.
                conn.settimeout(self.read_timeout)
                request = parse_request(_read_line(conn))
                conn.settimeout(None)
                self.requests.put(request)
                self.wake()
                answer = request.reply.get(timeout=request.args["timeout"] + 30)
            except (ValueError, TypeError, OverflowError, OSError, queue.Empty) as exc:
                answer = {"ok": False, "error": f"control request failed: {exc}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(answer).encode() + b"\n")

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.path.unlink(missing_ok=True)


MAX_TIMEOUT = 86400.0


def parse_request(message: dict[str, Any]) -> Request:
    """A validated request; ValueError names what is wrong."""
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ValueError("args must be a JSON object")
    timeout = float(args.get("timeout", 60))
    if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"timeout {timeout!r}: use seconds in (0, {MAX_TIMEOUT:.0f}]")
    return Request(str(message.get("command", "")), {**args, "timeout": timeout})


def _read_line(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    message = json.loads(data or b"{}")
    if not isinstance(message, dict):
        raise ValueError("request must be a JSON object")
    return message


def send_request(path: Path, command: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Ask a running daemon; raises ConnectionError when none listens at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ConnectionError(str(exc)) from exc
        sock.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
        answer = _read_line(sock)
    return answer
