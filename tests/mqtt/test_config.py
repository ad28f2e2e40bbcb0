"""The [sink] mqtt keys and the [collector] section: defaults, secrets, and errors
that name the field, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import config_from_dict, load_config
from edge_agent.errors import ConfigErrors
from tests.conftest import run_cli, toml_text


def errors_of(data: dict) -> str:
    with pytest.raises(ConfigErrors) as info:
        config_from_dict(data)
    return str(info.value)


def test_mqtt_sink_defaults_fit_aws_iot_core() -> None:
    sink = config_from_dict({"sink": {"kind": "mqtt", "host": "broker.example"}}).sink
    assert sink.chunk_bytes == 120 * 1024 < 128_000
    assert (sink.topic_prefix, sink.max_inflight, sink.ack_timeout) == ("edge", 16, 30.0)
    assert sink.max_files_in_flight == 4
    assert sink.broker.effective_port == 1883
    tls = config_from_dict({"sink": {"kind": "mqtt", "host": "b", "tls": True}}).sink
    assert tls.broker.effective_port == 8883


@pytest.mark.parametrize(("sink", "message"), [
    ({"kind": "mqtt"}, 'sink.host = "": required for kind = "mqtt"'),
    ({"kind": "mqtt", "host": "b", "topic_prefix": "a/#"}, 'sink.topic_prefix = "a/#"'),
    ({"kind": "mqtt", "host": "b", "chunk_bytes": "200MiB"}, "sink.chunk_bytes = 209715200"),
    ({"kind": "mqtt", "host": "b", "ca_file": "/ca.pem"}, "set tls = true"),
    ({"kind": "mqtt", "host": "b", "tls": True, "cert_file": "/c.pem"},
     "needs both cert_file and key_file"),
    ({"kind": "mqtt", "host": "b", "password_file": "/p"}, "a password needs a user name"),
    ({"kind": "mqtt", "host": "b", "port": 70000}, "sink.port = 70000"),
    ({"kind": "mqtt", "host": "b", "max_files_in_flight": 0},
     "sink.max_files_in_flight = 0"),
])
def test_bad_mqtt_sink_keys_name_the_fix(sink: dict, message: str) -> None:
    assert message in errors_of({"sink": sink})


def test_collector_section_needs_a_lake_and_consistent_bounds() -> None:
    text = errors_of({"collector": {"share_group": "a/b", "max_staging_bytes": "1MiB"}})
    assert "collector.lake: required" in text
    assert 'collector.share_group = "a/b"' in text
    assert "collector.max_staging_bytes" in text and "at least one whole file" in text
    cfg = config_from_dict({"collector": {"lake": "/srv/lake"}}).collector
    assert cfg is not None and cfg.broker.section == "collector"


def write(tmp: Path, data: dict) -> Path:
    path = tmp / "c.toml"
    path.write_text(toml_text(data))
    return path


def test_a_password_in_the_file_is_refused_and_env_or_file_supply_it(tmp_path: Path) -> None:
    sink = {"kind": "mqtt", "host": "b", "username": "gw"}
    with pytest.raises(ConfigErrors, match=r'sink.password = "\*\*\*".*EDGE_AGENT__SINK__PASSWORD'):
        load_config(write(tmp_path, {"sink": {**sink, "password": "hunter2"}}), {})
    from_env = load_config(write(tmp_path, {"sink": sink}), {"EDGE_AGENT__SINK__PASSWORD": "pw"})
    assert from_env.sink.password == "pw" and "pw" not in repr(from_env)
    (tmp_path / "secret").write_text("from-file\nignored\n")
    from_file = load_config(write(tmp_path, {"sink": {**sink, "password_file": "secret"}}), {})
    assert from_file.sink.password == "from-file"
    assert from_file.sink.password_file == tmp_path / "secret"  # relative to the config file
    with pytest.raises(ConfigErrors, match=r"sink.password_file = .*cannot read it"):
        load_config(write(tmp_path, {"sink": {**sink, "password_file": "nope"}}), {})


def test_collect_without_a_collector_section_exits_2_with_the_fix(tmp_path: Path) -> None:
    result = run_cli("collect", "--config", str(write(tmp_path, {"agent": {}})))
    assert result.returncode == 2
    assert "[collector] section" in result.stderr and "docs/mqtt.md" in result.stderr


def test_the_collector_example_config_loads_and_shows_every_key() -> None:
    import dataclasses
    import re

    from edge_agent.config_mqtt import CollectorConfig
    from tests.conftest import ROOT

    example = ROOT / "config" / "collector.example.toml"
    cfg = load_config(example, {}).collector
    assert cfg is not None and cfg.lake == Path("/srv/lake")
    text = example.read_text()
    shown = [f.name for f in dataclasses.fields(CollectorConfig) if f.name != "password"]
    missing = [k for k in shown if not re.search(rf"^{k} = ", text, re.M)]
    assert not missing
