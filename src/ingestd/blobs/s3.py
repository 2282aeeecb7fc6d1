"""``BlobStore`` over an S3-compatible bucket, through boto3 (docs/decisions/0008-blob-stores.md).

Objects are named ``<prefix>ab/cd/<sha256>``, like the local folder. A put of bytes that are
already there is harmless (same key, same bytes); large ones look first, so they are not sent
twice, and files go through boto3's managed (multipart, streaming) upload. Vendor errors become
ingestd's: a missing object ``blob.missing``; throttling, 5xx and lost connections
``blob.unavailable`` (retried by the stage); anything else ``blob.s3_error``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from ingestd.config import BlobSettings
from ingestd.errors import ConfigurationError, IngestdError, PermanentError, TransientError
from ingestd.ports import BlobInfo
from ingestd.storage import (
    HEX_DIGITS,
    check_key,
    content_key,
    file_key,
    missing_blob,
)

# Blobs above this size are looked for before they are sent; smaller ones are just sent.
HEAD_FIRST_BYTES = 1024 * 1024
MULTIPART_BYTES = 16 * 1024 * 1024
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeTooSkewed",
    }
)


def s3_client(settings: BlobSettings) -> Any:
    """A boto3 S3 client from the ``blobs`` settings (unset credentials: boto3's chain)."""
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=32,
        # Path-style addressing for S3-compatible servers named by URL (MinIO, moto, ...).
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    key_id = settings.s3_access_key_id
    secret = settings.s3_secret_access_key
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=key_id.get_secret_value() if key_id else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=config,
    )


class S3BlobStore:
    """``BlobStore`` over one bucket (and key prefix) of an S3-compatible service."""

    inline_io = False

    def __init__(
        self, client: Any, bucket: str, prefix: str = "", *, multipart_bytes: int = MULTIPART_BYTES
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        # S3 takes parts of 5 MiB at least (but the last).
        self._transfer = TransferConfig(
            multipart_threshold=multipart_bytes, multipart_chunksize=multipart_bytes
        )

    @classmethod
    def from_settings(cls, settings: BlobSettings) -> S3BlobStore:
        if not settings.s3_bucket:
            raise ConfigurationError(
                "the s3 blob store needs a bucket: set INGESTD_BLOBS__S3_BUCKET"
            )
        return cls(s3_client(settings), settings.s3_bucket, settings.s3_prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def object_name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}{key[:2]}/{key[2:4]}/{key}"

    def put(self, data: bytes) -> str:
        key = content_key(data)
        name = self.object_name(key)
        if len(data) > HEAD_FIRST_BYTES and self.exists(key):
            return key
        self._call(key, self.client.put_object, Bucket=self.bucket, Key=name, Body=data)
        return key

    def put_file(self, path: Path) -> str:
        key = file_key(path)
        if not self.exists(key):
            self._call(
                key,
                self.client.upload_file,
                str(path),
                self.bucket,
                self.object_name(key),
                Config=self._transfer,
            )
        return key

    def get(self, key: str) -> bytes:
        response = self._call(
            key, self.client.get_object, Bucket=self.bucket, Key=self.object_name(key)
        )
        return self._call(key, response["Body"].read)  # type: ignore[no-any-return]

    def exists(self, key: str) -> bool:
        try:
            self._call(key, self.client.head_object, Bucket=self.bucket, Key=self.object_name(key))
        except PermanentError as exc:
            if exc.code == "blob.missing":
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self._call(key, self.client.delete_object, Bucket=self.bucket, Key=self.object_name(key))

    def list_blobs(self) -> Iterator[BlobInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in self._call("", lambda: list(pages)):
            for item in page.get("Contents", ()):
                name = str(item["Key"]).rsplit("/", 1)[-1]
                if len(name) == 64 and HEX_DIGITS.issuperset(name):
                    yield BlobInfo(name, int(item["Size"]), item["LastModified"])

    def _call(self, key: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except IngestdError:
            raise
        except Exception as exc:
            raise self._translate(key, exc) from exc

    def _translate(self, key: str, exc: Exception) -> IngestdError:
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, S3UploadFailedError) and isinstance(cause, Exception):
            return self._translate(key, cause)  # the managed upload wraps the service's error
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in NOT_FOUND:
                return missing_blob(key, self)
            if code in TRANSIENT_CODES or status >= 500 or status == 429:
                return TransientError("blob.unavailable", f"{self}: {code} {status}")
            return PermanentError("blob.s3_error", f"{self}: {code}: {error.get('Message', '')}")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return ConfigurationError(f"{self}: no S3 credentials found: {exc}")
        if isinstance(exc, botocore.exceptions.BotoCoreError | OSError):
            # Connection refused or reset, timeouts, a response cut short.
            return TransientError("blob.unavailable", f"{self}: {exc}")
        return PermanentError("blob.s3_error", f"{self}: {type(exc).__name__}: {exc}")
