"""The ``s3`` sink: AWS S3 or any S3-compatible store (MinIO, Ceph, Garage, R2).

Why boto3 and not ``pyarrow.fs.S3FileSystem`` (measured, see docs/s3.md): boto3
can send Content-MD5 and x-amz-checksum-sha256 so the store verifies the bytes
it received, returns the ETag and object metadata to check afterwards, and has
the full AWS credential chain; pyarrow's S3 file system exposes only size and
mtime. boto3 is imported only when this sink is used (``pip install
'edge-agent[s3]'``).

Each file is one PUT (atomic: an object is absent or whole). Verification:
the store must report the expected size, and either an ETag equal to the
file's MD5 or our SHA-256 back; the SHA-256 is also stored as object metadata
(``x-amz-meta-sha256``), which makes re-uploads idempotent.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from edge_agent.config import SinkConfig
from edge_agent.errors import CorruptFileError, TerminalError, TransientError
from edge_agent.fsutil import CHUNK
from edge_agent.shippers.base import Receipt
from edge_agent.shippers.throttle import ThrottledReader
from edge_agent.spool.state import FileRecord

_TERMINAL_CODES = {
    "NoSuchBucket": "bucket {bucket!r} does not exist: create it or fix sink.bucket",
    "AccessDenied": "access denied to bucket {bucket!r}: grant s3:PutObject and "
    "s3:GetObject (HEAD) on it to these credentials",
    "InvalidAccessKeyId": "the access key is not known to {where}: check the credentials "
    "(AWS_ACCESS_KEY_ID / shared credentials file / role)",
    "SignatureDoesNotMatch": "the secret key is wrong for {where}: check the credentials",
    "InvalidBucketName": "bucket name {bucket!r} is invalid: fix sink.bucket",
    "PermanentRedirect": "bucket {bucket!r} is in another region: fix sink.region",
    "AuthorizationHeaderMalformed": "wrong region for bucket {bucket!r}: fix sink.region",
    # HEAD answers carry no error body, only the status.
    "403": "access denied by {where} for bucket {bucket!r}: check the credentials and that "
    "they may s3:PutObject and s3:GetObject there",
    "301": "bucket {bucket!r} is in another region: fix sink.region",
}


def _digests(path: Path) -> tuple[int, str, bytes]:
    """(size, sha256 hex, md5 digest) of a file, read once."""
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.digest()


class S3Shipper:
    name = "s3"

    def __init__(self, cfg: SinkConfig, client: Any | None = None) -> None:
        self.cfg = cfg
        self.where = cfg.endpoint_url or "AWS S3"
        self.client = client if client is not None else self._client()

    def _client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError as exc:
            raise TerminalError(
                "sink.kind = \"s3\" needs boto3: install it with pip install 'edge-agent[s3]'"
            ) from exc
        config = BotoConfig(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 2, "mode": "standard"},  # our loop backs off after that
            s3={"addressing_style": self.cfg.addressing_style},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.session.Session().client(
            "s3",
            region_name=self.cfg.region or None,
            endpoint_url=self.cfg.endpoint_url or None,
            config=config,
        )

    def key(self, relpath: str) -> str:
        rest = relpath.removeprefix("bronze/")
        return f"{self.cfg.prefix}/{rest}" if self.cfg.prefix else rest

    def put(self, local: Path, manifest: Path, rec: FileRecord) -> Receipt:
        try:
            size, sha, md5 = _digests(local)
        except FileNotFoundError as exc:
            raise CorruptFileError(f"spooled file {rec.id} is missing: {exc}") from exc
        if (size, sha) != (rec.bytes, rec.sha256):
            raise CorruptFileError(
                f"spooled file {rec.id} is corrupt: {size} bytes sha256 {sha}, expected "
                f"{rec.bytes} bytes sha256 {rec.sha256}"
            )
        key = self.key(rec.relpath)
        try:
            already = self._holds(key, rec)
            if not already:
                self._upload(local, key, size, sha, md5)
                self._verify(key, rec, md5)
            try:
                manifest_data = manifest.read_bytes()
            except FileNotFoundError as exc:
                raise CorruptFileError(f"manifest of {rec.id} is missing: {exc}") from exc
            self._put_bytes(self.key(rec.manifest_relpath), manifest_data)
        except (TransientError, TerminalError, CorruptFileError):
            raise
        except Exception as exc:  # botocore raises many types; mapped here, once
            raise self._map(exc) from exc
        return Receipt(f"s3://{self.cfg.bucket}/{key}", size, already)

    def _holds(self, key: str, rec: FileRecord) -> bool:
        """Whether the object is already there with our bytes (a re-upload is then skipped)."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.cfg.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        meta = head.get("Metadata", {})
        return bool(head.get("ContentLength") == rec.bytes and meta.get("sha256") == rec.sha256)

    def _upload(self, local: Path, key: str, size: int, sha: str, md5: bytes) -> None:
        with open(local, "rb") as raw:
            body: Any = raw
            if self.cfg.max_bandwidth:
                body = ThrottledReader(raw, self.cfg.max_bandwidth)
            self.client.put_object(
                Bucket=self.cfg.bucket,
                Key=key,
                Body=body,
                ContentLength=size,
                ContentMD5=base64.b64encode(md5).decode(),
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha)).decode(),
                Metadata={"sha256": sha},
                ContentType="application/vnd.apache.parquet",
            )

    def _verify(self, key: str, rec: FileRecord, md5: bytes) -> None:
        head = self.client.head_object(Bucket=self.cfg.bucket, Key=key, ChecksumMode="ENABLED")
        etag = str(head.get("ETag", "")).strip('"')
        sha_b64 = base64.b64encode(bytes.fromhex(rec.sha256)).decode()
        size_ok = head.get("ContentLength") == rec.bytes
        digest_ok = etag == md5.hex() or head.get("ChecksumSHA256") == sha_b64
        if not (size_ok and digest_ok):
            raise TransientError(
                f"{self.where} holds s3://{self.cfg.bucket}/{key} with {head.get('ContentLength')}"
                f" bytes and ETag {etag}, expected {rec.bytes} bytes and MD5 {md5.hex()}: "
                "will upload again"
            )

    def _put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(
            Bucket=self.cfg.bucket,
            Key=key,
            Body=data,
            ContentMD5=base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode(),
            ContentType="application/json",
        )

    def _map(self, exc: Exception) -> Exception:
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        names = {"bucket": self.cfg.bucket, "where": self.where}
        if isinstance(exc, NoCredentialsError):
            return TerminalError(
                "no S3 credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a shared "
                "credentials file (AWS_SHARED_CREDENTIALS_FILE) or an instance role"
            )
        if isinstance(exc, EndpointConnectionError):
            return TransientError(
                f"cannot reach {self.where} ({exc}): will retry; check "
                "sink.endpoint_url and the network"
            )
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _TERMINAL_CODES:
                return TerminalError(f"s3 sink: {_TERMINAL_CODES[code].format(**names)}")
            return TransientError(f"s3 sink: {self.where} answered {code or exc}: will retry")
        return TransientError(f"s3 sink: {type(exc).__name__}: {exc}: will retry")

    def probe(self, device: str) -> None:
        try:
            self.client.head_bucket(Bucket=self.cfg.bucket)
        except Exception as exc:  # botocore's errors: mapped like put's
            raise self._map(exc) from exc

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()
