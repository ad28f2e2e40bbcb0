"""Invariant 1-3 under SIGKILL: the real daemon is killed at random moments during a
random workload and restarted, many times; the lake still holds every change once."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import (
    WORKLOAD_TABLES,
    agent_cmd,
    agent_env,
    config_dict,
    run_cli,
    start_workload,
    write_config,
)
from tests.lake import assert_exact
from tests.lake_tools.silver_support import assert_silver_is


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path,
                                                                app_db: Path) -> None:
    data = config_dict(tmp_path, app_db, list(WORKLOAD_TABLES),
                       buffer={"max_file_age": "300ms", "max_file_bytes": "64KiB",
                               "row_group_bytes": "16KiB"})
    config = write_config(tmp_path, data)
    assert run_cli("triggers", "install", "--config", str(config)).returncode == 0
    rng = random.Random(1234)
    app = start_workload(app_db, seed=11, transactions=1500, pause=0.002)
    kills = 0
    log = (tmp_path / "agent.log").open("ab")
    try:
        while app.poll() is None or kills < 12:
            daemon = subprocess.Popen(agent_cmd("run", "--config", str(config)),
                                      env=agent_env(), stdout=log, stderr=log)
            time.sleep(rng.uniform(0.4, 1.6))
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
            kills += 1
    finally:
        log.close()
    expected = int(app.communicate()[0])
    flushed = run_cli("flush", "--config", str(config), "--timeout", "60")
    assert flushed.returncode == 0, flushed.stderr
    assert kills >= 12
    assert_exact(tmp_path / "lake", app_db, WORKLOAD_TABLES, expected)
    assert not list((tmp_path / "state" / "spool" / "tmp").iterdir())
    # The lake those kills made builds silver tables equal to the application's.
    silver = run_cli("lake", "silver", "--lake", str(tmp_path / "lake"), "--to",
                     str(tmp_path / "silver"))
    assert silver.returncode == 0, silver.stderr
    assert_silver_is(tmp_path / "silver", app_db)
