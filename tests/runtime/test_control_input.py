"""Bad control-socket requests get a clear refusal; they never reach the run loop."""

from __future__ import annotations

import json
import queue
import socket
from pathlib import Path

import pytest

from edge_agent.control.socket import ControlServer, Request


def _ask(path: Path, message: object) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data) if data else {}


@pytest.fixture
def server(tmp_path: Path):
    requests: queue.Queue[Request] = queue.Queue()
    srv = ControlServer(tmp_path / "c.sock", requests, lambda: None)
    srv.start()
    yield srv, requests
    srv.close()


@pytest.mark.parametrize("timeout", ["nan", "inf", 1e300])
def test_non_finite_flush_timeout_is_refused(server, timeout: object) -> None:
    """Agent.flush(now + nan) never reaches its deadline: with the sink down the loop
    thread retries forever (and feeds the watchdog, and ignores SIGTERM)."""
    srv, requests = server
    answer = _ask(srv.path, {"command": "flush", "args": {"timeout": timeout}})
    assert requests.empty(), "a flush with an unbounded deadline was queued to the loop"
    assert answer.get("ok") is False


def test_args_that_are_not_an_object_get_an_answer(server) -> None:
    srv, _requests = server
    answer = _ask(srv.path, {"command": "flush", "args": 5})
    assert answer.get("ok") is False  # today: TypeError kills the handler, no answer


def test_idle_connections_are_bounded_and_timed_out(tmp_path: Path) -> None:
    """Issue 13 item 12: 300 idle connections made 306 threads that never ended."""
    import threading

    requests: queue.Queue[Request] = queue.Queue()
    srv = ControlServer(tmp_path / "c.sock", requests, lambda: None, max_clients=3,
                        read_timeout=3.0)
    srv.start()
    threads_before = threading.active_count()
    idle = []
    try:
        for _ in range(20):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(srv.path))
            idle.append(sock)
        busy = [s for s in idle[3:] if b"busy" in s.recv(4096)]
        assert len(busy) == 17  # refused at once, not queued
        assert threading.active_count() <= threads_before + 3
        for sock in idle[:3]:
            sock.settimeout(5)
            assert b"timed out" in sock.recv(4096)  # the handler gave up on the silent client
        answer: dict[str, object] = {}

        def ask() -> None:
            answer.update(_ask(srv.path, {"command": "status"}))

        asker = threading.Thread(target=ask)
        asker.start()
        requests.get(timeout=5).reply.put({"ok": True})  # the run loop's answer
        asker.join(5)
        assert answer == {"ok": True}
    finally:
        for sock in idle:
            sock.close()
        srv.close()
