"""``rebuild_vector_indexes`` (``ingestd db rebuild-vector-index``): an index of a home made before
m = 8 is rebuilt online with the current parameters, search finds the same hits, a second run does
nothing, a failed build's INVALID leftover is dropped, a dry run changes nothing, and doctor warns
until the rebuild is done."""

from __future__ import annotations

import random
import uuid

import numpy as np
import psycopg
import pytest
from psycopg import sql

from ingestd.app import App
from ingestd.db.database import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    REBUILD_LOCK_KEY,
    REBUILD_SUFFIX,
    list_vector_indexes,
    rebuild_vector_indexes,
    vector_index_name,
)
from ingestd.errors import PermanentError
from ingestd.observability.checks import vector_index_check
from ingestd.search import search

ROWS = 300


def catalog(url: str) -> list[tuple[str, bool, list[str] | None]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, i.indisvalid, c.reloptions FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'chunks'::regclass AND c.relname LIKE 'chunks_hnsw_%'"
            " ORDER BY 1"
        ).fetchall()
    return [(name, valid, options) for name, valid, options in rows]


def make_old_index(url: str, model: str, dimensions: int) -> None:
    """The index a home made before m = 8 has: same name, pgvector's defaults (no WITH)."""
    name = vector_index_name(model)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL(
                "CREATE INDEX {} ON chunks USING hnsw"
                " ((embedding::vector({})) vector_cosine_ops) WHERE embedding_model = {}"
            ).format(sql.Identifier(name), sql.Literal(dimensions), sql.Literal(model))
        )


async def store_chunks(app: App) -> tuple[list[str], np.ndarray]:
    rng = random.Random(5)
    vocabulary = [f"w{i}" for i in range(2000)]
    texts = [" ".join(rng.choices(vocabulary, k=50)) for _ in range(ROWS)]
    embedder = app.ports.embedder
    vectors = np.asarray((await embedder.embed(texts)).vectors, dtype=np.float32)
    document_id = uuid.uuid4()
    async with app.db.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO documents (id, owner, filename, media_type, size_bytes, sha256, blob_key)"
            " VALUES (%s, 'rb', 'r.md', 'text/markdown', 1, 'x', 'k')",
            (document_id,),
        )
        await conn.cursor().executemany(
            "INSERT INTO chunks (id, document_id, owner, ordinal, text, token_count,"
            " embedding_model, embedding) VALUES (%s, %s, 'rb', %s, %s, 50, %s, %s)",
            [(f"c{i}", document_id, i, texts[i], embedder.model, vectors[i]) for i in range(ROWS)],
        )
    return texts, vectors


async def top_hits(app: App, texts: list[str]) -> list[list[str]]:
    hits = []
    for q in range(0, 60, 4):
        query = " ".join(texts[q].split()[:12])
        found = await search(app.db, app.ports.embedder, query, owner="rb", limit=5)
        hits.append([h.chunk_id for h in found])
    return hits


async def test_an_old_index_is_rebuilt_with_m8_and_search_finds_the_same_hits(app: App) -> None:
    url, embedder = app.db.url, app.ports.embedder
    texts, _ = await store_chunks(app)
    make_old_index(url, embedder.model, embedder.dimensions)
    name = vector_index_name(embedder.model)
    assert catalog(url) == [(name, True, None)]
    before = await top_hits(app, texts)

    status, detail = await vector_index_check(app.db, app.settings)
    assert status == "warn"
    assert name in detail and "m=16" in detail and "ingestd db rebuild-vector-index" in detail

    steps = await rebuild_vector_indexes(url)
    assert [(s.index, s.model, s.action) for s in steps] == [(name, embedder.model, "rebuilt")]
    assert steps[0].old == {"m": 16, "ef_construction": 64}
    assert steps[0].new == {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
    assert steps[0].size_bytes > 0 and (steps[0].new_size_bytes or 0) > 0
    assert steps[0].seconds is not None
    assert catalog(url) == [
        (name, True, [f"m={HNSW_M}", f"ef_construction={HNSW_EF_CONSTRUCTION}"])
    ]

    after = await top_hits(app, texts)
    assert [h[0] for h in after] == [h[0] for h in before]  # the stored text's own chunk first
    overlap = sum(len(set(a) & set(b)) for a, b in zip(after, before, strict=True))
    assert overlap >= 0.9 * 5 * len(before)

    status, detail = await vector_index_check(app.db, app.settings)
    assert status == "ok", detail

    again = await rebuild_vector_indexes(url)
    assert [(s.index, s.action) for s in again] == [(name, "up to date")]
    assert catalog(url) == [
        (name, True, [f"m={HNSW_M}", f"ef_construction={HNSW_EF_CONSTRUCTION}"])
    ]
    forced = await rebuild_vector_indexes(url, force=True)
    assert [s.action for s in forced] == ["rebuilt"]
    assert [h[0] for h in await top_hits(app, texts)] == [h[0] for h in before]


async def test_dry_run_changes_nothing_and_model_filters(app: App) -> None:
    url, embedder = app.db.url, app.ports.embedder
    await store_chunks(app)
    make_old_index(url, embedder.model, embedder.dimensions)
    before = catalog(url)

    dry = await rebuild_vector_indexes(url, dry_run=True)
    assert [(s.action, s.old["m"], s.new["m"]) for s in dry] == [("would rebuild", 16, HNSW_M)]
    assert catalog(url) == before

    assert await rebuild_vector_indexes(url, model="some-other-model") == []
    assert catalog(url) == before
    done = await rebuild_vector_indexes(url, model=embedder.model)
    assert [s.action for s in done] == ["rebuilt"]


async def test_an_invalid_leftover_of_a_failed_build_is_dropped(app: App) -> None:
    url, embedder = app.db.url, app.ports.embedder
    await store_chunks(app)
    name = vector_index_name(embedder.model)
    leftover = name + REBUILD_SUFFIX
    # A concurrent build that fails after its catalog entry is made: it waits for a writer of
    # chunks and gives up (lock_timeout), leaving an INVALID index, as an interrupted rebuild does.
    with (
        psycopg.connect(url) as writer,
        psycopg.connect(url, autocommit=True) as builder,
    ):
        writer.execute("LOCK TABLE chunks IN ROW EXCLUSIVE MODE")
        builder.execute("SET lock_timeout = 200")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            builder.execute(
                sql.SQL(
                    "CREATE INDEX CONCURRENTLY {} ON chunks USING hnsw"
                    " ((embedding::vector({})) vector_cosine_ops) WITH (m = {})"
                    " WHERE embedding_model = {}"
                ).format(
                    sql.Identifier(leftover),
                    sql.Literal(embedder.dimensions),
                    sql.Literal(HNSW_M),
                    sql.Literal(embedder.model),
                )
            )
        writer.rollback()
    assert (leftover, False, [f"m={HNSW_M}"]) in catalog(url)
    async with app.db.connection() as conn:
        listed = {i.name: i for i in await list_vector_indexes(conn)}
    assert listed[leftover].leftover and not listed[leftover].valid
    status, detail = await vector_index_check(app.db, app.settings)
    assert status == "warn" and leftover in detail and "INVALID" in detail

    dry = await rebuild_vector_indexes(url, dry_run=True)
    assert [(s.index, s.action) for s in dry] == [
        (leftover, "would drop leftover"),
        (name, "up to date"),
    ]
    steps = await rebuild_vector_indexes(url)
    assert [(s.index, s.action) for s in steps] == [
        (leftover, "dropped leftover"),
        (name, "up to date"),
    ]
    assert [row[0] for row in catalog(url)] == [name]
    status, _ = await vector_index_check(app.db, app.settings)
    assert status == "ok"


async def test_two_rebuilds_never_run_at_once(app: App) -> None:
    url = app.db.url
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (REBUILD_LOCK_KEY,))
        with pytest.raises(PermanentError) as busy:
            await rebuild_vector_indexes(url)
    assert busy.value.code == "db.rebuild_busy"
