"""Reading a SQLite page straight into Arrow (the ADBC SQLite driver), exactly or not at all.

Timestamp mode reads large tables page by page; building Arrow from Python
tuples costs more than the read. The ADBC driver reads into Arrow in C, but it
infers one type per result column (a text value in an INTEGER column turns
the whole column into text, a number in a BLOB column into bytes) and checks
no UTF-8. So a page comes back here only when every value is of its column's
own type: each column's Arrow type is checked, and the query flags the rows
(``_misfit``) whose values the driver would convert without a sign and the
column's affinity does not rule out (a TEXT column holds no numbers, a REAL
column no integers). Any
doubt returns None, and the caller reads the page through ``sqlite3`` instead,
where a value that does not fit goes to ``_unfit`` exactly as stored
(bronze/schema.py).

The driver is imported on first use (``adbc-driver-sqlite``): a daemon without
declared cursor formats never loads it. Its connection runs in autocommit
mode, each page its own statement, closed once read: no read snapshot stays
open between pages (it would stop the application's WAL checkpoints).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from edge_agent.bronze.schema import FLOAT_EXACT, BatchSchema
from edge_agent.log import get_logger
from edge_agent.sources.sqlite import quote

log = get_logger("edge_agent.timestamp")
MISFIT = "_misfit"
_ARROW_OF_KIND = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bytes": pa.binary(),
    "bool": pa.int64(),  # SQLite has no booleans: 0 and 1, made bool after the read
}
# Values a column's affinity lets through that the driver would turn into the column's
# Arrow type without a sign (a number into text, a big integer into a double): those
# rows are flagged. Anything else that does not fit changes the result column's type
# (an integer column with a real in it comes back as doubles), which ``fitted`` sees.
_SILENT = {
    "int": "",
    # NUMERIC affinity (NUMERIC, DECIMAL, JSON, UUID, ...: any type name no other rule
    # matches) keeps text and blobs as they are: never read those as numbers.
    "float": (
        "(typeof({c}) = 'integer' AND ({c} < -{big} OR {c} > {big}))"
        " OR typeof({c}) IN ('text', 'blob')"
    ),
    "str": "typeof({c}) IN ('integer', 'real')",  # not TEXT affinity (a DATETIME column)
    "bytes": "typeof({c}) NOT IN ('blob', 'null')",
    "bool": "",  # 0 and 1 only: checked after the read
}


def affinity(decltype: str) -> str:
    """SQLite's column affinity of a declared type (https://sqlite.org/datatype3.html 3.1)."""
    t = decltype.upper()
    if "INT" in t:
        return "integer"
    if any(n in t for n in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if "BLOB" in t or not t:
        return "blob"
    if any(n in t for n in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "numeric"


def arrow_select(schema: BatchSchema) -> str | None:
    """The select list of an Arrow read: each column as its own type (integers of a
    NUMERIC column as reals), ``{extra}`` to fill in, and the misfit flag (NULL when
    every value fits) where the affinity lets a misfit through silently. None when a
    column is of a kind this reader does not handle."""
    exprs: list[str] = []
    silent: list[str] = []
    for column, kind in zip(schema.shape.columns, schema.kinds, strict=True):
        if kind not in _SILENT:
            return None
        c = quote(column.name)
        guaranteed = {"float": "real", "str": "text"}.get(kind)
        own = guaranteed is not None and affinity(column.source_type) == guaranteed
        exprs.append(_as_real(c) if kind == "float" and not own else c)
        if _SILENT[kind] and not own:
            silent.append(_SILENT[kind].format(c=c, big=FLOAT_EXACT))
    misfit = f"CASE WHEN {' OR '.join(silent)} THEN 1 END" if silent else "NULL"
    return ", ".join([*exprs, "{extra}", f"{misfit} AS {MISFIT}"])


def _as_real(c: str) -> str:
    """Integers as reals; anything else as it is (a text or blob value then changes the
    result column's type, and its row is flagged besides: never a silent 0.0)."""
    return f"CASE WHEN typeof({c}) = 'integer' THEN CAST({c} AS REAL) ELSE {c} END"


def fitted(batch: pa.RecordBatch, schema: BatchSchema, extra: int) -> pa.RecordBatch | None:
    """The page as the table's own Arrow types plus the ``extra`` columns after them
    (as read), or None when any value does not fit or a type is off."""
    n = batch.num_rows
    width = len(schema.kinds)
    if batch.num_columns != width + extra + 1 or batch.column(width + extra).null_count != n:
        return None
    arrays: list[pa.Array] = []
    for i, kind in enumerate(schema.kinds):
        array = _column(batch.column(i), kind, n)
        if array is None:
            return None
        arrays.append(array)
    arrays += [batch.column(width + j) for j in range(extra)]
    names = [c.name for c in schema.shape.columns] + batch.schema.names[width : width + extra]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _column(array: pa.Array, kind: str, n: int) -> pa.Array | None:
    target = pa.bool_() if kind == "bool" else _ARROW_OF_KIND[kind]
    if array.null_count == n:
        return pa.nulls(n, target)  # an empty or all-NULL result comes back as integers
    if array.type != _ARROW_OF_KIND[kind]:
        return None
    if kind == "str":
        try:
            array.validate(full=True)  # the driver does not check UTF-8
        except pa.ArrowInvalid:
            return None
    if kind == "bool":
        values = array.to_pylist()
        if not set(values) <= {0, 1, None}:
            return None
        return pa.array([None if v is None else bool(v) for v in values], target)
    return array


class ArrowReader:
    """One read-only ADBC connection to a SQLite database, opened on first use.

    A read may be started ahead (:meth:`start`, in a thread: the driver and Parquet
    both release the GIL, so the next page is read while this one is written); the
    connection is used by one thread at a time, the read ahead being joined first.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: Any = None
        self._con: Any = None
        self.broken = False  # the driver could not be loaded: every page goes through sqlite3
        self._ahead: _Ahead | None = None

    def start(self, sql: str, params: list[Any], batch_rows: int) -> None:
        """Read this query in a thread; :meth:`read` of the same query takes it."""
        self._join()
        if not self.broken:
            self._ahead = _Ahead((sql, params, batch_rows), self._read)

    def read(self, sql: str, params: list[Any], batch_rows: int) -> pa.RecordBatch | None:
        """The result of one query as one batch (empty: its columns typed anyhow), or
        None when the driver failed."""
        ahead = self._join()
        if ahead is not None and ahead.query == (sql, params, batch_rows):
            return ahead.result()
        return self._read(sql, params, batch_rows)

    def discard(self) -> None:
        """Drop a read ahead that was not taken (after it ends: the connection is free)."""
        self._join()

    def _join(self) -> _Ahead | None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.thread.join()
        return ahead

    def _read(self, sql: str, params: list[Any], batch_rows: int) -> pa.RecordBatch | None:
        if self.broken:
            return None
        try:
            import adbc_driver_manager
            import adbc_driver_sqlite
        except ImportError as exc:
            log.warning("timestamp.arrow_unavailable", error=str(exc))
            self.broken = True
            return None
        try:
            if self._con is None:
                self._db = adbc_driver_sqlite.connect(f"file:{self.path}?mode=ro")
                self._con = adbc_driver_manager.AdbcConnection(self._db)
                self._con.set_autocommit(True)
            statement = adbc_driver_manager.AdbcStatement(self._con)
            try:
                statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
                statement.set_sql_query(sql)
                statement.bind(_parameters(params))
                handle, _ = statement.execute_query()
                table = pa.RecordBatchReader.from_stream(handle).read_all()
            finally:
                statement.close()
        except (adbc_driver_manager.Error, pa.ArrowException, UnicodeDecodeError) as exc:
            log.info("timestamp.arrow_read_failed", path=str(self.path), error=str(exc))
            self._close_handles()  # a fresh connection next time
            return None
        if not table.num_rows:
            return pa.RecordBatch.from_pylist([], schema=table.schema)
        return table.combine_chunks().to_batches()[0]

    def close(self) -> None:
        self._join()
        self._close_handles()

    def _close_handles(self) -> None:
        for handle in (self._con, self._db):
            if handle is not None:
                handle.close()
        self._con = self._db = None


class _Ahead:
    """A read running in a thread; its error, if any, is raised where it is taken."""

    def __init__(
        self, query: tuple[str, list[Any], int], read: Callable[..., pa.RecordBatch | None]
    ) -> None:
        self.query = query
        self._result: pa.RecordBatch | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(read,), daemon=True)
        self.thread.start()

    def _run(self, read: Callable[..., pa.RecordBatch | None]) -> None:
        try:
            self._result = read(*self.query)
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def result(self) -> pa.RecordBatch | None:
        if self._error is not None:
            raise self._error
        return self._result


def _parameters(values: list[Any]) -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array([v]) for v in values], names=[str(i) for i in range(len(values))]
    )
