"""Dedup and re-index: same content, same settings → same document; new settings → re-index,
with search answering throughout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ingestd import reports
from ingestd.app import App, open_app
from ingestd.config import ChunkerSettings, Settings
from ingestd.ingest import PipelineVersions, Upload, ingest_uploads
from ingestd.search import search
from tests.factories import markdown_document

QUERY = "coral reefs shelter fish ocean warming"


def versions(app: App) -> PipelineVersions:
    return PipelineVersions(app.ports.chunker.version, app.ports.embedder.model)


def uploads(n: int) -> list[Upload]:
    return [
        Upload(f"d{i}.md", markdown_document(i, paragraphs=20, seed=5).encode()) for i in range(n)
    ]


async def chunk_versions(app: App) -> dict[str, int]:
    rows = await app.db.fetch_all(
        "SELECT j.chunker_version AS v, count(*) AS n FROM chunks c"
        " JOIN jobs j ON j.document_id = c.document_id GROUP BY 1"
    )
    return {r["v"]: r["n"] for r in rows}


async def test_reupload_with_same_settings_is_a_no_op(app: App) -> None:
    first = await ingest_uploads(app.db, app.blobs, uploads(3), owner="o", versions=versions(app))
    assert await app.worker(burst=True).run() == 0
    again = await ingest_uploads(app.db, app.blobs, uploads(3), owner="o", versions=versions(app))
    assert [r.duplicate for r in again] == [True] * 3
    assert [r.reindexed for r in again] == [False] * 3
    assert [r.document_id for r in again] == [r.document_id for r in first]
    assert (await reports.status(app.db))["counts"]["complete"] == 3


async def test_new_settings_reindex_and_search_keeps_working(
    make_settings: Callable[..., Settings],
) -> None:
    async with open_app(make_settings()) as app:
        await ingest_uploads(app.db, app.blobs, uploads(6), owner="o", versions=versions(app))
        assert await app.worker(burst=True).run() == 0
        before = await chunk_versions(app)
    assert len(before) == 1

    smaller = make_settings(chunker=ChunkerSettings(tokens=120, overlap=10))
    async with open_app(smaller) as app:
        # Re-uploading under new settings re-indexes that document...
        again = await ingest_uploads(
            app.db, app.blobs, uploads(1), owner="o", versions=versions(app)
        )
        assert again[0].duplicate and again[0].reindexed
        # ...and `reindex` takes the rest.
        moved = await reports.reindex_jobs(
            app.db,
            chunker_version=app.ports.chunker.version,
            embedding_model=app.ports.embedder.model,
            owner="o",
        )
        assert len(moved) == 5
        worker = app.worker(burst=True)
        run = asyncio.create_task(worker.run())
        answers = 0
        while not run.done():
            hits = await search(app.db, app.ports.embedder, QUERY, owner="o", limit=3)
            assert len(hits) == 3, "search must answer during a re-index"
            answers += 1
            await asyncio.sleep(0.01)
        assert await run == 0 and answers > 0
        after = await chunk_versions(app)
        status = await reports.status(app.db)
    assert list(after) == [app.ports.chunker.version] != list(before)
    assert sum(after.values()) > sum(before.values())  # smaller chunks, more of them
    assert status["counts"]["complete"] == 6
    buffers = status["counts"]
    assert buffers["failed_chunking"] == 0 and buffers["failed_embedding"] == 0
