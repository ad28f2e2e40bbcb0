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
