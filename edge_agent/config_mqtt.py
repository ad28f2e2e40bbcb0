"""Config types and checks of the MQTT side: the broker connection shared by the
``mqtt`` sink and the lake-side collector, and the [collector] section.

The broker keys are read here (``broker_keys``) the same way for [sink],
[collector] and [control]; the rest of the loading stays in config.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from edge_agent.config_fields import Section, integer, text
from edge_agent.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from edge_agent.config import Config

TOPIC_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TOPIC_PREFIX_FIX = (
    'use 1-8 topic levels separated by "/", each 1-64 characters from '
    'A-Z a-z 0-9 . _ - (no wildcards, no leading "$"), e.g. "edge" or "plant/edge"'
)
CLIENT_ID_FIX = 'use up to 128 characters from A-Z a-z 0-9 . _ - (or "" for the default)'
MIN_CHUNK = 1024
MAX_CHUNK = 64 * 1024**2


@dataclass(frozen=True)
class BrokerConfig:
    """How to reach an MQTT broker; shared by the mqtt sink and the collector.

    ``section`` names the config section, so errors point at the key to fix.
    """

    section: str
    host: str
    port: int
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    client_id: str = ""

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @property
    def where(self) -> str:
        user = f" as user {self.username!r}" if self.username else " without a user name"
        return f"MQTT broker {self.host}:{self.effective_port}{user}"


@dataclass(frozen=True)
class CollectorConfig:
    """The lake-side MQTT collector (``edge-agent collect``), section [collector]."""

    lake: Path = Path()
    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str = ""
    password: str = field(default="", repr=False)  # from the environment or password_file
    password_file: Path | None = None
    client_id: str = ""  # "" = assigned by the broker
    topic_prefix: str = "edge"
    share_group: str = "lake"
    staging_dir: Path = Path("/var/lib/edge-collector")
    max_file_bytes: int = 256 * 1024**2
    max_chunk_bytes: int = 1024**2
    max_staging_bytes: int = 4 * 1024**3
    staging_ttl: float = 3600.0
    log_format: str = "auto"
    log_level: str = "info"

    @property
    def broker(self) -> BrokerConfig:
        return broker_of(self, "collector")


class HasBroker(Protocol):
    """The broker keys both the [sink] and the [collector] section carry."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def tls(self) -> bool: ...
    @property
    def ca_file(self) -> Path | None: ...
    @property
    def cert_file(self) -> Path | None: ...
    @property
    def key_file(self) -> Path | None: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def password_file(self) -> Path | None: ...
    @property
    def client_id(self) -> str: ...
    @property
    def topic_prefix(self) -> str: ...


def broker_of(cfg: HasBroker, section: str) -> BrokerConfig:
    return BrokerConfig(
        section=section,
        host=cfg.host,
        port=cfg.port,
        tls=cfg.tls,
        ca_file=cfg.ca_file,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        username=cfg.username,
        password=cfg.password,
        client_id=cfg.client_id,
    )


# -- converters (raise ValueError; the loader turns that into a ConfigError) --
def topic_prefix(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(raw)
    levels = raw.split("/")
    if not 1 <= len(levels) <= 8 or not all(TOPIC_SEGMENT.match(x) for x in levels):
        raise ValueError(raw)
    return raw


def topic_level(raw: Any) -> str:
    if not isinstance(raw, str) or not TOPIC_SEGMENT.match(raw):
        raise ValueError(raw)
    return raw


def client_id(raw: Any) -> str:
    if not isinstance(raw, str) or not re.match(r"^[A-Za-z0-9._-]{0,128}$", raw):
        raise ValueError(raw)
    return raw


def host(raw: Any) -> str:
    if not isinstance(raw, str) or not re.match(r"^[A-Za-z0-9._:\[\]-]{0,253}$", raw):
        raise ValueError(raw)
    return raw


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):  # environment overrides
        return raw.lower() == "true"
    raise ValueError(raw)


def optional_path(raw: Any) -> Path | None:
    if not isinstance(raw, str):
        raise ValueError(raw)
    return Path(raw).expanduser() if raw else None


# -- checks across keys -----------------------------------------------------
def check_broker(cfg: HasBroker, section: str, errors: list[ConfigError]) -> None:
    """Cross-key rules of a broker connection (the kind-specific "required" rules
    are the caller's)."""
    if (cfg.cert_file is None) != (cfg.key_file is None):
        errors.append(
            ConfigError(
                f"{section}.cert_file" if cfg.cert_file is None else f"{section}.key_file",
                "",
                "a client certificate needs both cert_file and key_file: set both or neither",
            )
        )
    tls_files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(cfg, k) is not None]
    if tls_files and not cfg.tls:
        errors.append(
            ConfigError(
                f"{section}.tls",
                False,
                f"{section}.{tls_files[0]} is set but TLS is off: set tls = true",
            )
        )
    if cfg.password and cfg.password_file is not None:
        errors.append(
            ConfigError(
                f"{section}.password_file",
                str(cfg.password_file),
                f"{section}.password is set too (EDGE_AGENT__{section.upper()}__PASSWORD): "
                "use one of the two",
            )
        )
    if (cfg.password or cfg.password_file is not None) and not cfg.username:
        errors.append(
            ConfigError(f"{section}.username", "", "a password needs a user name: set username")
        )


def check_chunk_bytes(value: int, errors: list[ConfigError]) -> None:
    if not MIN_CHUNK <= value <= MAX_CHUNK:
        errors.append(
            ConfigError(
                "sink.chunk_bytes",
                value,
                'use a size from "1KiB" to "64MiB"; the default "120KiB" fits AWS IoT Core\'s '
                "128 KB message limit",
            )
        )


def check_collector(cfg: CollectorConfig, errors: list[ConfigError]) -> None:
    check_broker(cfg, "collector", errors)
    if cfg.lake == Path() and not any(e.field == "collector.lake" for e in errors):
        errors.append(
            ConfigError(
                "collector.lake", None, 'required: add the lake directory, e.g. lake = "/srv/lake"'
            )
        )
    if not cfg.host:
        errors.append(ConfigError("collector.host", "", "required: add the broker's host name"))
    if cfg.max_chunk_bytes > cfg.max_file_bytes:
        errors.append(
            ConfigError(
                "collector.max_chunk_bytes",
                cfg.max_chunk_bytes,
                "must not be larger than collector.max_file_bytes",
            )
        )
    if cfg.max_staging_bytes < cfg.max_file_bytes + cfg.max_chunk_bytes:
        errors.append(
            ConfigError(
                "collector.max_staging_bytes",
                cfg.max_staging_bytes,
                "must hold at least one whole file (collector.max_file_bytes plus one chunk): "
                "raise it or lower max_file_bytes",
            )
        )


# -- secrets and files (used by the loader, config.load_config) ----------------
B = TypeVar("B", bound=HasBroker)


class HasPassword(Protocol):
    @property
    def password(self) -> str: ...
    @property
    def password_file(self) -> Path | None: ...


P = TypeVar("P", bound=HasPassword)
FILE_KEYS = ("ca_file", "cert_file", "key_file", "password_file")


def refuse_inline_passwords(data: Mapping[str, Any]) -> None:
    """A password never sits in the config file (it gets copied, diffed, logged)."""
    errors = [
        ConfigError(
            f"{section}.password",
            "***",
            f"do not put the password in the config file: set the environment "
            f"variable EDGE_AGENT__{section.upper()}__PASSWORD or {section}.password_file",
        )
        for section in ("sink", "collector", "control")
        if isinstance(data.get(section), dict) and "password" in data[section]
    ]
    sources = data.get("sources")
    errors += [
        ConfigError(
            f"sources[{i}].password",
            "***",
            f"do not put the password in the config file: set the environment "
            f"variable EDGE_AGENT__SOURCES__{i}__PASSWORD or sources.password_file",
        )
        for i, src in enumerate(sources if isinstance(sources, list) else [])
        if isinstance(src, dict) and "password" in src
    ]
    if errors:
        raise ConfigErrors(errors)


def resolve_files(cfg: B, fix: Callable[[Path], Path]) -> B:
    changes = {k: fix(getattr(cfg, k)) for k in FILE_KEYS if getattr(cfg, k) is not None}
    return replace(cfg, **changes)  # type: ignore[type-var]


def read_password_files(cfg: Config) -> Config:
    """Fill ``password`` from ``password_file`` (first line, without the newline)."""
    sink = _with_password(cfg.sink, "sink")
    collector = None if cfg.collector is None else _with_password(cfg.collector, "collector")
    control = None if cfg.control is None else _with_password(cfg.control, "control")
    sources = tuple(_with_password(s, f"sources[{s.name}]") for s in cfg.sources)
    return replace(cfg, sink=sink, collector=collector, control=control, sources=sources)


def read_password_files_of(cfg: P, section: str) -> P:
    """One section's ``password_file`` read into ``password``."""
    return _with_password(cfg, section)


def _with_password(cfg: P, section: str) -> P:
    if cfg.password_file is None or cfg.password:
        return cfg
    try:
        text = cfg.password_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors(
            [
                ConfigError(
                    f"{section}.password_file",
                    str(cfg.password_file),
                    f"cannot read it ({exc}): create it with the password on one line, readable "
                    "only by the service user (chmod 600)",
                )
            ]
        ) from exc
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigErrors(
            [
                ConfigError(
                    f"{section}.password_file",
                    str(cfg.password_file),
                    "the file is empty: put the password on its first line",
                )
            ]
        )
    return replace(cfg, password=password)  # type: ignore[type-var]


BROKER_KEYS = (
    "host, port, tls, ca_file, cert_file, key_file, username, password, "
    "password_file, client_id, topic_prefix"
)


def broker_keys(s: Section, d: HasBroker) -> dict[str, Any]:
    """The broker keys, read the same way in [sink] and [collector]."""
    pem = 'give the path of a PEM file, or "" for none'
    return {
        "host": s.get("host", d.host, host, "use a host name or an IP address"),
        "port": s.get(
            "port",
            d.port,
            integer(0, 65535),
            "use a TCP port from 1 to 65535 (0 = 1883, or 8883 with tls)",
        ),
        "tls": s.get("tls", d.tls, boolean, "use true or false"),
        "ca_file": s.get(
            "ca_file",
            d.ca_file,
            optional_path,
            pem + " (the CA that signed the broker's certificate; \"\" = the system's CAs)",
        ),
        "cert_file": s.get("cert_file", d.cert_file, optional_path, pem),
        "key_file": s.get("key_file", d.key_file, optional_path, pem),
        "username": s.get("username", d.username, text, 'use the broker user name, or ""'),
        "password": s.get("password", d.password, text, "use a string"),
        "password_file": s.get(
            "password_file",
            d.password_file,
            optional_path,
            "give the path of a file that holds the password",
        ),
        "client_id": s.get("client_id", d.client_id, client_id, CLIENT_ID_FIX),
        "topic_prefix": s.get("topic_prefix", d.topic_prefix, topic_prefix, TOPIC_PREFIX_FIX),
    }
