"""The typed configuration tree: defaults in code, one loader, errors that name the field.

Only the CLI calls :func:`load_config` (it reads the file and the environment);
everything else receives the resulting :class:`Config`.
"""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from edge_agent import config_mqtt as mq
from edge_agent.config_control import ControlConfig, merge_remote, parse_control, read_keys_file
from edge_agent.config_fields import DURATION_FIX, NAME_FIX, NAME_RE, SIZE_FIX
from edge_agent.config_fields import Section as _Section
from edge_agent.config_fields import choice as _choice
from edge_agent.config_fields import device as _device
from edge_agent.config_fields import has_error as _has_error
from edge_agent.config_fields import integer as _int
from edge_agent.config_fields import iso_date as _date
from edge_agent.config_fields import path as _path
from edge_agent.config_fields import positive_duration as _positive_duration
from edge_agent.config_fields import positive_size as _positive_size
from edge_agent.config_fields import text as _text
from edge_agent.config_mqtt import BrokerConfig, CollectorConfig, broker_of
from edge_agent.config_sources import SourceConfig, TimestampTable, default_slot, parse_sources
from edge_agent.errors import ConfigError, ConfigErrors
from edge_agent.units import parse_duration, parse_size

__all__ = [
    "NAME_RE",
    "AgentConfig",
    "BufferConfig",
    "ClockConfig",
    "Config",
    "SinkConfig",
    "SourceConfig",
    "TimestampTable",
    "apply_env",
    "config_from_dict",
    "default_device_id",
    "load_config",
]

ENV_PREFIX = "EDGE_AGENT__"
COMPRESSIONS = ("zstd", "snappy", "gzip", "none")


@dataclass(frozen=True)
class AgentConfig:
    device_id: str = ""
    state_dir: Path = Path("/var/lib/edge-agent")
    poll_interval: float = 5.0
    debounce: float = 0.2
    shutdown_timeout: float = 20.0
    log_format: str = "auto"
    log_level: str = "info"
    metrics_port: int = 0  # a Prometheus endpoint on 127.0.0.1:<port>; 0 = off


@dataclass(frozen=True)
class BufferConfig:
    max_memory: int = 16 * 1024**2
    max_file_bytes: int = 8 * 1024**2
    max_file_age: float = 30.0
    row_group_bytes: int = 1024**2
    spool_quota: int = 1024**3
    when_full: str = "block"
    compression: str = "zstd"
    compression_level: int = 1


@dataclass(frozen=True)
class ClockConfig:
    min_valid: date = date(2020, 1, 1)

    @property
    def min_valid_ms(self) -> int:
        start = datetime(self.min_valid.year, self.min_valid.month, self.min_valid.day, tzinfo=UTC)
        return int(start.timestamp() * 1000)


@dataclass(frozen=True)
class SinkConfig:
    kind: str = "dir"
    path: Path = Path("lake")  # dir
    create: bool = False  # dir: create the lake root if missing (first time only)
    retry_min: float = 1.0
    retry_max: float = 300.0
    max_bandwidth: int = 0  # bytes/s, 0 = unlimited
    bucket: str = ""  # s3 ...
    prefix: str = "bronze"
    region: str = ""
    endpoint_url: str = ""
    addressing_style: str = "auto"
    host: str = ""  # mqtt ...
    port: int = 0  # 0 = 1883, or 8883 with tls
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str = ""
    password: str = field(default="", repr=False)  # from the environment only
    password_file: Path | None = None
    client_id: str = ""  # "" = edge-agent-<device_id>
    topic_prefix: str = "edge"
    chunk_bytes: int = 120 * 1024  # under AWS IoT Core's 128 KB message limit
    max_inflight: int = 16
    max_files_in_flight: int = 4  # files sent and awaiting the collector's ack
    ack_timeout: float = 30.0

    @property
    def broker(self) -> BrokerConfig:
        return broker_of(self, "sink")


@dataclass(frozen=True)
class Config:
    agent: AgentConfig = field(default_factory=AgentConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    sources: tuple[SourceConfig, ...] = ()
    sink: SinkConfig = field(default_factory=SinkConfig)
    collector: CollectorConfig | None = None  # only `edge-agent collect` needs it
    control: ControlConfig | None = None  # remote configuration and commands (docs/remote.md)

    @property
    def device_id(self) -> str:
        return self.agent.device_id or default_device_id()


def default_device_id() -> str:
    """The host name reduced to the characters allowed in file names."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64]
    return host or "device"


def _agent(data: object, errors: list[ConfigError]) -> AgentConfig:
    s = _Section(data, "agent", errors)
    d = AgentConfig()
    cfg = AgentConfig(
        device_id=s.get("device_id", d.device_id, _device, NAME_FIX + ' (or "" for the host name)'),
        state_dir=s.get("state_dir", d.state_dir, _path, "give a directory path"),
        poll_interval=s.get("poll_interval", d.poll_interval, _positive_duration, DURATION_FIX),
        debounce=s.get("debounce", d.debounce, parse_duration, DURATION_FIX),
        shutdown_timeout=s.get(
            "shutdown_timeout", d.shutdown_timeout, _positive_duration, DURATION_FIX
        ),
        log_format=s.get(
            "log_format",
            d.log_format,
            _choice(("auto", "json", "console")),
            'use "auto", "json" or "console"',
        ),
        log_level=s.get(
            "log_level",
            d.log_level,
            _choice(("debug", "info", "warning", "error")),
            'use "debug", "info", "warning" or "error"',
        ),
        metrics_port=s.get(
            "metrics_port", d.metrics_port, _int(0, 65535), "use a TCP port, or 0 for off"
        ),
    )
    s.finish(
        "device_id, state_dir, poll_interval, debounce, shutdown_timeout, log_format, "
        "log_level, metrics_port"
    )
    return cfg


def _buffer(data: object, errors: list[ConfigError]) -> BufferConfig:
    s = _Section(data, "buffer", errors)
    d = BufferConfig()
    cfg = BufferConfig(
        max_memory=s.get("max_memory", d.max_memory, _positive_size, SIZE_FIX),
        max_file_bytes=s.get("max_file_bytes", d.max_file_bytes, _positive_size, SIZE_FIX),
        max_file_age=s.get("max_file_age", d.max_file_age, _positive_duration, DURATION_FIX),
        row_group_bytes=s.get("row_group_bytes", d.row_group_bytes, _positive_size, SIZE_FIX),
        spool_quota=s.get("spool_quota", d.spool_quota, _positive_size, SIZE_FIX),
        when_full=s.get(
            "when_full",
            d.when_full,
            _choice(("block", "drop_oldest")),
            'use "block" (pause capture, default) or "drop_oldest"',
        ),
        compression=s.get(
            "compression",
            d.compression,
            _choice(COMPRESSIONS),
            "use one of " + ", ".join(f'"{c}"' for c in COMPRESSIONS),
        ),
        compression_level=s.get(
            "compression_level", d.compression_level, _int(1, 22), "use an integer from 1 to 22"
        ),
    )
    s.finish(
        "max_memory, max_file_bytes, max_file_age, row_group_bytes, spool_quota, "
        "when_full, compression, compression_level"
    )
    _check_buffer(cfg, errors)
    return cfg


def _check_buffer(cfg: BufferConfig, errors: list[ConfigError]) -> None:
    if cfg.compression == "gzip" and cfg.compression_level > 9:
        errors.append(
            ConfigError(
                "buffer.compression_level", cfg.compression_level, "gzip takes levels 1 to 9"
            )
        )
    if cfg.max_memory < 64 * 1024:
        errors.append(ConfigError("buffer.max_memory", cfg.max_memory, "use at least 64KiB"))
    if cfg.spool_quota < 2 * cfg.max_file_bytes and not any(
        e.field in ("buffer.max_file_bytes", "buffer.spool_quota") for e in errors
    ):
        errors.append(
            ConfigError(
                "buffer.spool_quota",
                cfg.spool_quota,
                f"must hold at least two files of buffer.max_file_bytes ({cfg.max_file_bytes} "
                "bytes): raise spool_quota or lower max_file_bytes",
            )
        )


def _clock(data: object, errors: list[ConfigError]) -> ClockConfig:
    s = _Section(data, "clock", errors)
    cfg = ClockConfig(
        min_valid=s.get(
            "min_valid", ClockConfig().min_valid, _date, 'use an ISO date such as "2020-01-01"'
        ),
    )
    s.finish("min_valid")
    return cfg


def _sink(data: object, errors: list[ConfigError]) -> SinkConfig:
    s = _Section(data, "sink", errors)
    d = SinkConfig()
    cfg = SinkConfig(
        kind=s.get("kind", d.kind, _choice(("dir", "s3", "mqtt")), 'use "dir", "s3" or "mqtt"'),
        path=s.get("path", d.path, _path, "give the lake directory path"),
        create=s.get("create", d.create, mq.boolean, "use true or false"),
        retry_min=s.get("retry_min", d.retry_min, _positive_duration, DURATION_FIX),
        retry_max=s.get("retry_max", d.retry_max, _positive_duration, DURATION_FIX),
        max_bandwidth=s.get(
            "max_bandwidth",
            d.max_bandwidth,
            parse_size,
            SIZE_FIX + ' per second, or "0" for unlimited',
        ),
        bucket=s.get(
            "bucket", d.bucket, _bucket, "use an S3 bucket name (3-63 characters: a-z 0-9 . -)"
        ),
        prefix=s.get("prefix", d.prefix, _prefix, 'use a key prefix such as "bronze" or ""'),
        region=s.get("region", d.region, _text, 'use a region name such as "eu-central-1"'),
        endpoint_url=s.get(
            "endpoint_url", d.endpoint_url, _endpoint, 'use an http(s):// URL, or "" for AWS'
        ),
        addressing_style=s.get(
            "addressing_style",
            d.addressing_style,
            _choice(("auto", "path", "virtual")),
            'use "auto", "path" (MinIO, moto, Garage) or "virtual"',
        ),
        chunk_bytes=s.get("chunk_bytes", d.chunk_bytes, _positive_size, SIZE_FIX),
        max_inflight=s.get(
            "max_inflight", d.max_inflight, _int(1, 65535), "use an integer from 1 to 65535"
        ),
        max_files_in_flight=s.get(
            "max_files_in_flight",
            d.max_files_in_flight,
            _int(1, 64),
            "use an integer from 1 to 64",
        ),
        ack_timeout=s.get("ack_timeout", d.ack_timeout, _positive_duration, DURATION_FIX),
        **mq.broker_keys(s, d),
    )
    s.finish(
        "kind, path, create, retry_min, retry_max, max_bandwidth, bucket, prefix, region, "
        "endpoint_url, addressing_style, chunk_bytes, max_inflight, max_files_in_flight, "
        "ack_timeout, " + mq.BROKER_KEYS
    )
    _check_sink(cfg, errors)
    return cfg


def _check_sink(cfg: SinkConfig, errors: list[ConfigError]) -> None:
    if cfg.retry_max < cfg.retry_min:
        errors.append(
            ConfigError("sink.retry_max", cfg.retry_max, "must not be smaller than sink.retry_min")
        )
    if cfg.kind == "s3" and not cfg.bucket and not _has_error(errors, "sink.bucket"):
        errors.append(ConfigError("sink.bucket", "", 'required for kind = "s3": add it'))
    if cfg.kind == "mqtt":
        if not cfg.host and not _has_error(errors, "sink.host"):
            errors.append(
                ConfigError(
                    "sink.host",
                    "",
                    'required for kind = "mqtt": add the '
                    'broker\'s host name, e.g. host = "broker.example"',
                )
            )
        mq.check_broker(cfg, "sink", errors)
        mq.check_chunk_bytes(cfg.chunk_bytes, errors)


def _collector(data: object, errors: list[ConfigError]) -> CollectorConfig | None:
    if data is None:
        return None  # only `edge-agent collect` asks for it
    s = _Section(data, "collector", errors)
    d = CollectorConfig()
    cfg = CollectorConfig(
        lake=s.get("lake", d.lake, _path, "give the lake directory path"),
        share_group=s.get(
            "share_group",
            d.share_group,
            mq.topic_level,
            "use 1-64 characters from A-Z a-z 0-9 . _ -",
        ),
        staging_dir=s.get("staging_dir", d.staging_dir, _path, "give a directory path"),
        max_file_bytes=s.get("max_file_bytes", d.max_file_bytes, _positive_size, SIZE_FIX),
        max_chunk_bytes=s.get("max_chunk_bytes", d.max_chunk_bytes, _positive_size, SIZE_FIX),
        max_staging_bytes=s.get("max_staging_bytes", d.max_staging_bytes, _positive_size, SIZE_FIX),
        staging_ttl=s.get("staging_ttl", d.staging_ttl, _positive_duration, DURATION_FIX),
        log_format=s.get(
            "log_format",
            d.log_format,
            _choice(("auto", "json", "console")),
            'use "auto", "json" or "console"',
        ),
        log_level=s.get(
            "log_level",
            d.log_level,
            _choice(("debug", "info", "warning", "error")),
            'use "debug", "info", "warning" or "error"',
        ),
        **mq.broker_keys(s, d),
    )
    s.finish(
        "lake, share_group, staging_dir, max_file_bytes, max_chunk_bytes, "
        "max_staging_bytes, staging_ttl, log_format, log_level, " + mq.BROKER_KEYS
    )
    mq.check_collector(cfg, errors)
    return cfg


def _bucket(raw: Any) -> str:
    if not isinstance(raw, str) or not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", raw):
        raise ValueError(raw)
    return raw


def _prefix(raw: Any) -> str:
    return _text(raw).strip("/")


def _endpoint(raw: Any) -> str:
    text = _text(raw)
    if text and not re.match(r"^https?://[^/\s]+", text):
        raise ValueError(raw)
    return text


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Validate a parsed TOML document; raises ConfigErrors listing every problem."""
    errors: list[ConfigError] = []
    known = {"agent", "buffer", "clock", "sources", "sink", "collector", "control"}
    for key in sorted(set(data) - known):
        errors.append(
            ConfigError(
                key, data[key], "unknown section; known sections: " + ", ".join(sorted(known))
            )
        )
    cfg = Config(
        agent=_agent(data.get("agent"), errors),
        buffer=_buffer(data.get("buffer"), errors),
        clock=_clock(data.get("clock"), errors),
        sources=parse_sources(data.get("sources"), errors),
        sink=_sink(data.get("sink"), errors),
        collector=_collector(data.get("collector"), errors),
        control=parse_control(data.get("control"), errors),
    )
    if errors:
        raise ConfigErrors(errors)
    return _with_slots(cfg)


def _with_slots(cfg: Config) -> Config:
    """A logical source without ``slot`` gets ``edge_agent_<device_id>``."""
    sources = tuple(
        replace(s, slot=default_slot(cfg.device_id)) if s.mode == "logical" and not s.slot else s
        for s in cfg.sources
    )
    return replace(cfg, sources=sources)


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply EDGE_AGENT__SECTION__KEY (and EDGE_AGENT__SOURCES__N__KEY) overrides."""
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        _set_path(data, parts, value, name)
    return data


def _set_path(data: dict[str, Any], parts: list[str], value: str, env_name: str) -> None:
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            index = int(part) if part.isdigit() else -1
            if not 0 <= index < len(node):
                raise ConfigErrors([ConfigError(env_name, value, "no such source index")])
            node = node[index]
        elif isinstance(node, dict):
            default: Any = [] if parts[i] == "sources" else {}
            node = node.setdefault(part, default)
        else:
            raise ConfigErrors([ConfigError(env_name, value, "point at a key, not inside a value")])
    if not isinstance(node, dict):
        raise ConfigErrors([ConfigError(env_name, value, "point at a key, not a list")])
    node[parts[-1]] = _env_value(parts[-1], value)


def _env_value(key: str, value: str) -> Any:
    if key == "tables":
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


def load_config(path: Path, environ: Mapping[str, str], remote: str | None = None) -> Config:
    """Read a TOML file, apply environment overrides and validate. ``remote``: a remote
    config's TOML text, which replaces every section but the local-only ones."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigErrors([ConfigError("--config", str(path), "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors([ConfigError("--config", str(path), f"cannot read it: {exc}")]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigErrors([ConfigError("--config", str(path), f"not valid TOML: {exc}")]) from exc
    if remote is not None:
        data = merge_remote(data, remote)
    mq.refuse_inline_passwords(data)
    cfg = config_from_dict(apply_env(data, environ))
    return mq.read_password_files(_resolve_relative(cfg, path.parent))


def _control_files(control: ControlConfig, fix: Callable[[Path], Path]) -> ControlConfig:
    control = mq.resolve_files(control, fix)
    if control.trusted_keys_file is None:
        return control
    path = fix(control.trusted_keys_file)
    try:
        keys = read_keys_file(path)
    except ValueError as exc:
        raise ConfigErrors(
            [ConfigError("control.trusted_keys_file", str(path), f"{exc}: one key per line")]
        ) from exc
    return replace(control, trusted_keys_file=path, trusted_keys=control.trusted_keys + keys)


def _resolve_relative(cfg: Config, base: Path) -> Config:
    """Relative paths in a config file are relative to that file, not to the cwd."""
    from dataclasses import replace

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    return replace(
        cfg,
        agent=replace(cfg.agent, state_dir=fix(cfg.agent.state_dir)),
        sources=tuple(
            replace(
                s,
                path=fix(s.path),
                password_file=None if s.password_file is None else fix(s.password_file),
            )
            for s in cfg.sources
        ),
        sink=mq.resolve_files(replace(cfg.sink, path=fix(cfg.sink.path)), fix),
        collector=None
        if cfg.collector is None
        else mq.resolve_files(
            replace(
                cfg.collector,
                lake=fix(cfg.collector.lake),
                staging_dir=fix(cfg.collector.staging_dir),
            ),
            fix,
        ),
        control=None if cfg.control is None else _control_files(cfg.control, fix),
    )
