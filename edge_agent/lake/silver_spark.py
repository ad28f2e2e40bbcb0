"""`edge-agent lake silver --engine spark`: the same current state, computed by Spark
SQL (``sql/silver.sql``) for a lake that outgrows one machine.

It recomputes each table from all its bronze files (no watermark: Spark's own
jobs are the unit of retry) and writes it with ``DataFrameWriter`` in
``fmt`` (``parquet`` here; ``delta`` on a cluster that has Delta Lake's jars).
The files it reads are the Delta engine's: per device the unbroken run of
ordinals, so both engines give the same rows for the same lake.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from edge_agent.errors import EdgeAgentError
from edge_agent.lake.silver import dir_name
from edge_agent.lake.silver_plan import plan
from edge_agent.lake.store import DirStore

_PREVIOUS = (
    "CASE WHEN array_contains(_unchanged, {lit}) THEN last(CASE WHEN NOT "
    "array_contains(coalesce(_unchanged, array()), {lit}) THEN named_struct('v', {val}) END, "
    "true) OVER (PARTITION BY _device, {key} ORDER BY _pos ROWS BETWEEN UNBOUNDED PRECEDING "
    "AND 1 PRECEDING).v ELSE {val} END"
)
# A time of day as the Delta engine writes it (pyarrow's text: HH:MM:SS.ffffff).
_TIME = (
    "CASE WHEN instr(CAST({col} AS STRING), '.') = 0 THEN concat(CAST({col} AS STRING), "
    "'.000000') ELSE rpad(CAST({col} AS STRING), 15, '0') END"
)
ENVELOPE = {
    "_op", "_pos", "_ts_ms", "_captured_ms", "_device", "_source", "_table", "_unfit", "_tx",
    "_before", "_lsn", "_unchanged",
}  # fmt: skip


def bq(name: str) -> str:
    """A back-quoted Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def _literal(text: str) -> str:
    """A Spark SQL string literal (backslash escapes are on by default)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def silver_sql(
    key: list[str], columns: list[str], unchanged: bool, times: frozenset[str] = frozenset()
) -> str:
    """``sql/silver.sql`` filled for one table."""
    keys = ", ".join(map(bq, key))
    names = ", ".join(map(bq, columns))

    def value(c: str) -> str:
        val = _TIME.format(col=bq(c)) if c in times else bq(c)
        if unchanged and c not in key:
            val = _PREVIOUS.format(lit=_literal(c), val=val, key=keys)
        return f"{val} AS {bq(c)}"

    filled = ", ".join(map(value, columns))
    text = resources.files("edge_agent.lake").joinpath("sql/silver.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return body.replace("{key}", keys).replace("{names}", names).replace("{columns}", filled)


def run(
    lake: Path,
    to: Path,
    source: str | None = None,
    device: str | None = None,
    master: str = "local[2]",
    fmt: str = "parquet",
) -> dict[str, int]:
    """Rows written per ``source.table``."""
    try:
        from pyspark.sql import SparkSession
    except ModuleNotFoundError as exc:
        raise EdgeAgentError(
            "--engine spark needs pyspark (pip install pyspark) and Java 17 or newer"
        ) from exc
    work = plan(DirStore(lake), source, device)
    builder = (
        SparkSession.builder.master(master)
        .appName("edge-agent-silver")
        .config("spark.sql.timeType.enabled", "true")  # PostgreSQL `time` columns
        .config("spark.ui.enabled", "false")  # no web UI port for a batch job
        .config("spark.ui.showConsoleProgress", "false")
    )
    if master.startswith("local"):  # one machine: the driver listens on loopback only
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1"
        )
    spark = builder.getOrCreate()
    written: dict[str, int] = {}
    try:
        for (src, table), devices in work.tables.items():
            paths = [str(lake / f.rel) for files in devices.values() for f in files]
            if not paths:
                continue
            out = to / dir_name(src) / dir_name(table)
            written[f"{src}.{table}"] = _table(spark, paths, str(out), fmt)
    finally:
        spark.stop()
    return written


def _table(spark: Any, paths: list[str], out: str, fmt: str) -> int:
    import pyarrow.parquet as pq

    newest = pq.read_schema(paths[-1])
    key = json.loads((newest.metadata or {}).get(b"edge_agent.key", b"[]"))
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import AnalysisException

    try:
        bronze = spark.read.option("mergeSchema", "true").parquet(*paths)
    except (AnalysisException, Py4JJavaError) as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise EdgeAgentError(
            f"{out}: Spark cannot read the table's bronze files as one ({first}): "
            "a column changed its type on the device; the Delta engine casts exact values, "
            "Spark's mergeSchema does not"
        ) from exc
    columns = [c for c in bronze.columns if c not in ENVELOPE]
    bronze.createOrReplaceTempView("bronze")
    times = frozenset(f.name for f in bronze.schema.fields if f.dataType.typeName() == "time")
    frame = spark.sql(silver_sql(key, columns, "_unchanged" in bronze.columns, times))
    frame.write.mode("overwrite").format(fmt).save(out)
    count: int = spark.read.format(fmt).load(out).count()
    return count
