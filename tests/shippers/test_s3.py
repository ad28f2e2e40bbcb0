"""The S3 sink end to end against a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge_agent.spool.state import READY
from tests.conftest import WORKLOAD_TABLES, make_config, run_workload
from tests.lake import assert_exact
from tests.servers import MotoS3, TcpProxy


def s3_sink(url: str, bucket: str, **extra: str) -> dict[str, str]:
    return {"kind": "s3", "bucket": bucket, "endpoint_url": url, "region": "us-east-1",
            "addressing_style": "path", **extra}


@pytest.mark.usefixtures("s3_env")
def test_workload_through_s3_lands_exactly_once(tmp_path: Path, app_db: Path, moto_s3: MotoS3,
                                                bucket: str, harness_factory) -> None:
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES),
                      sink=s3_sink(moto_s3.url, bucket, max_bandwidth="50MiB"))
    h = harness_factory(cfg)
    h.step()
    expected = run_workload(app_db, seed=31, transactions=500)
    assert h.flush().ok
    keys = moto_s3.download(bucket, tmp_path / "fetched")
    assert all(k.startswith("bronze/app/") for k in keys)
    assert sum(k.endswith(".manifest.json") for k in keys) == sum(k.endswith(".parquet")
                                                                  for k in keys)
    assert_exact(tmp_path / "fetched", app_db, WORKLOAD_TABLES, expected)


@pytest.mark.usefixtures("s3_env")
def test_network_cut_mid_upload_loses_and_duplicates_nothing(
        tmp_path: Path, app_db: Path, moto_s3: MotoS3, bucket: str, harness_factory) -> None:
    proxy = TcpProxy(moto_s3.port)
    proxy.start()
    cfg = make_config(tmp_path, app_db, list(WORKLOAD_TABLES),
                      buffer={"max_file_bytes": "32KiB", "row_group_bytes": "8KiB"},
                      sink=s3_sink(proxy.url, bucket))
    h = harness_factory(cfg)
    h.step()
    expected = run_workload(app_db, seed=32, transactions=600)
    cuts = 0
    for _ in range(40):
        timer = threading.Timer(0.005, proxy.stop)  # cut while the step is uploading
        timer.start()
        summary = h.step(advance=1.1)
        timer.join()
        cuts += bool(summary.errors)
        proxy.start()
        if not h.agent.state.files(READY) and summary.caught_up and not h.agent.writer.open:
            break
    assert cuts > 0, "no upload was interrupted"
    assert h.flush().ok
    moto_s3.download(bucket, tmp_path / "fetched")
    assert_exact(tmp_path / "fetched", app_db, WORKLOAD_TABLES, expected)
    proxy.stop()


def _capture_while_sink_fails(tmp_path: Path, app_db: Path, sink: dict[str, str],
                              harness_factory) -> tuple[str, int]:
    cfg = make_config(tmp_path, app_db, ["events"], sink=sink)
    h = harness_factory(cfg)
    h.step()
    expected = run_workload(app_db, seed=33, transactions=50)
    errors: list[str] = []
    for _ in range(5):
        errors += h.step(advance=2.0).errors
    assert h.agent.state.files(READY), "captured files wait in the spool"
    notes = h.agent.state.notes()
    assert notes["sink.last_error"][0] == errors[-1]
    return errors[-1], expected


@pytest.mark.usefixtures("s3_env")
def test_missing_bucket_is_explained_and_capture_goes_on(tmp_path: Path, app_db: Path,
                                                         moto_s3: MotoS3,
                                                         harness_factory) -> None:
    error, _ = _capture_while_sink_fails(tmp_path, app_db, s3_sink(moto_s3.url, "no-such-bucket"),
                                         harness_factory)
    assert "bucket 'no-such-bucket' does not exist" in error and "sink.bucket" in error


@pytest.mark.usefixtures("s3_env")
def test_unreachable_endpoint_is_explained_and_capture_goes_on(tmp_path: Path, app_db: Path,
                                                               harness_factory) -> None:
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    error, _ = _capture_while_sink_fails(tmp_path, app_db, s3_sink(url, "lake"), harness_factory)
    assert "cannot reach" in error and "sink.endpoint_url" in error


@pytest.mark.usefixtures("s3_env")
def test_wrong_credentials_are_explained_and_capture_goes_on(
        tmp_path: Path, app_db: Path, harness_factory) -> None:
    server = MotoS3(tmp_path, free_actions=1)
    try:
        server.client().create_bucket(Bucket="lake")  # the one free action
        error, _ = _capture_while_sink_fails(
            tmp_path, app_db, s3_sink(server.url, "lake"), harness_factory)
        assert "access key is not known" in error or "access denied" in error
    finally:
        server.stop()
