"""How tests and benchmarks start the real `edge-agent` and other child processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_agent", *args]


def agent_env(**extra: str) -> dict[str, str]:
    """The repo importable, no agent overrides or systemd variables of the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EDGE_AGENT") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env
