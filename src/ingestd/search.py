"""Vector search: the top-k chunks nearest a query, by cosine distance on the model's HNSW index."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.errors import PermanentError
from ingestd.ports import Embedder

EF_SEARCH = 80


@dataclass(frozen=True, slots=True)
class SearchResult:
    chunk_id: str
    document_id: uuid.UUID
    filename: str
    ordinal: int
    text: str
    heading_path: list[str]
    page: int | None
    score: float

    def to_json(self) -> dict[str, object]:
        return {
            "chunk_id": self.chunk_id,
            "document_id": str(self.document_id),
            "filename": self.filename,
            "ordinal": self.ordinal,
            "text": self.text,
            "heading_path": self.heading_path,
            "page": self.page,
            "score": round(self.score, 6),
        }


async def search(
    db: Database,
    embedder: Embedder,
    text: str,
    *,
    owner: str | None,
    limit: int = 5,
    document_id: uuid.UUID | None = None,
    document_ids: Sequence[uuid.UUID] | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[SearchResult]:
    """The ``limit`` chunks of ``owner``'s documents (every owner's: None) nearest ``text``,
    best first; optionally only in ``document_ids`` or documents whose metadata contains
    ``metadata``."""
    if not text.strip():
        raise PermanentError("search.empty_query", "the search text is empty")
    if not 1 <= limit <= 1000:
        raise PermanentError("search.bad_limit", "limit must be between 1 and 1000")
    embedded = await embedder.embed([text])
    vector = np.asarray(embedded.vectors[0], dtype=np.float32)
    query = sql.SQL(QUERIES["search_chunks"]).format(
        dims=sql.Literal(embedder.dimensions), model=sql.Literal(embedder.model)
    )
    ids = [*(document_ids or ()), *([document_id] if document_id else [])]
    params = {
        "query": vector,
        "owner": owner,
        "document_ids": ids or None,
        "metadata": Jsonb(metadata) if metadata is not None else None,
        "limit": limit,
    }

    async def work(conn: Conn) -> list[SearchResult]:
        # The candidate list of the index scan (pgvector's default is 40): with the index's
        # m = 8 (db.database.HNSW_M) this finds more of the exact top 10 than m = 16 did at 40.
        await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(EF_SEARCH),))
        # Keep scanning the index until enough rows pass the owner/document filter (pgvector
        # >= 0.8; older servers do not know the setting and simply skip this).
        await conn.execute(
            "SELECT set_config('hnsw.iterative_scan', 'strict_order', true)"
            " WHERE current_setting('hnsw.iterative_scan', true) IS NOT NULL"
        )
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        return [SearchResult(**row) for row in await cur.fetchall()]

    return await db.transaction(work)
