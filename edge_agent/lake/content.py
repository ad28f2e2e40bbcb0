"""What a staged file holds, checked before it lands: a readable Parquet file with the
row count and schema fingerprint its manifest states.

Only the footer is read (pyarrow reads the file's tail: the footer's length, then the
footer), through ``ChunkFile``, a seekable read-only view of the staged chunk files
in order; the data pages are never read, and nothing is assembled or written first.
Whatever the bytes are, this answers with a problem or None: any failure to read the
footer is a problem of the file, except an I/O error of the staging area itself, which
is raised as the OSError it is (the receiver asks for a resend).
"""

from __future__ import annotations

import bisect
import io
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

FINGERPRINT_KEY = b"edge_agent.schema_fingerprint"
_SHOWN = 200  # characters of a foreign value or of pyarrow's message put into a reason


class ChunkFile(io.RawIOBase):
    """The staged chunks ``(path, length)`` read as one file. Each read opens the chunk
    files it spans; memory is what the reader asks for."""

    def __init__(self, parts: Sequence[tuple[Path, int]]) -> None:
        super().__init__()
        self.parts = list(parts)
        self.starts = list(itertools.accumulate((n for _, n in self.parts), initial=0))
        self.size = self.starts[-1]
        self.pos = 0
        self.io_error: OSError | None = None  # the staging area failed, not the file

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, self.size - self.pos))
        done = 0
        index = bisect.bisect_right(self.starts, self.pos) - 1
        while done < want:
            path, length = self.parts[index]
            offset = self.pos + done - self.starts[index]
            n = min(want - done, length - offset)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    got = f.readinto(view[done : done + n])
                if got != n:
                    raise OSError(f"staged chunk {path} is shorter than its {length} bytes")
            except OSError as exc:
                self.io_error = exc
                raise
            done += n
            index += 1
        self.pos += done
        return done


def parquet_problem(f: ChunkFile, rows: int, fingerprint: str) -> str | None:
    """Why the file is not the Parquet file its manifest describes (``rows`` rows,
    ``fingerprint`` in its schema metadata), or None. Reads the footer only."""
    try:
        parquet = pq.ParquetFile(f)
        meta = parquet.metadata
        found_rows = meta.num_rows
        group_rows = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        found = (parquet.schema_arrow.metadata or {}).get(FINGERPRINT_KEY)
    except Exception as exc:  # any bytes may come: ArrowInvalid, OSError, NotImplementedError...
        if f.io_error is not None:
            raise f.io_error from exc
        return f"not a readable Parquet file ({_shown(str(exc))})"
    if found_rows != group_rows:
        return f"its footer says {found_rows} rows but its row groups hold {group_rows}"
    if found_rows != rows:
        return f"it holds {found_rows} rows, the manifest says {_shown(str(rows))}"
    if found is None:
        return f"its schema metadata has no {FINGERPRINT_KEY.decode()}"
    if found != fingerprint.encode():
        shown = _shown(found.decode(errors="replace"))
        return f"its schema fingerprint is {shown!r}, the manifest says {_shown(fingerprint)!r}"
    return None


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
