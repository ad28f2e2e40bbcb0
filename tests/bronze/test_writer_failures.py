"""Failures inside the bronze writer: a seal whose last row-group write fails."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from edge_agent.bronze.schema import Envelope, batch_schema, to_batch
from edge_agent.bronze.writer import BronzeWriter
from edge_agent.sources.sqlite import Column, TableShape
from tests.conftest import NOW_MS, make_config


def test_seal_that_fails_closes_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         app_db: Path) -> None:
    """BronzeWriter.seal pops the file before writing its last row group: when that
    write fails, the ParquetWriter and its fd stay open and the temp file stays on disk
    (uncounted by the quota) until the next start."""
    cfg = make_config(tmp_path, app_db, ["readings"])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    w = BronzeWriter(tmp, cfg.buffer)
    schema = batch_schema(TableShape("t", (Column("id", "INTEGER", 1),)).spec())
    big = [(i, 1, "c", NOW_MS, i) for i in range(1, 20001)]  # over row_group_bytes (64 KiB)
    w.add("s", schema, "2025-11-24", to_batch(schema, big, Envelope("d", "s", NOW_MS)), 0.0)
    assert list(tmp.iterdir()), "a row group was written: the file exists on disk now"
    w.add("s", schema, "2025-11-24", to_batch(schema, [(20001, 1, "c", NOW_MS, 2)],
                                              Envelope("d", "s", NOW_MS)), 0.0)
    fds_before = len(os.listdir("/proc/self/fd"))

    def enospc(self, f, table):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(BronzeWriter, "_write", enospc)
    with pytest.raises(OSError):
        w.seal(("s", "t"))
    assert list(tmp.iterdir()) == [], "the temp file of the failed seal was left behind"
    assert len(os.listdir("/proc/self/fd")) < fds_before, "its fd was not closed"
