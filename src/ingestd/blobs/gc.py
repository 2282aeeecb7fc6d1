"""What the blob store holds, and removing the blobs nothing refers to any more.

A blob is referenced by a document (its upload) or a job (its parsed text): the
``referenced_blob_keys`` query. Uploads are stored before their document row is committed, so
only blobs older than a grace period are ever collected; content addressing means a blob that
becomes referenced again later is simply stored again.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from ingestd.db import QUERIES, Database
from ingestd.ports import BlobInfo, BlobStore

DEFAULT_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class BlobUsage:
    blobs: int
    bytes: int
    unreferenced: int
    unreferenced_bytes: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


async def referenced_keys(db: Database) -> set[str]:
    return {row["key"] for row in await db.fetch_all(QUERIES["referenced_blob_keys"])}


async def _listed(store: BlobStore) -> list[BlobInfo]:
    return await asyncio.to_thread(lambda: list(store.list_blobs()))


async def blob_usage(db: Database, store: BlobStore) -> BlobUsage:
    blobs = await _listed(store)
    referenced = await referenced_keys(db)
    loose = [b for b in blobs if b.key not in referenced]
    return BlobUsage(
        blobs=len(blobs),
        bytes=sum(b.size_bytes for b in blobs),
        unreferenced=len(loose),
        unreferenced_bytes=sum(b.size_bytes for b in loose),
    )


async def collect_garbage(
    db: Database,
    store: BlobStore,
    *,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
) -> list[BlobInfo]:
    """Delete the blobs nothing refers to that are older than ``grace``; returns them."""
    cutoff = datetime.now(UTC) - grace
    # Listed before the references are read: a blob referenced in between is either younger
    # than the grace period or seen among the references.
    blobs = await _listed(store)
    referenced = await referenced_keys(db)
    garbage = [b for b in blobs if b.key not in referenced and b.stored_at < cutoff]
    if not dry_run:
        for blob in garbage:
            await asyncio.to_thread(store.delete, blob.key)
    return garbage
