"""The [control] section: remote configuration and commands over MQTT (docs/remote.md).

It stays in the local config file: a remote document can never change who the
agent trusts or where it listens (except a key rotation signed by a key it
already trusts, kept in the state directory).
"""

from __future__ import annotations

import base64
import binascii
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent import config_mqtt as mq
from edge_agent.config_fields import DURATION_FIX, SIZE_FIX, Section
from edge_agent.config_fields import choice as _choice
from edge_agent.config_fields import positive_duration as _positive_duration
from edge_agent.config_fields import positive_size as _positive_size
from edge_agent.errors import ConfigError, ConfigErrors

KEY_PREFIX = "ed25519:"
KEY_FIX = (
    'give "ed25519:" and the base64 of a 32-byte Ed25519 public key (`edge-agent keys generate`)'
)


@dataclass(frozen=True)
class ControlConfig:
    kind: str = "mqtt"
    host: str = ""
    port: int = 0
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    password_file: Path | None = None
    client_id: str = ""  # "" = edge-agent-control-<device_id>
    topic_prefix: str = "edge"
    group: str = ""
    trusted_keys: tuple[str, ...] = ()
    trusted_keys_file: Path | None = None
    health_window: float = 30.0
    status_interval: float = 60.0
    metrics_interval: float = 60.0
    max_message_bytes: int = 256 * 1024

    @property
    def broker(self) -> mq.BrokerConfig:
        return mq.broker_of(self, "control")


def public_key(raw: Any) -> str:
    """``ed25519:BASE64`` of 32 bytes (the check needs no crypto library)."""
    if not isinstance(raw, str) or not raw.startswith(KEY_PREFIX):
        raise ValueError(raw)
    try:
        key = base64.b64decode(raw[len(KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(raw) from exc
    if len(key) != 32:
        raise ValueError(raw)
    return raw


def _keys(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ValueError(raw)
    return tuple(public_key(k) for k in raw)


def parse_control(
    data: object, errors: list[ConfigError], operator: bool = False
) -> ControlConfig | None:
    """``operator``: the broker settings of `edge-agent remote` (no trusted keys needed)."""
    if data is None:
        return None
    s = Section(data, "control", errors)
    d = ControlConfig()
    cfg = ControlConfig(
        kind=s.get("kind", d.kind, _choice(("mqtt",)), 'use "mqtt"'),
        group=s.get("group", d.group, _group, 'use a group name (A-Z a-z 0-9 . _ -) or ""'),
        trusted_keys=s.get(
            "trusted_keys", d.trusted_keys, _keys, "give a list of keys: " + KEY_FIX
        ),
        trusted_keys_file=s.get(
            "trusted_keys_file",
            d.trusted_keys_file,
            mq.optional_path,
            "give a file with one ed25519: key per line",
        ),
        health_window=s.get("health_window", d.health_window, _positive_duration, DURATION_FIX),
        status_interval=s.get(
            "status_interval", d.status_interval, _positive_duration, DURATION_FIX
        ),
        metrics_interval=s.get(
            "metrics_interval", d.metrics_interval, _positive_duration, DURATION_FIX
        ),
        max_message_bytes=s.get("max_message_bytes", d.max_message_bytes, _positive_size, SIZE_FIX),
        **mq.broker_keys(s, d),
    )
    s.finish(
        "kind, group, trusted_keys, trusted_keys_file, health_window, status_interval, "
        "metrics_interval, max_message_bytes, " + mq.BROKER_KEYS
    )
    _check(cfg, errors, operator)
    return cfg


def _group(raw: Any) -> str:
    return mq.topic_level(raw) if raw != "" else ""


def _check(cfg: ControlConfig, errors: list[ConfigError], operator: bool) -> None:
    if not cfg.host:
        errors.append(
            ConfigError(
                "control.host", "", 'required: the broker\'s host name, e.g. "broker.example"'
            )
        )
    if not operator and not cfg.trusted_keys and cfg.trusted_keys_file is None:
        errors.append(
            ConfigError(
                "control.trusted_keys",
                [],
                "give at least one key (or trusted_keys_file): nothing remote is accepted "
                "unless signed by one; " + KEY_FIX,
            )
        )
    mq.check_broker(cfg, "control", errors)


LOCAL_ONLY = ("agent", "control", "collector")


def merge_remote(local: dict[str, Any], remote_text: str) -> dict[str, Any]:
    """A remote document's sections with the local file's [agent] and [control] (and
    [collector], lake-side): who the agent trusts and where it listens stay local."""
    try:
        remote = tomllib.loads(remote_text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigErrors(
            [ConfigError("remote config", "(document)", f"not valid TOML: {exc}")]
        ) from exc
    refused = [
        ConfigError(
            f"remote config [{name}]",
            "(section)",
            "remove it: [agent], [control] and [collector] come from the local config file only",
        )
        for name in LOCAL_ONLY
        if name in remote
    ]
    if refused:
        raise ConfigErrors(refused)
    return {**remote, **{k: local[k] for k in LOCAL_ONLY if k in local}}


def read_keys_file(path: Path) -> tuple[str, ...]:
    """One ``ed25519:`` key per line; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read it ({exc})") from exc
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for key in keys:
        public_key(key)
    return tuple(keys)
