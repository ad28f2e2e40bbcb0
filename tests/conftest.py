"""Shared fixtures: real SQLite files, an in-process agent on an injected clock,
and helpers to run the real `edge-agent` process."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from edge_agent.clock import ManualClock
from edge_agent.config import Config, config_from_dict
from edge_agent.runtime.agent import Agent
from edge_agent.shippers.factory import build_shipper
from edge_agent.spool.statedir import StateDir
from tests import workload
from tests.children import ROOT, agent_cmd, agent_env
from tests.servers import ACCESS_KEY, SECRET_KEY, MotoS3, Postgres
from tests.tomltext import toml_text

# Shared, noisy machines and arm64 emulation: property tests get no per-example deadline.
settings.register_profile("edge-agent", deadline=None)
settings.load_profile("edge-agent")
NOW_MS = 1_764_000_000_000  # 2025-11-24, a plausible synced clock


def config_dict(tmp: Path, db: Path, tables: list[str], **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "agent": {"device_id": "gw-test", "state_dir": str(tmp / "state"),
                  "poll_interval": "200ms", "debounce": "20ms", "shutdown_timeout": "10s"},
        "buffer": {"max_memory": "1MiB", "max_file_bytes": "256KiB", "max_file_age": "1s",
                   "row_group_bytes": "64KiB", "spool_quota": "64MiB"},
        "sources": [{"name": "app", "path": str(db), "tables": tables, "page_rows": 500}],
        "sink": {"kind": "dir", "path": str(tmp / "lake"), "create": True, "retry_min": "50ms",
                 "retry_max": "500ms"},
    }
    for section, values in sections.items():
        if section == "source":
            data["sources"][0].update(values)
        else:
            data.setdefault(section, {}).update(values)
    return data


def make_config(tmp: Path, db: Path, tables: list[str], **sections: Any) -> Config:
    return config_from_dict(config_dict(tmp, db, tables, **sections))


def write_config(tmp: Path, data: dict[str, Any]) -> Path:
    path = tmp / "config.toml"
    path.write_text(toml_text(data), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """One real S3-compatible server (moto) for the session; tests use their own buckets."""
    server = MotoS3(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials from the environment, as on a gateway; no shared files of the host."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


_buckets = itertools.count()


@pytest.fixture
def bucket(moto_s3: MotoS3) -> str:
    name = f"lake-{next(_buckets)}"
    moto_s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    """A real SQLite application database (WAL) with the workload's tables."""
    db = tmp_path / "app.db"
    workload.create(db)
    return db


WORKLOAD_TABLES = {
    "readings": ["id"],
    'odd "table" ü': ["key part", 'qu"ote'],
    "events": ["id"],
}


class Harness:
    """An agent driven one step at a time on a manual clock."""

    def __init__(self, cfg: Config, clock: ManualClock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or ManualClock(NOW_MS, 1000.0)
        self.statedir = StateDir(cfg.agent.state_dir)
        self.agent = self.open()

    def open(self) -> Agent:
        return Agent(self.cfg, self.clock, build_shipper(self.cfg.sink), self.statedir,
                     sleep=self.clock.advance)

    def step(self, advance: float = 0.0) -> Any:
        self.clock.advance(advance)
        return self.agent.step(self.clock.monotonic())

    def flush(self) -> Any:
        return self.agent.flush(self.clock.monotonic() + 30)

    def restart(self) -> None:
        """Simulate a crash: drop the agent without closing it cleanly (its database
        connections are closed: that seals or records nothing)."""
        for pipe in self.agent.pipelines.values():
            pipe.close()
        self.agent.writer.abort()
        self.agent.state.close()
        self.agent = self.open()

    def close(self) -> None:
        self.agent.close()


@pytest.fixture
def harness_factory() -> Iterator[Any]:
    made: list[Harness] = []

    def make(cfg: Config, clock: ManualClock | None = None) -> Harness:
        h = Harness(cfg, clock)
        made.append(h)
        return h

    yield make
    for h in made:
        with contextlib.suppress(Exception):  # already closed by the test
            h.close()


def run_cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(agent_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=agent_env(**env), check=False)


def run_workload(db: Path, seed: int, transactions: int, pause: float = 0.0) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "tests.workload", str(db), str(seed), str(transactions),
         "--pause", str(pause)],
        capture_output=True, text=True, check=True, cwd=ROOT, env=agent_env(),
    )
    return int(out.stdout.strip())


def start_workload(db: Path, seed: int, transactions: int,
                   pause: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workload", str(db), str(seed), str(transactions),
         "--pause", str(pause)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=agent_env(),
    )


# --- MQTT: a real Mosquitto broker and collectors ---------------------------------
_mqtt_prefixes = itertools.count()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Mosquitto broker (anonymous, plain TCP) for the session; each test uses its
    own topic prefix (the ``mqtt_prefix`` fixture), so tests never see each other's
    messages. Tests that kill the broker start their own."""
    from tests.servers import Mosquitto

    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.close()


@pytest.fixture
def mqtt_prefix() -> str:
    return f"t{os.getpid()}x{next(_mqtt_prefixes)}/edge"


@pytest.fixture
def collector_factory() -> Iterator[Any]:
    """Start in-process collectors (real loop, own thread); all stop after the test."""
    from edge_agent.lake.collect import Collector
    from tests.mqtt.support import CollectorThread

    started: list[Any] = []

    def start(cfg: Any) -> Any:
        thread = CollectorThread(Collector(cfg)).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    yield server
    server.remove()


@pytest.fixture
def pg_db(postgres: Postgres) -> str:
    """A fresh database on the session's server; its DSN."""
    return postgres.create_database(f"t{uuid.uuid4().hex[:12]}")
