"""Turn the [sink] config into a Shipper."""

from __future__ import annotations

from edge_agent.config import SinkConfig
from edge_agent.errors import ConfigError
from edge_agent.shippers.base import Shipper
from edge_agent.shippers.dir import DirShipper


def build_shipper(cfg: SinkConfig) -> Shipper:
    if cfg.kind == "dir":
        return DirShipper(cfg.path, cfg.create)
    if cfg.kind == "s3":
        from edge_agent.shippers.s3 import S3Shipper

        return S3Shipper(cfg)
    if cfg.kind == "mqtt":
        try:
            from edge_agent.shippers.mqtt import MqttShipper
        except ImportError as exc:
            raise ConfigError(
                "sink.kind", cfg.kind, f"needs paho-mqtt ({exc}): pip install 'paho-mqtt>=2.1'"
            ) from exc
        return MqttShipper(cfg)
    raise ConfigError("sink.kind", cfg.kind, 'use "dir", "s3" or "mqtt"')
