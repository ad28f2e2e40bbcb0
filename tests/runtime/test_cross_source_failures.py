"""A failed row-group write of one source's buffer, made room for by another source,
must not silently drop the first source's buffered rows."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from edge_agent.bronze.writer import BronzeWriter
from edge_agent.config import config_from_dict
from tests.conftest import config_dict
from tests.lake import read_changes


def _db(path: Path, rows: int, size: int) -> Path:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)")
    con.commit()
    con.close()
    return path


def _fill(path: Path, rows: int, size: int) -> None:
    con = sqlite3.connect(path)
    con.executemany("INSERT INTO t (id, payload) VALUES (?, ?)",
                    [(i, bytes([i % 251]) * size) for i in range(1, rows + 1)])
    con.commit()
    con.close()


def _run(tmp_path: Path, harness_factory, monkeypatch: pytest.MonkeyPatch,
         open_first: bool) -> None:
    a = _db(tmp_path / "a.db", 0, 0)
    b = _db(tmp_path / "b.db", 0, 0)
    data = config_dict(tmp_path, a, ["t"],
                       buffer={"max_memory": "64KiB", "row_group_bytes": "1MiB",
                               "max_file_age": "1s"})
    data["sources"][0]["name"] = "a"
    data["sources"].append({"name": "b", "path": str(b), "tables": ["t"], "page_rows": 500})
    h = harness_factory(config_from_dict(data))
    h.step()  # install triggers
    _fill(a, 40, 1000)   # ~40 KiB buffered for source a
    _fill(b, 30, 1000)   # ~30 KiB for b: a's buffer is written out to make room

    real = BronzeWriter._write
    state = {"armed": True, "fired": 0}

    def failing(self: BronzeWriter, f, table) -> None:
        if state["armed"] and f.source == "a":
            state["armed"] = False
            if open_first:  # the file and its Parquet writer exist; the data write fails
                real(self, f, table.slice(0, 0))
            state["fired"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, f, table)

    monkeypatch.setattr(BronzeWriter, "_write", failing)
    h.step()
    assert state["fired"] == 1, "the injected ENOSPC did not hit source a's buffer"
    for _ in range(3):
        h.step(advance=2.0)
    assert h.flush().ok
    changes = read_changes(tmp_path / "lake")
    got = {(c["_source"], c["values"]["id"]) for c in changes}
    want = {(s, i) for s, n in (("a", 40), ("b", 30)) for i in range(1, n + 1)}
    assert want - got == set(), f"lost changes: {sorted(want - got)[:5]}..."


def test_enospc_on_a_row_group_write_made_for_another_source_loses_nothing(
        tmp_path: Path, harness_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tmp_path, harness_factory, monkeypatch, open_first=True)


def test_failure_opening_a_file_made_for_another_source_does_not_crash_the_step(
        tmp_path: Path, harness_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same, failing at the file's creation: the other source's OpenFile is left with rows
    counted but no writer, and its seal raises RuntimeError out of Agent.step."""
    _run(tmp_path, harness_factory, monkeypatch, open_first=False)
