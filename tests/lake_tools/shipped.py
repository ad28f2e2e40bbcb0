"""Lakes shipped by a real agent for the lake tools' tests: a workload captured and
flushed into the dir sink (or the moto S3 server), and what a `lake` command needs to
read an S3 lake."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_agent.config import Config
from tests.conftest import WORKLOAD_TABLES, make_config, run_workload
from tests.shippers.test_s3 import s3_sink

SMALL_FILES = {"max_file_bytes": "16KiB", "row_group_bytes": "8KiB"}


def shipped(tmp_path: Path, app_db: Path, harness_factory: Any, seed: int,
            transactions: int, **sections: Any) -> tuple[Config, Any]:
    """(the config, the harness) after a random workload was captured and flushed."""
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES), **sections)
    h = harness_factory(cfg)
    h.step()
    run_workload(app_db, seed=seed, transactions=transactions)
    h.step(0.1)
    assert h.flush().ok
    return cfg, h


def s3_lake(tmp_path: Path, app_db: Path, harness_factory: Any, moto_s3: Any, bucket: str,
            seed: int, transactions: int = 200) -> tuple[str, dict[str, str]]:
    """(the lake's s3:// URL, the CLI's environment) after a workload was shipped."""
    shipped(tmp_path, app_db, harness_factory, seed, transactions, buffer=SMALL_FILES,
            sink=s3_sink(moto_s3.url, bucket, prefix="fleet"))
    env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                      "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    return f"s3://{bucket}/fleet", env
