"""Documents as an application sees them: record uploads, list, read, page chunks, delete.

Always within an owner scope (``owner=None``: every owner). Deleting a document cancels its job
whatever its state (fencing out the worker that may hold it), removes its chunks, buffers and
events with it, and then its blobs unless another document or job still uses them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.errors import NotFound
from ingestd.ports import BlobStore
from ingestd.service.jobs import check_states
from ingestd.service.paging import (
    cut_page,
    decode_cursor,
    fetch_limit,
    newest_first_after,
    newest_first_key,
    query_params,
)


class DocumentNotFound(NotFound):
    def __init__(self, document_id: object) -> None:
        super().__init__("document.not_found", f"no document {document_id}")


FILTERS = ("document_id", "states", "media_types", "before_created", "before_id")


def _params(owner: str | None, **filters: Any) -> dict[str, Any]:
    return query_params(FILTERS, owner, **filters)


async def find_documents(
    db: Database,
    *,
    owner: str | None,
    states: Sequence[str] | None = None,
    media_types: Sequence[str] | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of documents, newest first, and the next page's cursor (None at the end)."""
    params = _params(
        owner,
        states=check_states(states),
        media_types=list(media_types) if media_types else None,
        limit=fetch_limit(limit),
        **newest_first_after(cursor),
    )
    rows = await db.fetch_all(QUERIES["find_documents"], params)
    return cut_page(rows, limit, newest_first_key)


async def get_document(
    db: Database, document_id: uuid.UUID, *, owner: str | None
) -> dict[str, Any]:
    rows = await db.fetch_all(QUERIES["find_documents"], _params(owner, document_id=document_id))
    if not rows:
        raise DocumentNotFound(document_id)
    return rows[0]


async def document_chunks(
    db: Database,
    document_id: uuid.UUID,
    *,
    owner: str | None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the document's stored chunks, in document order."""
    await get_document(db, document_id, owner=owner)
    after = decode_cursor(cursor, ("ordinal",))["ordinal"]
    params = {
        "document_id": document_id,
        "after": after if isinstance(after, int) else -1,
        "limit": fetch_limit(limit),
    }
    rows = await db.fetch_all(QUERIES["document_chunks"], params)
    return cut_page(rows, limit, lambda row: {"ordinal": row["ordinal"]})


async def delete_document(
    db: Database, blobs: BlobStore, document_id: uuid.UUID, *, owner: str | None
) -> None:
    """Cancel the document's job, delete the document (its job, events, buffers and chunks go
    with it), then delete its blobs that nothing else uses."""

    async def work(conn: Conn) -> list[str]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["lock_document"], {"document_id": document_id, "owner": owner})
        found = await cur.fetchone()
        if found is None:
            raise DocumentNotFound(document_id)
        await cur.execute(QUERIES["cancel_jobs"], {"ids": found["job_ids"], "owner": owner})
        await cur.execute(QUERIES["delete_document"], {"document_id": document_id})
        return [k for k in [found["blob_key"], *found["parsed_blob_keys"]] if k]

    await delete_unreferenced_blobs(db, blobs, await db.transaction(work))


async def delete_unreferenced_blobs(db: Database, blobs: BlobStore, keys: list[str]) -> list[str]:
    """Delete those of ``keys`` that no document or job refers to; returns them.

    Check and delete happen under an exclusive lock on each key, which an upload storing the
    same content holds shared until its references commit (``ingest.record_documents``): an
    upload either committed before the check (its reference is seen, the blob kept) or stores
    its bytes after the delete (and so stores them again). A blob whose delete fails stays
    unreferenced; ``ingestd blobs gc`` removes it later.
    """

    async def work(conn: Conn) -> list[str]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["lock_blob_keys"], {"keys": sorted(set(keys))})
        await cur.execute(QUERIES["unreferenced_blobs"], {"keys": keys})
        loose = [row["key"] for row in await cur.fetchall()]
        for key in loose:
            await asyncio.to_thread(blobs.delete, key)
        return loose

    return await db.transaction(work) if keys else []
