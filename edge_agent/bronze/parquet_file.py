"""Opening pyarrow's Parquet writer without importing ``pyarrow.parquet``.

``pyarrow.parquet`` imports ``pyarrow.fs``, which loads pyarrow's S3 (the AWS
SDK), GCS, Azure and HDFS filesystems: ~5 MiB of anonymous memory and ~11 MiB
resident in every agent process, for nothing the agent uses (it writes to a
file it opened itself). ``pyarrow._parquet.ParquetWriter`` is the class
``pq.ParquetWriter`` wraps; opened with the options that wrapper passes it
writes the same bytes (tests/bronze/test_parquet_file.py compares them, so a
pyarrow release that changes either shows up there).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

try:
    from pyarrow import _parquet
except ImportError:  # a pyarrow without it: the public writer below
    _parquet = None


def open_writer(
    sink: pa.NativeFile,
    schema: pa.Schema,
    compression: str,
    compression_level: int | None,
    use_dictionary: list[str],
) -> Any:
    """A Parquet writer on ``sink`` with ``pq.ParquetWriter``'s defaults (format 2.6,
    statistics on, compliant nested types, the Arrow schema stored);
    ``write_table(table, row_group_size)`` and ``close()``. A pyarrow whose private
    writer takes other options gets ``pq.ParquetWriter`` itself (and its imports)."""
    options: dict[str, Any] = {
        "version": "2.6",
        "compression": compression,
        "compression_level": compression_level,
        "use_dictionary": use_dictionary,
        "write_statistics": True,
        "use_deprecated_int96_timestamps": False,
        "use_compliant_nested_type": True,
        "store_schema": True,
        "data_page_version": "1.0",
    }
    if _parquet is not None:
        try:
            return _parquet.ParquetWriter(sink, schema, writer_engine_version="V2", **options)
        except TypeError as exc:  # its options changed: the public class knows them
            if isinstance(exc, pa.ArrowException):  # a schema it cannot write: the same
                raise  # error from either class
    import pyarrow.parquet as pq

    return pq.ParquetWriter(sink, schema, **options)
