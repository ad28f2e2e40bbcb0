"""Scenario 12's baseline: the durable floor of an MQTT receiver.

``python -m bench.s12_floor PORT PREFIX LAKE READY`` subscribes to
``<prefix>/+/batch`` (QoS 1, MQTT 5), keeps each file's chunks in memory, and when a
file's chunks and manifest are all there writes the file and its manifest into the
lake layout (tmp -> fsync -> rename, then an fsync of the directory) and publishes
the same "ok" ack the collector sends, so the same simulated gateways drive it.
What it leaves out is what the collector adds: checks (sha256 of each chunk and of
the file, the manifest against the headers, the Parquet footer), staging on disk
(restart-safe, shared by a share group), idempotence against the lake, locks.
One process only: with chunks kept in memory it cannot be in a share group.

With ``EDGE_BENCH_FAST_DECODING=1`` its paho decodes MQTT 5 properties as the
collector's does (edge_agent/shippers/paho_speed.py): scenario 7's second floor.

Stops on SIGTERM, or by itself after MAX_SECONDS.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from edge_agent.fsutil import fsync_file

MAX_SECONDS = 3600.0
FAST_DECODING = "EDGE_BENCH_FAST_DECODING"


class Floor:
    def __init__(self, prefix: str, lake: Path) -> None:
        self.prefix = prefix
        self.lake = lake
        self.parts: dict[tuple[str, str], dict[int, bytes]] = {}
        self.landed = 0

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        from edge_agent.shippers.mqtt_conn import user_properties
        from edge_agent.shippers.mqtt_wire import P_ATTEMPT, P_COUNT, P_FILE, P_INDEX, P_KIND

        props = dict(user_properties(message))
        key = (props[P_FILE], props[P_ATTEMPT])
        index = int(props[P_INDEX]) if props[P_KIND] == "chunk" else -1
        parts = self.parts.setdefault(key, {})
        parts[index] = bytes(message.payload)
        if len(parts) == int(props[P_COUNT]) + 1:
            del self.parts[key]
            self._land(client, props, parts)

    def _land(self, client: Any, props: dict[str, str], parts: dict[int, bytes]) -> None:
        from edge_agent.bronze.layout import manifest_relpath_of
        from edge_agent.shippers.mqtt_wire import (
            OK,
            P_ATTEMPT,
            P_FILE,
            P_PATH,
            P_SHA256,
            Ack,
            ack_topic,
            device_of_file_id,
        )

        relpath = props[P_PATH]
        dest = self.lake / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        _durable(dest, b"".join(parts[i] for i in range(len(parts) - 1)))
        _durable(self.lake / manifest_relpath_of(relpath), parts[-1])
        fsync_file(dest.parent)  # a directory: the same open + fsync
        ack = Ack(props[P_FILE], props[P_SHA256], OK, props[P_ATTEMPT], path=relpath)
        device = device_of_file_id(props[P_FILE])
        client.publish(ack_topic(self.prefix, device), ack.to_json(), qos=1)
        self.landed += 1


def _durable(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(port: str, prefix: str, lake: str, ready: str) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.subscribeoptions import SubscribeOptions

    if os.environ.get(FAST_DECODING) == "1":
        # Scenario 7's second floor: paho with the agent's property decoding
        # (edge_agent/shippers/paho_speed.py), so the comparison is library to library.
        from edge_agent.shippers.paho_speed import speed_up_properties

        speed_up_properties()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    floor = Floor(prefix, Path(lake))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = floor.on_message
    def subscribed(*_: Any) -> None:
        Path(ready).write_text("subscribed")

    client.on_subscribe = subscribed
    client.connect("127.0.0.1", int(port))
    client.subscribe(f"{prefix}/+/batch", options=SubscribeOptions(qos=1))
    end = time.monotonic() + MAX_SECONDS
    while not stop and time.monotonic() < end:
        client.loop(0.2)
    client.disconnect()
    print(f"floor landed {floor.landed} files", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
