"""The [[sources]] part of the config: sources and their tables (trigger or timestamp)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from edge_agent.config_fields import DURATION_FIX, NAME_FIX, SIZE_FIX
from edge_agent.config_fields import Section as _Section
from edge_agent.config_fields import choice as _choice
from edge_agent.config_fields import integer as _int
from edge_agent.config_fields import name_of as _name
from edge_agent.config_fields import path as _path
from edge_agent.config_fields import string as _string
from edge_agent.config_fields import text as _text
from edge_agent.config_mqtt import boolean
from edge_agent.errors import ConfigError
from edge_agent.units import parse_duration, parse_size

CURSOR_FORMATS = ("auto", "epoch_ms", "epoch_s")
CURSOR_FORMAT_FIX = (
    'use "auto" (any time format, read without the index), "epoch_ms" or "epoch_s" (the '
    "column holds Unix epoch milliseconds or seconds: pages are read through an index on it)"
)


@dataclass(frozen=True)
class TimestampTable:
    """A table captured by polling its cursor column (``[[sources.tables]]``)."""

    name: str
    cursor: str
    key: tuple[str, ...] = ()  # default: the declared primary key
    lag: float = 5.0
    deleted_flag: str = ""
    # SQLite: how the cursor column stores time; "auto" normalises every value (any
    # format, no index); a declared format polls the raw column through its index.
    cursor_format: str = "auto"


@dataclass(frozen=True)
class SourceConfig:
    name: str
    path: Path
    tables: tuple[str, ...]  # trigger mode
    kind: str = "sqlite"
    mode: str = "trigger"
    page_rows: int = 5000
    busy_timeout: float = 5.0
    snapshot: str = "initial"
    timestamp_tables: tuple[TimestampTable, ...] = ()
    # kind = "postgres": libpq connection string (no password in it), the password
    # from password_file or EDGE_AGENT__SOURCES__N__PASSWORD (or libpq's PGPASSFILE).
    dsn: str = ""
    password: str = field(default="", repr=False)
    password_file: Path | None = None
    connect_timeout: float = 10.0
    before_image: bool = False  # postgres trigger mode: updates carry the old row in _before
    delete_image: str = "row"  # sqlite trigger mode: "key" logs only the key of a delete
    delete_images: tuple[tuple[str, str], ...] = ()  # per-table overrides (lower-case names)
    # kind = "postgres", mode = "logical" (capture/pg_logical.py)
    slot: str = ""  # "" = edge_agent_<device_id>, sanitised (Config.sources fills it in)
    publication: str = "edge_agent"
    heartbeat: float = 60.0
    max_slot_lag: int = 2 * 1024**3

    @property
    def where(self) -> str:
        """The database, as messages name it (a file path, or a DSN without password)."""
        return self.dsn if self.kind == "postgres" else str(self.path)

    @property
    def mode_of_tables(self) -> str:
        """The mode of the short-form ``tables``: trigger, or logical for such a source."""
        return "logical" if self.mode == "logical" else "trigger"

    @property
    def all_tables(self) -> tuple[str, ...]:
        return self.tables + tuple(t.name for t in self.timestamp_tables)

    def key_only_deletes(self, table: str) -> bool:
        """Whether a delete from this trigger table logs only its key: the table's own
        ``delete_image``, else the source's (SQLite names are case-insensitive)."""
        return dict(self.delete_images).get(table.lower(), self.delete_image) == "key"


def _tables(raw: Any) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(raw)
    names = [t.get("name") if isinstance(t, dict) else t for t in raw]
    if not all(isinstance(t, str) and t for t in names if not isinstance(t, dict)):
        raise ValueError(raw)
    if len(set(map(str, names))) != len(names):
        raise ValueError(raw)
    return list(raw)


def _source(data: object, index: int, errors: list[ConfigError]) -> SourceConfig | None:
    s = _Section(data, f"sources[{index}]", errors)
    before = len(errors)
    kind = s.get("kind", "sqlite", _choice(KINDS), 'use "sqlite" or "postgres"')
    for key in ("name", "dsn" if kind == "postgres" else "path", "tables"):
        if key not in s.data:
            errors.append(ConfigError(f"{s.prefix}.{key}", None, "required: add it"))
    name = s.get("name", "", _name, NAME_FIX)
    path = Path()
    if kind == "sqlite":
        path = s.get("path", path, _path, "give the path of the SQLite database file")
    pg = _postgres_keys(s, kind)
    modes = ("trigger", "timestamp", "logical") if kind == "postgres" else ("trigger", "timestamp")
    mode = s.get(
        "mode",
        "trigger",
        _choice(modes),
        'use "trigger" or "timestamp" (then list [[sources.tables]] with a cursor)'
        + (
            ', or "logical" (a replication slot, wal_level = logical)'
            if kind == "postgres"
            else ' ("logical" needs kind = "postgres")'
        ),
    )
    if mode == "logical":
        pg.update(_logical_keys(s))
    entries: list[Any] = s.get(
        "tables",
        [],
        _tables,
        'give a non-empty list of distinct table names, e.g. ["readings"],'
        " or [[sources.tables]] entries",
    )
    tables, stamped, images = _split_tables(
        entries, "trigger" if mode == "logical" else mode, s.prefix, errors, kind
    )
    if mode == "logical" and stamped:
        errors.append(
            ConfigError(
                f"{s.prefix}.tables",
                [t.name for t in stamped],
                "logical mode reads every listed table from the slot: give plain names, "
                "or put timestamp tables in a source of their own",
            )
        )
    if kind == "postgres":
        tables, stamped = _qualified(tables, stamped)
    page_rows = s.get("page_rows", 5000, _int(1, 1_000_000), "use an integer from 1 to 1000000")
    busy = s.get("busy_timeout", 5.0, parse_duration, DURATION_FIX)
    delete_image = _delete_image(s, kind, "row")
    snap = s.get(
        "snapshot",
        "initial",
        _choice(("initial", "never")),
        'use "initial" (capture existing rows first, default) or "never"',
    )
    s.finish(
        "name, kind, mode, tables, page_rows, snapshot, delete_image, "
        + (
            "dsn, password_file, connect_timeout, before_image"
            + (", slot, publication, heartbeat, max_slot_lag" if mode == "logical" else "")
            if kind == "postgres"
            else "path, busy_timeout"
        )
    )
    if len(errors) > before:
        return None
    return SourceConfig(
        name=name,
        path=path,
        tables=tables,
        kind=kind,
        mode=mode,
        page_rows=page_rows,
        busy_timeout=busy,
        snapshot=snap,
        delete_image=delete_image,
        delete_images=images,
        timestamp_tables=stamped,
        **pg,
    )


KINDS = ("sqlite", "postgres")


def _postgres_keys(s: _Section, kind: str) -> dict[str, Any]:
    if kind != "postgres":
        return {}
    raw = s.data.get("dsn")
    if isinstance(raw, str) and _has_password(raw):
        del s.data["dsn"]  # never echo it: the message would carry the password
        s.errors.append(
            ConfigError(
                f"{s.prefix}.dsn",
                "***",
                "remove the password from the connection string: set password_file, "
                f"EDGE_AGENT__{s.prefix.upper().replace('[', '__').replace(']', '')}__PASSWORD"
                " or libpq's PGPASSFILE",
            )
        )
    return {
        "dsn": s.get(
            "dsn",
            "",
            _dsn,
            "give a libpq connection string without a password, e.g. "
            '"postgresql://edge@127.0.0.1:5432/erp" (the password: password_file, '
            "EDGE_AGENT__SOURCES__N__PASSWORD or PGPASSFILE)",
        ),
        "password_file": s.get(
            "password_file", None, _path, "give the path of a file with the password on one line"
        ),
        "password": s.get("password", "", _string, "set it through the environment only"),
        "connect_timeout": s.get("connect_timeout", 10.0, parse_duration, DURATION_FIX),
        "before_image": s.get("before_image", False, boolean, "use true or false"),
    }


_SLOT_FIX = "use 1 to 63 lower-case letters, digits and underscores"


def _slot_name(raw: Any) -> str:
    text = _string(raw)
    if not re.fullmatch(r"[a-z0-9_]{1,63}", text):
        raise ValueError(raw)
    return text


def _publication_name(raw: Any) -> str:
    text = _string(raw)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", text):
        raise ValueError(raw)
    return text


def _logical_keys(s: _Section) -> dict[str, Any]:
    return {
        "slot": s.get("slot", "", _slot_name, _SLOT_FIX + ' (default "edge_agent_<device_id>")'),
        "publication": s.get(
            "publication",
            "edge_agent",
            _publication_name,
            "use an identifier: a letter or underscore, then letters, digits, _ or $",
        ),
        "heartbeat": s.get("heartbeat", 60.0, parse_duration, DURATION_FIX),
        "max_slot_lag": s.get("max_slot_lag", 2 * 1024**3, parse_size, SIZE_FIX),
    }


def default_slot(device_id: str) -> str:
    """``edge_agent_<device_id>``: a replication slot name is lower-case letters, digits
    and underscores, at most 63 characters."""
    return ("edge_agent_" + re.sub(r"[^a-z0-9_]", "_", device_id.lower()))[:63]


def _dsn(raw: Any) -> str:
    """A libpq connection string (URI or key=value); the server checks the rest when the
    agent connects."""
    text = _string(raw)
    dsn_parts(text)
    return text


def _has_password(dsn: str) -> bool:
    try:
        return "password" in dsn_parts(dsn)
    except ValueError:
        return False


def dsn_parts(dsn: str) -> dict[str, str]:
    """The keywords of a libpq connection string, URI (``postgresql://user:pw@host:port/db``)
    or ``key=value`` form; enough to find a password and name the database (the driver
    parses it for real, and is no import of the config's)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        url = urlsplit(dsn)
        parts = {k: v[-1] for k, v in parse_qs(url.query).items()}
        found = {
            "host": url.hostname or "",
            "port": str(url.port or ""),
            "dbname": unquote(url.path.lstrip("/")),
            "user": unquote(url.username or ""),
            "password": unquote(url.password or ""),
        }
        return {**parts, **{k: v for k, v in found.items() if v}}
    try:
        words = shlex.split(dsn)
    except ValueError as exc:
        raise ValueError(dsn) from exc
    if not all("=" in w for w in words):
        raise ValueError(dsn)
    return dict(w.split("=", 1) for w in words)


def _qualified(
    tables: tuple[str, ...], stamped: tuple[TimestampTable, ...]
) -> tuple[tuple[str, ...], tuple[TimestampTable, ...]]:
    """PostgreSQL table names are schema-qualified; a bare name means schema public."""

    def q(name: str) -> str:
        return name if "." in name else f"public.{name}"

    return tuple(map(q, tables)), tuple(replace(t, name=q(t.name)) for t in stamped)


def _delete_image(s: _Section, kind: str, default: str) -> str:
    image = s.get(
        "delete_image",
        default,
        _choice(("row", "key")),
        'use "row" (a delete carries the deleted row) or "key" (only its key: cheaper)',
    )
    if image == "key" and kind != "sqlite":
        fix = 'only SQLite sources log key-only deletes so far: use "row"'
        s.errors.append(ConfigError(f"{s.prefix}.delete_image", "key", fix))
    return image


def _split_tables(
    entries: list[Any],
    mode: str,
    prefix: str,
    errors: list[ConfigError],
    kind: str = "sqlite",
) -> tuple[tuple[str, ...], tuple[TimestampTable, ...], tuple[tuple[str, str], ...]]:
    """Short form names are trigger tables; [[sources.tables]] entries may be either
    (a trigger entry may set its own delete_image)."""
    triggers: list[str] = []
    stamped: list[TimestampTable] = []
    images: list[tuple[str, str]] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str) and mode == "trigger":
            triggers.append(entry)
            continue
        t = _Section(
            entry if isinstance(entry, dict) else {"name": entry}, f"{prefix}.tables[{i}]", errors
        )
        name = t.get("name", "", _string, "give the table name")
        table_mode = t.get(
            "mode", mode, _choice(("trigger", "timestamp")), 'use "trigger" or "timestamp"'
        )
        if table_mode == "trigger":
            if "delete_image" in t.data:
                images.append((name.lower(), _delete_image(t, kind, "row")))
            t.finish("name, mode, delete_image")
            triggers.append(name)
            continue
        if "cursor" not in t.data:
            errors.append(
                ConfigError(
                    f"{t.prefix}.cursor",
                    None,
                    "required in timestamp mode: "
                    "name the column that changes with every write, e.g. "
                    '"updated_at"',
                )
            )
        stamped.append(
            TimestampTable(
                name=name,
                cursor=t.get("cursor", "", _string, "name the cursor column"),
                key=tuple(t.get("key", [], _key_list, 'give the key columns, e.g. ["id"]')),
                lag=t.get("lag", 5.0, parse_duration, DURATION_FIX),
                deleted_flag=t.get("deleted_flag", "", _text, "name a soft-delete column or omit"),
                cursor_format=_cursor_format(t, kind),
            )
        )
        t.finish("name, mode, cursor, key, lag, deleted_flag, cursor_format")
    return tuple(triggers), tuple(stamped), tuple(images)


def _cursor_format(t: _Section, kind: str) -> str:
    if kind == "postgres":  # typed columns: always read through the raw column
        fix = "SQLite only: a PostgreSQL cursor column is typed; remove the key"
        return t.get("cursor_format", "auto", _choice(("auto",)), fix)
    return t.get("cursor_format", "auto", _choice(CURSOR_FORMATS), CURSOR_FORMAT_FIX)


def _key_list(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(k, str) and k for k in raw):
        raise ValueError(raw)
    return list(raw)


def parse_sources(data: object, errors: list[ConfigError]) -> tuple[SourceConfig, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        errors.append(ConfigError("sources", data, "use [[sources]] tables"))
        return ()
    found = [_source(item, i, errors) for i, item in enumerate(data)]
    sources = tuple(s for s in found if s is not None)
    names = [s.name for s in sources]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        errors.append(ConfigError("sources.name", dup, "source names must be unique"))
    _refuse_shared_databases(sources, errors)
    return sources


def _database_of(src: SourceConfig) -> object:
    if src.kind != "postgres":
        return src.path.expanduser().resolve()
    info = dsn_parts(src.dsn)
    return (info.get("host", ""), info.get("port", "5432"), info.get("dbname", ""))


def _refuse_shared_databases(sources: tuple[SourceConfig, ...], errors: list[ConfigError]) -> None:
    """Two sources on one SQLite file would share its change log and prune each other's
    changes; one source with both tables (or both modes) is the way."""
    seen: dict[object, str] = {}
    for src in sources:
        where = _database_of(src)
        if where in seen:
            errors.append(
                ConfigError(
                    f"sources[{src.name}].{'dsn' if src.kind == 'postgres' else 'path'}",
                    src.where,
                    f"source {seen[where]!r} already reads this database: list all its tables "
                    "in that one source (a [[sources.tables]] entry may set its own mode)",
                )
            )
        seen.setdefault(where, src.name)
