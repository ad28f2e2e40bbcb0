"""The config loader: defaults in code, sizes and durations, errors that name the field,
the value and the fix (all of them in one pass), environment overrides and paths."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import (
    NAME_RE,
    AgentConfig,
    BufferConfig,
    ClockConfig,
    Config,
    SinkConfig,
    SourceConfig,
    apply_env,
    config_from_dict,
    default_device_id,
    load_config,
)
from edge_agent.errors import ConfigError, ConfigErrors, toml_value
from edge_agent.units import format_size, parse_duration, parse_size
from tests.conftest import toml_text

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "config" / "edge-agent.example.toml"
KiB, MiB, GiB = 1024, 1024**2, 1024**3
SIZE_FIX = '"16MiB"'
DURATION_FIX = '"30s"'


def source(**values: Any) -> dict[str, Any]:
    return {"name": "plant", "path": "/var/lib/app/plant.db", "tables": ["readings"], **values}


def with_source(**sections: Any) -> dict[str, Any]:
    """A minimal valid document (one source) plus the given sections."""
    return {"sources": [source()], **sections}


def errors_of(data: dict[str, Any]) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as caught:
        config_from_dict(data)
    return caught.value.errors


def the_error(data: dict[str, Any]) -> ConfigError:
    errors = errors_of(data)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def write(tmp: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults ---------------------------------------------------------------------


def test_a_file_with_only_a_source_gets_the_documented_defaults() -> None:
    cfg = config_from_dict(with_source())

    assert cfg.agent == AgentConfig(
        device_id="", state_dir=Path("/var/lib/edge-agent"), poll_interval=5.0, debounce=0.2,
        shutdown_timeout=20.0, log_format="auto", log_level="info")
    assert cfg.buffer == BufferConfig(
        max_memory=16 * MiB, max_file_bytes=8 * MiB, max_file_age=30.0,
        row_group_bytes=1 * MiB, spool_quota=1 * GiB, when_full="block",
        compression="zstd", compression_level=1)
    assert cfg.clock.min_valid == date(2020, 1, 1)
    assert (cfg.sink.kind, cfg.sink.retry_min, cfg.sink.retry_max, cfg.sink.max_bandwidth) == (
        "dir", 1.0, 300.0, 0)
    assert cfg.sources == (SourceConfig(name="plant", path=Path("/var/lib/app/plant.db"),
                                        tables=("readings",), kind="sqlite", mode="trigger",
                                        page_rows=5000, busy_timeout=5.0, snapshot="initial"),)
    assert cfg.collector is None


def test_an_empty_device_id_means_the_host_name_as_a_valid_file_name() -> None:
    cfg = config_from_dict(with_source(agent={"device_id": ""}))

    assert cfg.device_id == default_device_id()
    assert NAME_RE.match(cfg.device_id)
    assert config_from_dict(with_source(agent={"device_id": "gw-001"})).device_id == "gw-001"


# --- sizes and durations ----------------------------------------------------------


@pytest.mark.parametrize(("written", "size"), [
    ("16MiB", 16 * MiB),
    ("512KiB", 512 * KiB),
    ("1GB", 1_000_000_000),
    ("640KB", 640_000),
    ("16MB", 16_000_000),
    ("1.5GiB", 3 * GiB // 2),
    ("1gib", GiB),
    (" 2 MiB ", 2 * MiB),
    ("100000B", 100_000),
    ("100000", 100_000),
    (100_000, 100_000),
])
def test_sizes_are_bytes_or_a_number_with_a_unit(written: object, size: int) -> None:
    cfg = config_from_dict(with_source(buffer={"max_memory": written}))

    assert cfg.buffer.max_memory == size


@pytest.mark.parametrize(("written", "seconds"), [
    ("200ms", 0.2),
    ("30s", 30.0),
    ("5m", 300.0),
    ("1h", 3600.0),
    ("1.5s", 1.5),
    (5, 5.0),
    (0.25, 0.25),
])
def test_durations_are_seconds_or_a_number_with_a_unit(written: object, seconds: float) -> None:
    cfg = config_from_dict(with_source(agent={"poll_interval": written}))

    assert cfg.agent.poll_interval == pytest.approx(seconds)


SIZE_UNITS = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KiB": KiB, "MiB": MiB,
              "GiB": GiB}
CASE = st.sampled_from([str, str.lower, str.upper])
SPACE = st.sampled_from(["", " ", "  "])


@given(st.integers(0, 10**6), st.sampled_from(sorted(SIZE_UNITS)), CASE, SPACE)
def test_a_size_with_any_unit_spelling_is_that_many_units_of_bytes(
        n: int, unit: str, case: Any, space: str) -> None:
    assert parse_size(f"{space}{n}{space}{case(unit)}{space}") == n * SIZE_UNITS[unit]
    assert parse_size(n * SIZE_UNITS[unit]) == n * SIZE_UNITS[unit]


@given(st.integers(0, 720), CASE)  # up to the 30-day cap, in hours
def test_the_same_duration_in_different_units_is_the_same_number_of_seconds(
        n: int, case: Any) -> None:
    seconds = float(n)
    assert parse_duration(f"{n}{case('s')}") == seconds
    assert parse_duration(f"{n}{case('m')}") == parse_duration(f"{n * 60}s") == 60 * seconds
    assert parse_duration(f"{n}{case('h')}") == parse_duration(f"{n * 60}m")
    assert math.isclose(parse_duration(f"{n * 1000}{case('ms')}"), seconds, abs_tol=1e-9)
    assert parse_duration(n) == seconds


@given(st.integers(0, 2**50))
def test_a_size_shown_by_status_parses_back_to_about_the_same_size(n: int) -> None:
    shown = format_size(n)
    back = parse_size(shown)
    if n < KiB:
        assert back == n
    else:
        # One decimal of the shown unit: at most half a tenth of that unit off.
        unit = SIZE_UNITS[re.sub(r"[\d.]", "", shown)]
        assert abs(back - n) <= unit * 0.05 + 1


# --- one bad value: the field, the value and the fix ------------------------------


BAD_VALUES = [
    ("agent", "device_id", "gw 001", "A-Z a-z 0-9"),
    ("agent", "device_id", "x" * 65, "1-64 characters"),
    ("agent", "state_dir", "", "directory path"),
    ("agent", "poll_interval", "5 minutes", DURATION_FIX),
    ("agent", "poll_interval", "5 fortnights", DURATION_FIX),
    ("agent", "poll_interval", 0, DURATION_FIX),
    ("agent", "poll_interval", -1, DURATION_FIX),
    ("agent", "poll_interval", True, DURATION_FIX),
    ("agent", "debounce", "-200ms", DURATION_FIX),
    ("agent", "shutdown_timeout", "soon", DURATION_FIX),
    ("agent", "log_format", "xml", '"json"'),
    ("agent", "log_level", "verbose", '"debug"'),
    ("buffer", "max_memory", "16 megabytes", SIZE_FIX),
    ("buffer", "max_memory", "16TiB", SIZE_FIX),
    ("buffer", "max_memory", -1, SIZE_FIX),
    ("buffer", "max_memory", 0, SIZE_FIX),
    ("buffer", "max_memory", True, SIZE_FIX),
    ("buffer", "max_file_age", "forever", DURATION_FIX),
    ("buffer", "row_group_bytes", "1e6", SIZE_FIX),
    ("buffer", "when_full", "drop", '"drop_oldest"'),
    ("buffer", "compression", "lz4", "zstd"),
    ("buffer", "compression_level", 0, "1 to 22"),
    ("buffer", "compression_level", 23, "1 to 22"),
    ("buffer", "compression_level", "high", "1 to 22"),
    ("buffer", "compression_level", 3.5, "1 to 22"),
    ("buffer", "compression_level", True, "1 to 22"),
    ("clock", "min_valid", "yesterday", '"2020-01-01"'),
    ("sink", "kind", "ftp", '"dir"'),
    ("sink", "path", "", "lake directory"),
    ("sink", "retry_min", "0s", DURATION_FIX),
    ("sink", "endpoint_url", "minio:9000", "http(s)://"),
    ("sink", "max_bandwidth", "fast", '"0" for unlimited'),
    ("source", "name", "my plant", "A-Z a-z 0-9"),
    ("source", "kind", "oracle", '"postgres"'),
    ("source", "path", "", "SQLite database file"),
    ("source", "mode", "cdc", '"timestamp"'),
    ("source", "tables", [], '["readings"]'),
    ("source", "tables", "readings", '["readings"]'),
    ("source", "tables", ["readings", "readings"], "distinct"),
    ("source", "page_rows", 0, "1 to 1000000"),
    ("source", "busy_timeout", "long", DURATION_FIX),
    ("source", "snapshot", "always", '"never"'),
]


@pytest.mark.parametrize(("section", "key", "value", "fix"), BAD_VALUES,
                         ids=[f"{s}.{k}={v!r}"[:60] for s, k, v, _ in BAD_VALUES])
def test_a_bad_value_is_refused_naming_the_field_the_value_and_the_fix(
        section: str, key: str, value: object, fix: str) -> None:
    if section == "source":
        data: dict[str, Any] = {"sources": [source(**{key: value})]}
        field = f"sources[0].{key}"
    else:
        data = with_source(**{section: {key: value}})
        field = f"{section}.{key}"

    error = the_error(data)

    assert error.field == field
    assert error.value == value
    assert f"{field} = {toml_value(value)}: " in str(error)
    assert fix in str(error)


@pytest.mark.parametrize(("key", "written"), [
    ("poll_interval", "nan"), ("poll_interval", "inf"), ("poll_interval", "-inf"),
    ("debounce", "nan"), ("debounce", "inf"), ("shutdown_timeout", "nan"),
])
def test_a_duration_that_is_not_a_finite_number_is_refused(tmp_path: Path, key: str,
                                                            written: str) -> None:
    # TOML has nan and inf. With poll_interval = nan the daemon spins at 100% CPU (its
    # sleep is select(max(0, nan)) = select(0)); with poll_interval or debounce = inf it
    # dies with OverflowError in select() (at start, or at the first write).
    path = write(tmp_path, toml_text(with_source()) + f"\n[agent]\n{key} = {written}\n")

    with pytest.raises(ConfigErrors) as caught:
        load_config(path, {})

    assert [e.field for e in caught.value.errors] == [f"agent.{key}"]
    assert DURATION_FIX in str(caught.value)


def test_a_buffer_below_64kib_is_refused_with_the_minimum() -> None:
    error = the_error(with_source(buffer={"max_memory": "1KiB"}))

    assert (error.field, error.value) == ("buffer.max_memory", 1024)
    assert "at least 64KiB" in str(error)


def test_a_spool_quota_smaller_than_two_files_is_refused_with_both_ways_out() -> None:
    error = the_error(with_source(buffer={"max_file_bytes": "8MiB", "spool_quota": "10MiB"}))

    assert (error.field, error.value) == ("buffer.spool_quota", 10 * MiB)
    assert "raise spool_quota or lower max_file_bytes" in str(error)


def test_retry_max_below_retry_min_is_refused() -> None:
    error = the_error(with_source(sink={"retry_min": "10s", "retry_max": "5s"}))

    assert (error.field, error.value) == ("sink.retry_max", 5.0)
    assert "sink.retry_min" in str(error)


def test_a_section_that_is_not_a_table_is_refused() -> None:
    error = the_error(with_source(buffer="16MiB"))

    assert (error.field, error.value) == ("buffer", "16MiB")
    assert "[section]" in str(error)


def test_a_password_in_the_file_is_refused_pointing_at_the_environment(tmp_path: Path) -> None:
    text = toml_text(with_source(sink={"kind": "mqtt", "host": "broker", "username": "gw",
                                       "password": "hunter2"}))

    with pytest.raises(ConfigErrors) as caught:
        load_config(write(tmp_path, text), {})

    assert "hunter2" not in str(caught.value)
    assert "EDGE_AGENT__SINK__PASSWORD" in str(caught.value)


# --- many errors, one pass --------------------------------------------------------


DOCS_BAD_FILE = """\
[agent]
device_id = "gw 001"
poll_interval = "5 minutes"

[buffer]
max_memory = "16MB"
max_file_bytes = "600MiB"
when_full = "drop"
compresion = "zstd"

[[sources]]
name = "plant"
path = "plant.db"
tables = []

[sink]
kind = "ftp"
retry_min = "10s"
retry_max = "5s"
"""


def test_every_problem_of_a_file_is_reported_together_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_config(write(tmp_path, DOCS_BAD_FILE), {})

    fields = [e.field for e in caught.value.errors]
    assert sorted(fields) == sorted([
        "agent.device_id", "agent.poll_interval", "buffer.when_full", "buffer.compresion",
        "buffer.spool_quota", "sources[0].tables", "sink.kind", "sink.retry_max",
    ])
    lines = str(caught.value).splitlines()
    assert len(lines) == len(fields)
    assert all(line.startswith("config: ") for line in lines)
    assert "buffer.max_memory" not in str(caught.value)  # "16MB" is valid: 16,000,000 bytes


def test_errors_of_several_sections_and_sources_come_in_one_exception() -> None:
    data = {
        "agent": {"log_level": "loud"},
        "buffer": {"compression": "brotli"},
        "sources": [source(), source(name="other", page_rows=-5), {"name": "third"}],
    }

    fields = {e.field for e in errors_of(data)}

    assert fields == {"agent.log_level", "buffer.compression", "sources[1].page_rows",
                      "sources[2].path", "sources[2].tables"}


# --- unknown keys and sections ----------------------------------------------------


@pytest.mark.parametrize(("data", "field", "known"), [
    (with_source(buffer={"compresion": "zstd"}), "buffer.compresion",
     "max_memory, max_file_bytes, max_file_age, row_group_bytes, spool_quota, when_full, "
     "compression, compression_level"),
    (with_source(agent={"statedir": "/x"}), "agent.statedir", "state_dir"),
    (with_source(clock={"min_date": "2020-01-01"}), "clock.min_date", "min_valid"),
    (with_source(sink={"url": "/srv/lake"}), "sink.url", "path"),
    ({"sources": [source(table=["x"])]}, "sources[0].table", "tables"),
])
def test_an_unknown_key_is_reported_with_the_known_keys(data: dict[str, Any], field: str,
                                                        known: str) -> None:
    error = the_error(data)

    assert error.field == field
    assert "unknown key" in str(error)
    assert known in str(error)


def test_an_unknown_section_is_reported_with_the_known_sections() -> None:
    error = the_error(with_source(buffers={"max_memory": "1MiB"}))

    assert error.field == "buffers"
    assert "unknown section" in str(error)
    for known in ("agent", "buffer", "clock", "sink", "sources"):
        assert known in str(error)


# --- sources ----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["name", "path", "tables"])
def test_a_source_without_a_required_key_is_refused(missing: str) -> None:
    entry = source()
    del entry[missing]

    error = the_error({"sources": [entry]})

    assert error.field == f"sources[0].{missing}"
    assert "required" in str(error)


def test_an_empty_source_names_all_three_required_keys() -> None:
    fields = [e.field for e in errors_of({"sources": [{}]})]

    assert sorted(fields) == ["sources[0].name", "sources[0].path", "sources[0].tables"]


def test_two_sources_with_the_same_name_are_refused() -> None:
    data = {"sources": [source(), source(path="/var/lib/app/other.db")]}

    error = the_error(data)

    assert (error.field, error.value) == ("sources.name", "plant")
    assert "unique" in str(error)
    other = source(name="other", path="/var/lib/app/other.db")
    both = config_from_dict({"sources": [source(), other]})
    assert [s.name for s in both.sources] == ["plant", "other"]


# --- environment overrides --------------------------------------------------------


def two_sources(tmp: Path) -> Path:
    return write(tmp, toml_text({
        "buffer": {"max_memory": "16MiB"},
        "sources": [source(), source(name="line2", path="/var/lib/app/line2.db")],
    }))


def test_environment_overrides_win_over_the_file(tmp_path: Path) -> None:
    cfg = load_config(two_sources(tmp_path), {
        "EDGE_AGENT__BUFFER__MAX_MEMORY": "32MiB",
        "EDGE_AGENT__AGENT__LOG_LEVEL": "debug",
        "EDGE_AGENT__AGENT__POLL_INTERVAL": "2s",
        "EDGE_AGENT__SINK__PATH": "/srv/lake",
        "EDGE_AGENT__BUFFER__COMPRESSION_LEVEL": "3",
    })

    assert cfg.buffer.max_memory == 32 * MiB
    assert cfg.agent.log_level == "debug"
    assert cfg.agent.poll_interval == 2.0
    assert cfg.sink.path == Path("/srv/lake")
    assert cfg.buffer.compression_level == 3


def test_environment_overrides_address_sources_by_index(tmp_path: Path) -> None:
    cfg = load_config(two_sources(tmp_path), {
        "EDGE_AGENT__SOURCES__0__PATH": "/data/plant.db",
        "EDGE_AGENT__SOURCES__1__TABLES": " readings, alarms ,",
        "EDGE_AGENT__SOURCES__1__PAGE_ROWS": "100",
    })

    plant, line2 = cfg.sources
    assert (plant.path, plant.tables) == (Path("/data/plant.db"), ("readings",))
    assert (line2.path, line2.tables, line2.page_rows) == (
        Path("/var/lib/app/line2.db"), ("readings", "alarms"), 100)


@pytest.mark.parametrize("index", ["2", "9", "x", "-1"])
def test_an_override_of_a_source_that_is_not_in_the_file_is_refused(tmp_path: Path,
                                                                     index: str) -> None:
    name = f"EDGE_AGENT__SOURCES__{index}__PATH"

    with pytest.raises(ConfigErrors) as caught:
        load_config(two_sources(tmp_path), {name: "/data/plant.db"})

    assert str(caught.value) == f'config: {name} = "/data/plant.db": no such source index'


def test_a_bad_override_names_the_config_field_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_config(two_sources(tmp_path), {"EDGE_AGENT__BUFFER__MAX_MEMORY": "lots",
                                            "EDGE_AGENT__AGENT__POLL_INTERVAL": "2 weeks"})

    assert {e.field: e.value for e in caught.value.errors} == {
        "buffer.max_memory": "lots", "agent.poll_interval": "2 weeks"}
    assert SIZE_FIX in str(caught.value) and DURATION_FIX in str(caught.value)


def test_a_misspelt_override_is_reported_as_an_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_config(two_sources(tmp_path), {"EDGE_AGENT__BUFFER__MAX_MEM": "32MiB"})

    assert [e.field for e in caught.value.errors] == ["buffer.max_mem"]
    assert "max_memory" in str(caught.value)


def test_an_override_below_a_plain_value_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, toml_text(with_source(agent={"state_dir": "/var/lib/edge-agent"})))

    with pytest.raises(ConfigErrors) as caught:
        load_config(path, {"EDGE_AGENT__AGENT__STATE_DIR__SUB__DIR": "/x"})

    assert "EDGE_AGENT__AGENT__STATE_DIR__SUB__DIR" in str(caught.value)


def test_other_environment_variables_are_ignored(tmp_path: Path) -> None:
    path = two_sources(tmp_path)
    environ = {"EDGE_AGENT_CONFIG": "/etc/other.toml", "EDGE_AGENTX__BUFFER__MAX_MEMORY": "1",
               "HOME": "/root", "PATH": "/usr/bin"}

    assert load_config(path, environ) == load_config(path, {})


def test_apply_env_lower_cases_the_parts_and_keeps_the_value() -> None:
    data: dict[str, Any] = {"sources": [source()]}

    apply_env(data, {"EDGE_AGENT__Agent__Log_Level": "WARNING",
                     "EDGE_AGENT__SOURCES__0__NAME": "Plant-2"})

    assert data["agent"] == {"log_level": "WARNING"}
    assert data["sources"][0]["name"] == "Plant-2"


# --- files and paths --------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_file_not_the_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, toml_text({
        "agent": {"state_dir": "state"},
        "sources": [source(path="../data/plant.db")],
        "sink": {"path": "lake"},
    }), name="etc/config.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)

    cfg = load_config(Path("etc/config.toml"), {})
    monkeypatch.chdir(elsewhere)
    again = load_config(tmp_path / "etc" / "config.toml", {})

    etc = tmp_path.resolve() / "etc"
    assert cfg.agent.state_dir == etc / "state"
    assert cfg.sources[0].path == tmp_path.resolve() / "data" / "plant.db"
    assert cfg.sink.path == etc / "lake"
    assert again == cfg


def test_absolute_and_home_paths_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path, toml_text({
        "agent": {"state_dir": "~/edge-state"},
        "sources": [source(path="/var/lib/app/plant.db")],
    }))

    cfg = load_config(path, {})

    assert cfg.agent.state_dir == Path.home() / "edge-state"
    assert cfg.sources[0].path == Path("/var/lib/app/plant.db")


def test_relative_paths_from_the_environment_are_relative_to_the_config_file(
        tmp_path: Path) -> None:
    path = write(tmp_path, toml_text(with_source()), name="etc/config.toml")

    cfg = load_config(path, {"EDGE_AGENT__SINK__PATH": "lake",
                             "EDGE_AGENT__SOURCES__0__PATH": "plant.db"})

    assert cfg.sink.path == tmp_path.resolve() / "etc" / "lake"
    assert cfg.sources[0].path == tmp_path.resolve() / "etc" / "plant.db"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(ConfigErrors) as caught:
        load_config(missing, {})

    assert str(caught.value) == f"config: --config = {toml_value(str(missing))}: no such file"


def test_a_file_that_is_not_toml_is_named_with_the_parse_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[agent\nstate_dir = 1\n")

    with pytest.raises(ConfigErrors) as caught:
        load_config(path, {})

    assert str(path) in str(caught.value)
    assert "not valid TOML" in str(caught.value)
    assert "line 1" in str(caught.value)


def test_a_directory_given_as_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_config(tmp_path, {})

    assert f"--config = {toml_value(str(tmp_path))}: cannot read it" in str(caught.value)


# --- the example file -------------------------------------------------------------


def test_the_example_config_loads_and_shows_the_code_defaults() -> None:
    cfg = load_config(EXAMPLE_CONFIG, {})

    assert isinstance(cfg, Config)
    # Its [agent] keeps device_id = "" and the default state_dir: all of it is default.
    assert cfg.agent == AgentConfig()
    assert cfg.buffer == BufferConfig()
    assert cfg.clock == ClockConfig()
    # It points the sink at /srv/lake; every other sink key it shows is the default.
    assert cfg.sink.path == Path("/srv/lake")
    assert replace(cfg.sink, path=SinkConfig().path) == SinkConfig()
    (plant,) = cfg.sources
    assert (plant.name, plant.path, plant.tables) == (
        "plant", Path("/var/lib/app/plant.db"), ("readings", "alarms"))
    assert plant == SourceConfig(name=plant.name, path=plant.path, tables=plant.tables)


@pytest.mark.parametrize("value", ["31d", "800h", 10**9])
def test_absurdly_long_durations_are_refused(value: object) -> None:
    with pytest.raises(ConfigErrors, match=r"agent\.poll_interval .*at most 30 days"):
        config_from_dict({"agent": {"poll_interval": value}})


def test_a_plain_number_string_is_seconds_so_env_overrides_need_no_unit(tmp_path: Path) -> None:
    cfg = load_config(two_sources(tmp_path), {"EDGE_AGENT__AGENT__POLL_INTERVAL": "2"})
    assert cfg.agent.poll_interval == 2.0


def test_gzip_levels_above_9_are_refused() -> None:
    with pytest.raises(ConfigErrors, match=r"buffer\.compression_level = 12: gzip takes"):
        config_from_dict({"buffer": {"compression": "gzip", "compression_level": 12}})


@pytest.mark.parametrize(("data", "wanted", "unwanted"), [
    ({"buffer": {"max_memory": True}}, "buffer.max_memory = true:", "True"),
    ({"bogus": {"a": 1}}, "[bogus]: unknown section", "{'a'"),
    ({"bogus": {"a": 1}}, "agent, buffer, clock", "['agent'"),
    ({"agent": {"device_id": "x y"}}, 'agent.device_id = "x y":', "'x y'"),
])
def test_messages_show_values_as_toml_not_python(data: dict[str, Any], wanted: str,
                                                 unwanted: str) -> None:
    """Issue 12.7: a user reads TOML, so the message shows TOML (`true`, "text", a
    section by its name), never a Python repr."""
    with pytest.raises(ConfigErrors) as caught:
        config_from_dict({"sources": [], **data})
    text = str(caught.value)
    assert wanted in text
    assert unwanted not in text


def test_two_sources_on_one_database_file_are_refused(tmp_path: Path) -> None:
    """Issue 12.9: they would share one change log, and `triggers uninstall --drop-log`
    on one reported (and dropped) the other's."""
    db = tmp_path / "app.db"
    data = {"sources": [
        {"name": "a", "path": str(db), "tables": ["t1"]},
        {"name": "b", "path": str(tmp_path / "." / "app.db"), "tables": ["t2"]},
    ]}
    with pytest.raises(ConfigErrors) as caught:
        config_from_dict(data)
    text = str(caught.value)
    assert "sources[b].path" in text and "'a' already reads this database" in text


# --- PostgreSQL sources --------------------------------------------------------------
def pg_source(**values: Any) -> dict[str, Any]:
    return {"name": "erp", "kind": "postgres", "dsn": "postgresql://edge@127.0.0.1:5432/erp",
            "tables": ["orders", "plant.lines"], **values}


def test_a_postgres_source_names_its_tables_with_their_schema() -> None:
    stamped = {"name": "events", "mode": "timestamp", "cursor": "at"}
    cfg = config_from_dict({"sources": [pg_source(tables=["orders", "plant.lines", stamped])]})
    src = cfg.sources[0]
    assert (src.kind, src.tables) == ("postgres", ("public.orders", "plant.lines"))
    assert [t.name for t in src.timestamp_tables] == ["public.events"]
    assert src.where == "postgresql://edge@127.0.0.1:5432/erp"


@pytest.mark.parametrize(("values", "field", "fix"), [
    ({"dsn": "postgresql://edge:secret@db/erp"}, "sources[0].dsn", "SOURCES__0__PASSWORD"),
    ({"dsn": "host=db password=secret"}, "sources[0].dsn", "remove the password"),
    ({"dsn": "not a dsn"}, "sources[0].dsn", "libpq connection string"),
    ({"path": "/x.db"}, "sources[0].path", "unknown key"),
])
def test_a_bad_postgres_source_is_refused_with_the_fix(values: dict[str, Any], field: str,
                                                       fix: str) -> None:
    error = the_error({"sources": [pg_source(**values)]})
    assert error.field == field
    assert fix in str(error)
    assert "secret" not in str(error)


def test_a_missing_dsn_is_named() -> None:
    source = pg_source()
    del source["dsn"]
    assert the_error({"sources": [source]}).field == "sources[0].dsn"


def test_two_sources_on_one_postgres_database_are_refused() -> None:
    other = pg_source(name="erp2", dsn="host=127.0.0.1 port=5432 dbname=erp user=other")
    error = the_error({"sources": [pg_source(), other]})
    assert error.field == "sources[erp2].dsn"
    assert "already reads this database" in str(error)


def test_a_postgres_password_comes_from_a_file_or_the_environment_never_the_config(
        tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    (tmp_path / "pw").write_text("s3cret\n")
    path.write_text(toml_text({"sources": [pg_source(password_file="pw")]}))
    assert load_config(path, {}).sources[0].password == "s3cret"
    env = {"EDGE_AGENT__SOURCES__0__PASSWORD": "from-env"}
    path.write_text(toml_text({"sources": [pg_source()]}))
    assert load_config(path, env).sources[0].password == "from-env"
    path.write_text(toml_text({"sources": [pg_source(password="inline")]}))
    with pytest.raises(ConfigErrors, match="EDGE_AGENT__SOURCES__0__PASSWORD"):
        load_config(path, {})


# --- timestamp tables: cursor_format ------------------------------------------------
STAMPED = {"name": "readings", "mode": "timestamp", "cursor": "updated_at"}


def test_cursor_format_defaults_to_auto_and_takes_a_declared_format() -> None:
    cfg = config_from_dict({"sources": [source(tables=[STAMPED, {**STAMPED, "name": "b",
                                                                 "cursor_format": "epoch_s"}])]})
    assert [t.cursor_format for t in cfg.sources[0].timestamp_tables] == ["auto", "epoch_s"]


def test_a_bad_cursor_format_is_refused_naming_the_field_the_value_and_the_fix() -> None:
    error = the_error({"sources": [source(tables=[{**STAMPED, "cursor_format": "iso"}])]})
    assert error.field == "sources[0].tables[0].cursor_format"
    assert error.value == "iso"
    assert '"epoch_ms"' in str(error) and '"auto"' in str(error)


def test_a_postgres_table_refuses_a_cursor_format() -> None:
    stamped = {"name": "events", "mode": "timestamp", "cursor": "at", "cursor_format": "epoch_ms"}
    error = the_error({"sources": [pg_source(tables=[stamped])]})
    assert error.field == "sources[0].tables[0].cursor_format"
    assert "SQLite only" in str(error)


# --- trigger tables: delete_image per table ------------------------------------------
def test_delete_image_per_table_overrides_the_source_default() -> None:
    cfg = config_from_dict({"sources": [source(delete_image="key", tables=[
        "a", {"name": "b", "delete_image": "row"}, {"name": "c", "mode": "trigger"}])]})
    src = cfg.sources[0]
    assert src.tables == ("a", "b", "c")
    assert [src.key_only_deletes(t) for t in ("a", "b", "c", "B")] == [True, False, True, False]
    plain = config_from_dict({"sources": [source(tables=["a", {"name": "b",
                                                               "delete_image": "key"}])]})
    assert [plain.sources[0].key_only_deletes(t) for t in ("a", "b")] == [False, True]


def test_a_bad_table_delete_image_is_refused_naming_the_field_the_value_and_the_fix() -> None:
    error = the_error({"sources": [source(tables=[{"name": "b", "delete_image": "none"}])]})
    assert error.field == "sources[0].tables[0].delete_image"
    assert error.value == "none"
    assert '"row"' in str(error) and '"key"' in str(error)


def test_a_timestamp_or_postgres_table_refuses_delete_image() -> None:
    error = the_error({"sources": [source(tables=[{**STAMPED, "delete_image": "key"}])]})
    assert error.field == "sources[0].tables[0].delete_image"
    assert "unknown key" in str(error)  # timestamp mode sees deletes only as soft deletes
    error = the_error({"sources": [pg_source(tables=[{"name": "t", "delete_image": "key"}])]})
    assert error.field == "sources[0].tables[0].delete_image"
    assert "SQLite" in str(error)
