"""The worker's fill rule against the OpenAI mock over real HTTP: while every batch waits on the
micro-batcher, the worker claims more jobs, so one request carries documents of many batches;
when nothing is left to claim, the partial request leaves at once; ``fill_max_jobs`` bounds how
many jobs it holds for that."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ingestd.app import App, open_app
from ingestd.config import EmbedBatchingSettings, OpenAIEmbedderSettings, Settings
from ingestd.ingest import Upload, ingest_uploads
from ingestd.mocks import BackgroundServer
from ingestd.mocks.openai import OpenAIBehaviour
from ingestd.mocks.openai import create_app as create_openai
from tests.factories import markdown_document

DOCUMENTS = 12


@pytest.fixture
def openai_mock() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_openai(OpenAIBehaviour())) as server:
        yield server


def counters(server: BackgroundServer) -> dict[str, Any]:
    return httpx.get(server.url + "/_admin/counters").json()  # type: ignore[no-any-return]


def fill_settings(
    make_settings: Callable[..., Settings], server: BackgroundServer, **batching: Any
) -> Settings:
    """Two jobs at a time in batches of two; a partial request could wait a minute, so only the
    fill rule (or the undriven 0 ms linger) decides when one leaves."""
    return make_settings(
        worker={"concurrency": 2, "batch_size": 2},
        embedder=OpenAIEmbedderSettings(
            base_url=server.url + "/v1", api_key="sk-test", dimensions=32
        ),
        embed_batching=EmbedBatchingSettings(
            **{"linger_ms": 0, "fill_wait_ms": 60_000, **batching}
        ),
    )


async def drain(settings: Settings) -> list[dict[str, Any]]:
    async with open_app(settings) as app:
        await ingest(app)
        assert await app.worker(burst=True).run() == 0
        return await app.db.fetch_all("SELECT state, count(*) AS n FROM jobs GROUP BY state")


async def ingest(app: App) -> list[uuid.UUID]:
    uploads = [Upload(f"f{i}.md", markdown_document(i, 3).encode()) for i in range(DOCUMENTS)]
    results = await ingest_uploads(app.db, app.blobs, uploads, owner="o")
    return [r.job_id for r in results if r.job_id]


async def test_the_worker_claims_beyond_its_concurrency_to_fill_one_request(
    make_settings: Callable[..., Settings], openai_mock: BackgroundServer
) -> None:
    states = await drain(fill_settings(make_settings, openai_mock))
    assert states == [{"state": "complete", "n": DOCUMENTS}]
    served = counters(openai_mock)
    assert served["requests"] == 1  # six batches of two, one request, sent when none were left
    assert served["embeddings"] >= DOCUMENTS


async def test_without_the_fill_rule_each_pair_of_batches_sends_its_own_requests(
    make_settings: Callable[..., Settings], openai_mock: BackgroundServer
) -> None:
    states = await drain(fill_settings(make_settings, openai_mock, fill=False))
    assert states == [{"state": "complete", "n": DOCUMENTS}]
    assert counters(openai_mock)["requests"] >= DOCUMENTS // 4  # at most two batches meet


async def test_fill_max_jobs_bounds_the_jobs_one_request_can_carry(
    make_settings: Callable[..., Settings], openai_mock: BackgroundServer
) -> None:
    states = await drain(fill_settings(make_settings, openai_mock, fill_max_jobs=4))
    assert states == [{"state": "complete", "n": DOCUMENTS}]
    assert counters(openai_mock)["requests"] >= DOCUMENTS // 4  # four documents at most each
