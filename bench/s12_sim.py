"""Scenario 12's gateway simulator: many logical gateways in one process, each
shipping its pre-made bronze files with the agent's own ``MqttShipper``.

``python -m bench.s12_sim PLAN.json INDEX`` reads the plan (broker port, topic
prefix, ack_timeout, retry_min/max, and for each of its devices the files: Parquet
path, manifest path, FileRecord fields), then:

1. opens one MQTT connection per device (``MqttShipper.probe``: client id
   ``edge-agent-<device>``, its own ack subscription), as a gateway does;
2. writes ``sim-INDEX.ready`` and waits for ``go`` beside the plan;
3. runs one thread per device that ships its files one after the other with
   ``put()`` (chunks, manifest, wait for the collector's ack), and on a transient
   failure (no ack in ``ack_timeout``, "resend") waits the agent's capped
   exponential backoff with jitter and sends the file again, as the daemon does;
4. writes ``sim-INDEX.json``: start/end (CLOCK_MONOTONIC, comparable across
   processes), put latencies, resends and failures.

Everything is bounded: a device gives up after ``deadline`` seconds.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

GO_WAIT = 600.0  # seconds to wait for the go file


class Device:
    """One simulated gateway: a connection and its files."""

    def __init__(self, name: str, files: list[Any], plan: dict[str, Any]) -> None:
        from edge_agent.config import SinkConfig
        from edge_agent.shippers.mqtt import MqttShipper
        from edge_agent.spool.state import FileRecord

        self.name = name
        self.files = [(Path(p), Path(m), FileRecord(**r)) for p, m, r in files]
        self.plan = plan
        self.shipper = MqttShipper(SinkConfig(
            kind="mqtt", host="127.0.0.1", port=plan["port"], topic_prefix=plan["prefix"],
            ack_timeout=plan["ack_timeout"], retry_min=plan["retry_min"],
            retry_max=plan["retry_max"]))
        self.latencies: list[float] = []
        self.resends = 0
        self.failed: list[str] = []
        self.errors: dict[str, int] = {}
        self.rng = random.Random(name)

    def ship_all(self, deadline: float) -> None:
        for local, manifest, rec in self.files:
            if not self._ship(local, manifest, rec, deadline):
                self.failed.append(rec.id)

    def _ship(self, local: Path, manifest: Path, rec: Any, deadline: float) -> bool:
        from edge_agent.errors import EdgeAgentError, TransientError

        failures = 0
        t0 = time.monotonic()
        while time.monotonic() < deadline:
            try:
                self.shipper.put(local, manifest, rec)
            except TransientError as exc:
                failures += 1
                self.resends += 1
                self._count(exc)
                time.sleep(self._backoff(failures))
                continue
            except EdgeAgentError as exc:  # refused for good: the daemon would park it
                self._count(exc)
                return False
            self.latencies.append(time.monotonic() - t0)
            return True
        return False

    def _count(self, exc: Exception) -> None:
        """Errors by kind: the message without the quoted file ids and numbers."""
        key = re.sub(r"[0-9.]+s\b|'[^']*'", "…", str(exc))[:100]
        self.errors[key] = self.errors.get(key, 0) + 1

    def _backoff(self, failures: int) -> float:
        """The daemon's retry delay: capped exponential, with jitter (half to full)."""
        delay = min(self.plan["retry_max"], self.plan["retry_min"] * 2 ** (failures - 1))
        return float(delay / 2 + self.rng.uniform(0, delay / 2))


def _connect(devices: list[Device]) -> float:
    t0 = time.monotonic()
    for device in devices:
        for attempt in range(5):
            try:
                device.shipper.probe(device.name)
                break
            except Exception:  # the broker refused a burst of connects: try again
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
    return time.monotonic() - t0


def _wait_go(go: Path) -> None:
    end = time.monotonic() + GO_WAIT
    while not go.exists():
        if time.monotonic() > end:
            raise TimeoutError(f"no {go} within {GO_WAIT:g} s")
        time.sleep(0.005)


def _ship(devices: list[Device], run_seconds: float) -> tuple[float, float, float]:
    """Ship every device's files at once; (start, end, CPU seconds of this process)."""
    cpu0 = time.process_time()  # all threads, exited ones included
    start = time.monotonic()
    deadline = start + run_seconds
    threads = [threading.Thread(target=d.ship_all, args=(deadline,), daemon=True)
               for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline + 5 - time.monotonic()))
    return start, time.monotonic(), time.process_time() - cpu0


def _result(devices: list[Device], connect_s: float, window: tuple[float, float, float]
            ) -> dict[str, Any]:
    errors: dict[str, int] = {}
    for d in devices:
        for k, v in d.errors.items():
            errors[k] = errors.get(k, 0) + v
    return {
        "devices": len(devices), "connect_s": connect_s, "start": window[0],
        "end": window[1], "cpu_s": window[2],
        "files": sum(len(d.latencies) for d in devices),
        "latencies": [x for d in devices for x in d.latencies],
        "resends": sum(d.resends for d in devices),
        "failed": [f for d in devices for f in d.failed], "errors": errors,
    }


def main(plan_path: str, index: str) -> int:
    from edge_agent.log import configure_logging

    configure_logging("json", "warning")  # one mqtt.connected line per device is noise here
    plan = json.loads(Path(plan_path).read_text())
    here = Path(plan_path).parent
    mine = plan["sims"][int(index)]
    devices = [Device(name, files, plan) for name, files in mine.items()]
    try:
        connect_s = _connect(devices)
        (here / f"sim-{index}.ready").write_text("ready")
        _wait_go(here / "go")
        result = _result(devices, connect_s, _ship(devices, plan["run_seconds"]))
    finally:
        for d in devices:
            d.shipper.close()
    tmp = here / f".sim-{index}.json"
    tmp.write_text(json.dumps(result))
    tmp.rename(here / f"sim-{index}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
