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
from pyarrow import _parquet


def open_writer(
    sink: pa.NativeFile,
    schema: pa.Schema,
    compression: str,
    compression_level: int | None,
    use_dictionary: list[str],
) -> Any:
    """A Parquet writer on ``sink`` with ``pq.ParquetWriter``'s defaults (format 2.6,
    statistics on); ``write_table(table, row_group_size)`` and ``close()``."""
    return _parquet.ParquetWriter(
        sink,
        schema,
        version="2.6",
        compression=compression,
        compression_level=compression_level,
        use_dictionary=use_dictionary,
        write_statistics=True,
        use_deprecated_int96_timestamps=False,
        writer_engine_version="V2",
        data_page_version="1.0",
    )
