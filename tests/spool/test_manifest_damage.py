"""Issue 13 item 3: a manifest in the spool is checked against the ledger and its file
before it ships; a missing, truncated, garbage or edited one is rebuilt from them, so
the lake never gets a wrong manifest or a file without one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import make_config


def _damage(path: Path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:10])
    elif how == "garbage":
        path.write_bytes(b"\x00not json at all")
    else:  # edited: a plausible manifest that lies about the file
        data = json.loads(path.read_text())
        data["rows"] += 5
        path.write_text(json.dumps(data))


@pytest.mark.parametrize("how", ["deleted", "truncated", "garbage", "edited"])
def test_a_damaged_manifest_is_rebuilt_before_it_ships(tmp_path: Path, app_db: Path,
                                                       harness_factory: Any, how: str) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["readings"]))
    con = sqlite3.connect(app_db)
    with con:
        con.executemany("INSERT INTO readings (sensor, value) VALUES (?, ?)",
                        [(f"s{i}", i * 1.5) for i in range(40)])
    con.close()
    h.step(0.1)
    h.agent.seal_all()  # sealed into the spool, not shipped yet
    (manifest,) = (tmp_path / "state" / "spool" / "ready").rglob("*.manifest.json")
    _damage(manifest, how)

    assert h.flush().pending_files == 0

    (landed,) = (tmp_path / "lake").rglob("*.manifest.json")
    (parquet,) = (tmp_path / "lake").rglob("*.parquet")
    data = json.loads(landed.read_text())
    assert data["rows"] == pq.read_metadata(parquet).num_rows == 40
    assert data["schema_fingerprint"] == pq.read_schema(parquet).metadata[
        b"edge_agent.schema_fingerprint"].decode()
    assert data["partition"]["date"] in str(parquet)
    assert h.agent.state.counters().get("manifests_rebuilt") == 1


def test_a_sound_manifest_ships_as_it_was_written(tmp_path: Path, app_db: Path,
                                                  harness_factory: Any) -> None:
    h = harness_factory(make_config(tmp_path, app_db, ["readings"]))
    con = sqlite3.connect(app_db)
    with con:
        con.execute("INSERT INTO readings (sensor, value) VALUES ('a', 1.0)")
    con.close()
    h.step(0.1)
    h.agent.seal_all()
    (manifest,) = (tmp_path / "state" / "spool" / "ready").rglob("*.manifest.json")
    written = manifest.read_bytes()
    assert h.flush().pending_files == 0
    (landed,) = (tmp_path / "lake").rglob("*.manifest.json")
    assert landed.read_bytes() == written
    assert "manifests_rebuilt" not in h.agent.state.counters()
