"""Blob stores beyond the local folder (``ingestd.storage``), and choosing one from settings.

``local`` keeps blobs in a folder under the home (the embedded default); ``postgres`` keeps them
in the database, so a fleet needs nothing but PostgreSQL; ``s3`` in an S3-compatible bucket.
``auto`` is ``postgres`` when ``INGESTD_DATABASE_URL`` is set, else ``local``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Protocol, runtime_checkable

from ingestd.config import Settings
from ingestd.ports import BlobStore
from ingestd.storage import LocalBlobStore

Backend = Literal["local", "postgres", "s3"]


@runtime_checkable
class BatchedBlobStore(BlobStore, Protocol):
    """A store that reads and writes several small blobs in one round trip (the parse stage
    uses it for a batch's uploads and parsed texts)."""

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """The bytes of each key found; a missing key is absent from the answer."""
        ...

    def put_many(self, blobs: list[bytes]) -> list[str]:
        """Store each blob; their keys, in order."""
        ...


def blob_backend(settings: Settings) -> Backend:
    backend = settings.blobs.backend
    if backend == "auto":
        return "postgres" if settings.database_url else "local"
    return backend


@contextmanager
def open_blob_store(settings: Settings, database_url: str) -> Iterator[BlobStore]:
    """The store the settings choose, open for the duration of the block.

    ``database_url`` is the database this process uses (the embedded server's when no URL is
    configured); the postgres store keeps its blobs there.
    """
    backend = blob_backend(settings)
    if backend == "local":
        yield LocalBlobStore(settings.blob_dir)
    elif backend == "s3":
        from ingestd.blobs.s3 import S3BlobStore

        yield S3BlobStore.from_settings(settings.blobs)
    else:
        from ingestd.blobs.postgres import PostgresBlobStore

        store = PostgresBlobStore(
            database_url,
            part_bytes=settings.blobs.part_bytes,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        store.open()
        try:
            yield store
        finally:
            store.close()
