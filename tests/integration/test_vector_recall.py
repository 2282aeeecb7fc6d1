"""The model's HNSW index (m = 8, searched with ef_search = 80) finds the exact nearest chunks:
recall@10 of search() against an exact cosine ranking over a few hundred stored vectors."""

from __future__ import annotations

import random
import uuid

import numpy as np

from ingestd.app import App
from ingestd.db.database import HNSW_M, vector_index_name
from ingestd.search import search

ROWS = 400
QUERIES = 30


async def test_search_through_the_index_finds_the_exact_top_10(app: App) -> None:
    rng = random.Random(11)
    vocabulary = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choices(vocabulary, k=60)) for _ in range(ROWS)]
    embedder = app.ports.embedder
    vectors = np.asarray((await embedder.embed(texts)).vectors, dtype=np.float32)
    document_id = uuid.uuid4()
    async with app.db.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO documents (id, owner, filename, media_type, size_bytes, sha256, blob_key)"
            " VALUES (%s, 'recall', 'r.md', 'text/markdown', 1, 'x', 'k')",
            (document_id,),
        )
        cur = conn.cursor()
        await cur.executemany(
            "INSERT INTO chunks (id, document_id, owner, ordinal, text, token_count,"
            " embedding_model, embedding) VALUES (%s, %s, 'recall', %s, %s, 60, %s, %s)",
            [(f"c{i}", document_id, i, texts[i], embedder.model, vectors[i]) for i in range(ROWS)],
        )
        indexdef = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s",
            (vector_index_name(embedder.model),),
        )
        row = await indexdef.fetchone()
    assert row is not None and f"m='{HNSW_M}'" in row[0]

    found = 0
    for q in range(QUERIES):
        words = texts[q * 7].split()
        query = " ".join(words[:8] + rng.choices(vocabulary, k=4))
        qv = np.asarray((await embedder.embed([query])).vectors[0], dtype=np.float32)
        exact = {f"c{i}" for i in np.argsort(-(vectors @ qv))[:10]}
        hits = await search(app.db, embedder, query, owner="recall", limit=10)
        assert len(hits) == 10
        found += len({h.chunk_id for h in hits} & exact)
    assert found / (10 * QUERIES) >= 0.9
