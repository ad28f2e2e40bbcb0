"""Where a lake lives, as `lake verify` reads it: a directory, or an S3 prefix.

Both list the objects under ``bronze/`` with their sizes and read one object's
bytes; nothing here writes. An S3 lake is reached with the AWS chain's
credentials (environment, shared files, instance role) and, for S3-compatible
stores, an endpoint URL, as the ``s3`` sink is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from edge_agent.errors import EdgeAgentError


class LakeStore(Protocol):
    name: str

    def listing(self) -> Iterator[tuple[str, int]]:
        """(path relative to the lake root, size) of everything under ``bronze/``."""
        ...

    def read(self, rel: str) -> bytes: ...


class DirStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = str(root)

    def listing(self) -> Iterator[tuple[str, int]]:
        if not (self.root / "bronze").is_dir():
            return
        stack = [self.root / "bronze"]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        rel = Path(entry.path).relative_to(self.root).as_posix()
                        yield rel, entry.stat(follow_symlinks=False).st_size

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()


class S3Store:
    """``s3://bucket/prefix``: the prefix is the ``s3`` sink's (``sink.prefix``, default
    ``bronze``), which stands where a lake directory has ``bronze/``."""

    def __init__(self, url: str, endpoint_url: str = "") -> None:
        import boto3

        parts = urlsplit(url)
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.name = url
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url or None)

    def _key(self, rel: str) -> str:
        rest = rel.removeprefix("bronze/")
        return f"{self.prefix}/{rest}" if self.prefix else rest

    def listing(self) -> Iterator[tuple[str, int]]:
        start = f"{self.prefix}/" if self.prefix else ""
        cut = len(start)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        )
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    yield "bronze/" + obj["Key"][cut:], int(obj["Size"])
        except Exception as exc:  # botocore's errors: no bucket, no access, no network
            raise EdgeAgentError(f"--lake {self.name}: cannot list it ({exc})") from exc

    def read(self, rel: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(rel))["Body"].read()
        return body


def open_store(lake: str, endpoint_url: str = "") -> LakeStore:
    if lake.startswith("s3://"):
        if not urlsplit(lake).netloc:
            raise EdgeAgentError(f"--lake {lake!r}: name the bucket, e.g. s3://lake/bronze-root")
        return S3Store(lake, endpoint_url)
    root = Path(lake)
    if not root.is_dir():
        raise EdgeAgentError(f"--lake {lake!r}: no such directory")
    return DirStore(root)
