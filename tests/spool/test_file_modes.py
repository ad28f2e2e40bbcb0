"""Issue 13 item 12: what the agent writes is not world-readable, whatever the umask:
files 0640, directories 0750 (the state directory too)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from tests.conftest import make_config


def test_spool_lake_and_state_are_not_world_readable(tmp_path: Path, app_db: Path,
                                                     harness_factory: Any) -> None:
    old = os.umask(0o022)
    try:
        h = harness_factory(make_config(tmp_path, app_db, ["readings"],
                                        buffer={"max_file_age": "1h"}))
        con = sqlite3.connect(app_db)
        with con:
            con.execute("INSERT INTO readings (sensor, value) VALUES ('a', 1.0)")
        con.close()
        h.step(0.1)
        h.agent.seal_all()
        spool = tmp_path / "state" / "spool" / "ready"
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in spool.rglob("*")}
        assert any(p.suffix == ".parquet" for p in modes)
        assert h.flush().pending_files == 0
    finally:
        os.umask(old)
    modes.update({p: stat.S_IMODE(p.stat().st_mode)
                  for p in (tmp_path / "lake" / "bronze").rglob("*")})
    modes[tmp_path / "state"] = stat.S_IMODE((tmp_path / "state").stat().st_mode)
    assert modes[tmp_path / "state"] == 0o750
    for path, mode in modes.items():
        assert mode & 0o007 == 0, f"{path} is world-accessible ({oct(mode)})"
    assert {m for p, m in modes.items() if p.suffix in (".parquet", ".json")} == {0o640}
