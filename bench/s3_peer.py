"""Scenario 3: peer comparison with dlt, one-shot load of a SQLite table by a cursor column.

The same table (id, 4 sensor columns, ``updated_at`` as epoch milliseconds,
indexed) is loaded once, from scratch, by

- dlt: ``sql_table`` with ``incremental("updated_at")`` and the pyarrow backend
  (dlt's fastest SQL backend), into a local ``filesystem`` destination as Parquet;
- edge-agent: timestamp mode (``mode = "timestamp"``, ``cursor = "updated_at"``,
  ``cursor_format = "epoch_ms"``: pages on the indexed column, read into Arrow;
  ``key = ["id"]``), ``edge-agent flush`` one-shot, dir sink.

Each runs in its own process on a fresh copy of the database; changes/s is rows
over the whole process's wall time (interpreter start and imports included, for
both), peak RSS is the process's VmHWM read just before exit (as in scenario 4).
Rows written are counted back from the Parquet each produced. Skipped, with the
reason recorded, when dlt is not installed.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

from bench.common import log, summary
from bench.s4_memory import CLI_BODY, measured
from bench.session import Session

TABLE = "readings"
DLT_BODY = "from pathlib import Path\nfrom bench.s3_peer import dlt_load\n" \
           "dlt_load(Path(sys.argv[1]), Path(sys.argv[2]))\nrc = 0"
DLT_ENV = {"RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_DISABLE_TELEMETRY": "1"}


def make_table(db: Path, rows: int) -> None:
    """An application table a vendor app keeps: updated_at epoch ms, indexed, in the past."""
    rng = random.Random(3)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, device TEXT NOT NULL, "
                "value REAL, status INTEGER, note TEXT, updated_at INTEGER NOT NULL)")
    con.execute(f"CREATE INDEX {TABLE}_updated_at ON {TABLE}(updated_at)")
    start = 1_735_689_600_000  # 2025-01-01, well outside any lag window
    batch = []
    for i in range(1, rows + 1):
        batch.append((i, f"dev-{i % 50:03d}", rng.random() * 100, rng.randrange(4),
                      f"note {rng.randrange(1000)}", start + i * 37))
        if len(batch) == 5000:
            con.executemany(f"INSERT INTO {TABLE} VALUES (?,?,?,?,?,?)", batch)
            con.commit()
            batch = []
    if batch:
        con.executemany(f"INSERT INTO {TABLE} VALUES (?,?,?,?,?,?)", batch)
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def dlt_load(db: Path, out: Path) -> None:
    """dlt's documented path: sql_table + incremental cursor -> filesystem, Parquet."""
    import dlt
    from dlt.sources.sql_database import sql_table

    resource = sql_table(credentials=f"sqlite:///{db}", table=TABLE, backend="pyarrow",
                         incremental=dlt.sources.incremental("updated_at"))
    pipeline = dlt.pipeline(pipeline_name="bench_peer", pipelines_dir=str(out / "pipelines"),
                            destination=dlt.destinations.filesystem(
                                bucket_url=(out / "lake").as_uri()),
                            dataset_name="bronze")
    info = pipeline.run(resource, loader_file_format="parquet")
    info.raise_on_failed_jobs()


def agent_config_text(work: Path, db: Path) -> str:
    return (f'[agent]\ndevice_id = "bench-gw"\nstate_dir = "{work / "state"}"\n'
            'log_format = "json"\n\n[buffer]\nmax_memory = "16MiB"\n\n'
            f'[[sources]]\nname = "vendor"\npath = "{db}"\n\n'
            f'[[sources.tables]]\nname = "{TABLE}"\nmode = "timestamp"\n'
            'cursor = "updated_at"\ncursor_format = "epoch_ms"\nkey = ["id"]\n\n'
            f'[sink]\nkind = "dir"\npath = "{work / "lake"}"\ncreate = true\n')


def parquet_rows(root: Path) -> tuple[int, int, int]:
    """(rows, files, bytes) of the Parquet files under root."""
    import pyarrow.parquet as pq

    rows = files = size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".parquet") and TABLE in dirpath:  # not dlt's own tables
                path = Path(dirpath) / name
                rows += pq.ParquetFile(path).metadata.num_rows
                files += 1
                size += path.stat().st_size
    return rows, files, size


def _one(session: Session, template: Path, who: str, run_no: int) -> dict[str, Any]:
    work = session.scratch(f"peer-{who}-{run_no}")
    db = work / "app.db"
    shutil.copyfile(template, db)
    os.sync()
    if who == "dlt":
        res = measured(DLT_BODY, [str(db), str(work)], work, python=sys.executable, **DLT_ENV)
    else:
        config = work / "config.toml"
        config.write_text(agent_config_text(work, db))
        res = measured(CLI_BODY, ["flush", "--config", str(config), "--timeout", "3600"], work)
    rows, files, size = parquet_rows(work / "lake")
    shutil.rmtree(work)
    return {"wall": res["wall"], "hwm": res["hwm"], "rows": rows, "files": files,
            "bytes": size}


def run(session: Session) -> dict[str, Any]:
    try:
        import dlt  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"dlt is not installed ({exc}); pip install 'edge-agent[bench]'"}
    from importlib.metadata import version

    mode = session.mode
    n = mode.peer_rows
    template = session.root / "templates" / f"peer-{n}" / "app.db"
    template.parent.mkdir(parents=True, exist_ok=True)
    make_table(template, n)
    results: dict[str, list[dict[str, Any]]] = {"dlt": [], "agent": []}
    for run_no in range(mode.runs):
        order = ("dlt", "agent") if run_no % 2 == 0 else ("agent", "dlt")
        for who in order:
            results[who].append(_one(session, template, who, run_no))
        log(f"peer: run {run_no + 1}/{mode.runs} done")
    out: dict[str, Any] = {"rows": n, "dlt_version": version("dlt"),
                           "python": sys.version.split()[0], "programs": {}}
    for who, rs in results.items():
        out["programs"][who] = {
            "changes_per_s": summary([r["rows"] / r["wall"] for r in rs]),
            "wall": summary([r["wall"] for r in rs]),
            "hwm": summary([r["hwm"] for r in rs]),
            "rows_written": rs[0]["rows"], "files": rs[0]["files"], "bytes": rs[0]["bytes"],
        }
    d, a = out["programs"]["dlt"], out["programs"]["agent"]
    out["ratio_rate"] = a["changes_per_s"]["median"] / d["changes_per_s"]["median"]
    out["ratio_hwm"] = a["hwm"]["median"] / d["hwm"]["median"]
    return out
