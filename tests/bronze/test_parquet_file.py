"""The bronze writer opens pyarrow's Parquet writer without ``pyarrow.parquet``: the same
bytes, without loading pyarrow's cloud filesystems into every agent process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_agent.bronze.parquet_file import open_writer
from tests.children import agent_env


def _table() -> pa.Table:
    return pa.table({"_pos": pa.array(range(1000), pa.int64()),
                     "name": pa.array([f"sensor-{i % 7}" for i in range(1000)], pa.string()),
                     "value": pa.array([i / 3 for i in range(1000)], pa.float64()),
                     "note": pa.nulls(1000, pa.string()),
                     # a list column, as logical capture's _unchanged
                     "gone": pa.array([["a", "b"] if i % 5 else None for i in range(1000)],
                                      pa.list_(pa.string()))})


def _write(path: Path, **options: object) -> None:
    table = _table()
    with pa.OSFile(str(path), mode="w") as sink:
        writer = open_writer(sink, table.schema, **options)  # type: ignore[arg-type]
        writer.write_table(table.slice(0, 600), row_group_size=600)
        writer.write_table(table.slice(600), row_group_size=400)
        writer.close()


@pytest.mark.parametrize(("compression", "level"), [("zstd", 1), ("snappy", None), ("none", None)])
def test_the_same_bytes_as_pyarrow_parquet_writer(tmp_path: Path, compression: str,
                                                  level: int | None) -> None:
    table = _table()
    options = {"compression": compression, "compression_level": level,
               "use_dictionary": ["name", "note"]}
    _write(tmp_path / "ours.parquet", **options)
    with pq.ParquetWriter(str(tmp_path / "theirs.parquet"), table.schema, write_statistics=True,
                          **options) as theirs:  # type: ignore[arg-type]
        theirs.write_table(table.slice(0, 600), row_group_size=600)
        theirs.write_table(table.slice(600), row_group_size=400)
    assert (tmp_path / "ours.parquet").read_bytes() == (tmp_path / "theirs.parquet").read_bytes()
    assert pq.read_table(tmp_path / "ours.parquet").equals(table)


def test_a_pyarrow_whose_private_writer_changed_gets_the_public_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_agent.bronze import parquet_file

    class Changed:
        def __init__(self, *_: object, **__: object) -> None:
            raise TypeError("__cinit__() got an unexpected keyword argument 'store_schema'")

    options = {"compression": "zstd", "compression_level": 1, "use_dictionary": ["name"]}
    _write(tmp_path / "private.parquet", **options)
    monkeypatch.setattr(parquet_file, "_parquet", type("M", (), {"ParquetWriter": Changed}))
    _write(tmp_path / "changed.parquet", **options)
    monkeypatch.setattr(parquet_file, "_parquet", None)
    _write(tmp_path / "absent.parquet", **options)
    assert (tmp_path / "changed.parquet").read_bytes() == (
        tmp_path / "private.parquet").read_bytes()
    assert (tmp_path / "absent.parquet").read_bytes() == (
        tmp_path / "private.parquet").read_bytes()


def test_a_table_of_another_schema_is_refused(tmp_path: Path) -> None:
    table = _table()
    with pa.OSFile(str(tmp_path / "f.parquet"), mode="w") as sink:
        writer = open_writer(sink, table.schema, compression="zstd", compression_level=1,
                             use_dictionary=[])
        with pytest.raises((pa.ArrowException, ValueError)):
            writer.write_table(table.drop_columns(["note"]), row_group_size=1000)
        writer.close()


def test_capturing_does_not_load_pyarrows_cloud_filesystems(tmp_path: Path) -> None:
    # pyarrow.parquet imports pyarrow.fs, which loads the S3 (AWS SDK), GCS, Azure and
    # HDFS filesystems: ~5 MiB of anonymous memory and ~11 MiB resident in every
    # agent process, for nothing the agent uses.
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    con.commit()
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path / "state"}"\n'
                   f'[[sources]]\nname = "app"\npath = "{db}"\ntables = ["t"]\n'
                   f'[sink]\nkind = "dir"\npath = "{tmp_path / "lake"}"\ncreate = true\n')
    probe = (
        "import json, sys\n"
        "from edge_agent.cli import main\n"
        "rc = main(['flush', '--config', sys.argv[1], '--timeout', '60'])\n"
        "print(json.dumps({'rc': rc, 'fs': sorted(m for m in sys.modules if m.startswith("
        "('pyarrow.fs', 'pyarrow._s3fs', 'pyarrow.parquet')))}))\n"
    )
    con.executemany("INSERT INTO t (id, v) VALUES (?, ?)", [(i, "x") for i in range(50)])
    con.commit()
    con.close()
    out = subprocess.run([sys.executable, "-c", probe, str(cfg)], env=agent_env(),
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"rc": 0, "fs": []}
    landed = pq.read_table(next((tmp_path / "lake").rglob("*.parquet")))
    assert landed.column("id").to_pylist() == list(range(50))
