"""Where a bronze file lives: the lake layout shared by the spool and every sink.

    bronze/<source>/<table>/date=YYYY-MM-DD/<device>-<first_pos>-<last_pos>.parquet

Table names are percent-encoded (RFC 3986 unreserved characters stay, a
leading dot is encoded too) so any
SQLite identifier gives a valid, unambiguous directory name; ``_table`` in the
file holds the real name. Positions are zero-padded to 20 digits so file names
sort in position order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

PARQUET = ".parquet"
MANIFEST = ".manifest.json"
_RELPATH = re.compile(
    r"^bronze/([^/]+)/([^/]+)/date=(\d{4}-\d{2}-\d{2}|unsynced)/([^/]+)\.parquet$"
)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")


def encode_name(name: str) -> str:
    """One safe path segment: percent-encoded, and never starting with a dot
    (so no ".", "..", or hidden directory that temp-file clean-up would match)."""
    encoded = quote(name, safe="")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded


@dataclass(frozen=True)
class FileKey:
    device: str
    source: str
    table: str
    partition: str
    first_pos: int
    last_pos: int

    @staticmethod
    def of_manifest(m: Mapping[str, Any]) -> FileKey:
        """The key a manifest names (KeyError, TypeError or ValueError when it cannot)."""
        return FileKey(
            m["device"],
            m["source"],
            m["table"],
            m["partition"]["date"],
            int(m["first_pos"]),
            int(m["last_pos"]),
        )

    @property
    def file_id(self) -> str:
        """Deterministic: the same changes always give the same id."""
        return f"{self.device}/{self.source}/{self.table}/{self.first_pos}-{self.last_pos}"

    @property
    def stem(self) -> str:
        return f"{self.device}-{self.first_pos:020d}-{self.last_pos:020d}"

    @property
    def relpath(self) -> str:
        """Path of the Parquet file under the lake root (forward slashes)."""
        return (
            f"bronze/{encode_name(self.source)}/{encode_name(self.table)}/"
            f"date={self.partition}/{self.stem}{PARQUET}"
        )

    @property
    def manifest_relpath(self) -> str:
        return self.relpath[: -len(PARQUET)] + MANIFEST


def _real_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def partition_of(relpath: str) -> str:
    """The date partition (or ``unsynced``) of a bronze file's relative path."""
    match = _RELPATH.match(relpath)
    if match is None:
        raise ValueError(f"not a bronze layout path: {relpath!r}")
    return match.group(3)


def manifest_relpath_of(relpath: str) -> str:
    return relpath[: -len(PARQUET)] + MANIFEST


def relpath_problem(relpath: str, device: str) -> str | None:
    """Why ``relpath`` is not a bronze file of ``device`` in this layout, or None.

    For receivers that take a path from the network (the MQTT collector): no
    traversal, no hidden or temp names, and a device writes only its own files.
    """
    match = _RELPATH.match(relpath)
    if match is None or _UNSAFE.search(relpath):
        return (
            "not a bronze layout path (bronze/<source>/<table>/date=YYYY-MM-DD/"
            "<device>-<first>-<last>.parquet)"
        )
    if match.group(3) != "unsynced" and not _real_date(match.group(3)):
        return f"date={match.group(3)} is not a real date (YYYY-MM-DD, or unsynced)"
    if any(segment.startswith(".") for segment in match.groups()):
        return "a path segment starts with a dot"
    if not re.fullmatch(re.escape(device) + r"-\d{1,20}-\d{1,20}", match.group(4)):
        return f"the file name is not <device>-<first>-<last> for device {device!r}"
    return None
