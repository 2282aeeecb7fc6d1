"""Traffic control against the real database and the OpenAI mock over HTTP: the shared GCRA
limit, poison isolation, a circuit breaker that parks jobs through an outage, and a budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ingestd import reports
from ingestd.app import App, open_app
from ingestd.config import (
    BreakerSettings,
    BudgetSettings,
    OpenAIEmbedderSettings,
    Settings,
    TrafficSettings,
)
from ingestd.db import Database
from ingestd.ingest import Upload, ingest_uploads
from ingestd.mocks import BackgroundServer
from ingestd.mocks.faults import MockState
from ingestd.mocks.openai import OpenAIBehaviour, create_app
from ingestd.traffic.limits import Limit, SharedLimiter
from tests.factories import markdown_document
from tests.waiting import eventually

POISON = "POISON-PILL"


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(OpenAIBehaviour(max_inputs=8))) as running:
        yield running


def openai_settings(
    make_settings: Callable[..., Settings], server: BackgroundServer, **traffic: Any
) -> Settings:
    return make_settings(
        embedder=OpenAIEmbedderSettings(
            base_url=server.url + "/v1", api_key="sk-test", dimensions=32
        ),
        traffic=TrafficSettings(**traffic),
    )


async def ingest(app: App, texts: list[str], owner: str = "o") -> None:
    uploads = [Upload(f"d{i}.md", text.encode()) for i, text in enumerate(texts)]
    await ingest_uploads(app.db, app.blobs, uploads, owner=owner)


async def states(app: App) -> dict[str, int]:
    rows = await app.db.fetch_all("SELECT state, count(*) AS n FROM jobs GROUP BY state")
    return {r["state"]: r["n"] for r in rows}


# -- the shared limit ---------------------------------------------------------------------------


async def test_two_limiters_share_one_limit(settings: Settings) -> None:
    """Reservations of two processes' limiters never exceed burst + rate * time, together."""
    limit = Limit("svc:m:requests", rate=50.0, burst=5.0)
    async with Database.from_settings(settings) as db_a, Database.from_settings(settings) as db_b:
        limiters = [SharedLimiter(db_a), SharedLimiter(db_b)]
        for limiter in limiters:
            await limiter.ensure([limit])
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def send_time(i: int) -> float:
            grant = await limiters[i % 2].acquire({limit.name: 1.0}, max_wait=5.0)
            assert grant.reserved
            return loop.time() - started + grant.wait

        sends = sorted(await asyncio.gather(*(send_time(i) for i in range(40))))
        slow = Limit("svc:m:tokens", rate=1.0, burst=10.0)
        await limiters[0].ensure([slow])
        both = {limit.name: 1.0, slow.name: 10.0}
        first = await limiters[0].acquire(both, max_wait=5.0)
        refused = await limiters[1].acquire(both, max_wait=0.5)
        slow_row = await db_a.fetch_all("SELECT tat FROM rate_limits ORDER BY name")
    # The n-th request goes no earlier than GCRA allows (one unit of slack for the clocks).
    for n, at in enumerate(sends, start=1):
        assert n <= limit.burst + limit.rate * at + 1
    assert sends[-1] >= (40 - limit.burst - 1) / limit.rate
    # Both limits at once, or neither: the refused call reserved nothing on the fast one.
    assert first.reserved and not refused.reserved
    assert refused.wait > 5 and refused.slowest == slow.name
    assert len(slow_row) == 2


# -- poison ---------------------------------------------------------------------------------------


async def test_a_poisonous_chunk_fails_only_its_document(
    make_settings: Callable[..., Settings],
    server: BackgroundServer,
    state: MockState[OpenAIBehaviour],
) -> None:
    state.patch_behaviour({"reject_inputs_containing": POISON})
    texts = [markdown_document(i, 2, seed=5) for i in range(10)]
    texts[3] += f"\n\nThis paragraph carries the {POISON} that the vendor refuses.\n"
    texts[7] += f"\n\nAnother {POISON} here.\n"
    async with open_app(openai_settings(make_settings, server)) as app:
        await ingest(app, texts)
        assert await app.worker(burst=True).run() == 0
        rows = await app.db.fetch_all(
            "SELECT d.filename, j.state, j.last_error FROM jobs j JOIN documents d"
            " ON d.id = j.document_id ORDER BY d.filename"
        )
    failed = {r["filename"]: r["last_error"] for r in rows if r["state"] != "complete"}
    assert set(failed) == {"d3.md", "d7.md"}
    for error in failed.values():
        assert error["code"] == "embed.invalid_request"
        assert error["vendor_code"] == "content_filter"
    assert {r["state"] for r in rows if r["filename"] not in failed} == {"complete"}


# -- breaker --------------------------------------------------------------------------------------


async def test_outage_parks_jobs_without_burning_attempts(
    make_settings: Callable[..., Settings],
    server: BackgroundServer,
    state: MockState[OpenAIBehaviour],
) -> None:
    breaker = BreakerSettings(min_calls=1, failure_rate=0.5, open_seconds=0.5)
    settings = openai_settings(make_settings, server, breaker=breaker)
    state.patch_behaviour({"faults": [{"kind": "http_503"}]})  # down until further notice
    async with open_app(settings) as app:
        await ingest(app, [markdown_document(i, 2, seed=9) for i in range(12)])
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: _breaker_opened_twice(app), timeout=20)
            parked = await app.db.fetch_all(
                "SELECT state, retry_count, waiting_on FROM jobs WHERE state <> 'complete'"
            )
            assert parked and all(r["retry_count"] == 0 for r in parked)
            assert {r["waiting_on"] for r in parked} <= {"breaker:openai", None}
            state.patch_behaviour({"faults": []})  # the vendor is back
            await eventually(lambda: _all_complete(app, 12), timeout=30)
        finally:
            worker.request_stop()
            await task
        rows = await app.db.fetch_all("SELECT retry_count, waiting_on FROM jobs")
        events = await app.db.fetch_all(
            "SELECT from_state, to_state FROM breaker_events ORDER BY id"
        )
        status = await reports.status(app.db)
    assert all(r["retry_count"] == 0 and r["waiting_on"] is None for r in rows)
    pairs = [(e["from_state"], e["to_state"]) for e in events]
    assert pairs[0] == ("closed", "open") and pairs[-1] == ("half_open", "closed")
    assert ("open", "half_open") in pairs
    assert status["traffic"]["breakers"][0]["state"] == "closed"


async def _breaker_opened_twice(app: App) -> bool:
    rows = await app.db.fetch_all(
        "SELECT count(*) AS n FROM breaker_events WHERE to_state = 'open'"
    )
    return bool(rows[0]["n"] >= 2)


async def _all_complete(app: App, n: int) -> bool:
    return await states(app) == {"complete": n}


# -- budget ---------------------------------------------------------------------------------------


async def test_embedding_stops_at_the_budget_and_resumes_when_raised(
    make_settings: Callable[..., Settings],
    server: BackgroundServer,
    state: MockState[OpenAIBehaviour],
) -> None:
    texts = [markdown_document(i, 3, seed=11) for i in range(16)]
    tight = BudgetSettings(service="openai", tokens=1500)
    settings = openai_settings(make_settings, server, budgets=[tight], budget_recheck_seconds=60)
    # One batch of 4 at a time: a budget is checked before each call, so concurrent batches
    # may each make one more call (the overshoot is bounded by the calls in flight). The fill
    # rule would hold more batches' calls for one request, so it is off here.
    settings.worker.batch_size = settings.worker.concurrency = 4
    settings.embed_batching.fill = False
    async with open_app(settings) as app:
        await ingest(app, texts)
        assert await app.worker(burst=True).run() == 0  # exits: the rest is parked
        first = await states(app)
        parked = await app.db.fetch_all(
            "SELECT state, retry_count, waiting_on, last_error ->> 'code' AS code FROM jobs"
            " WHERE state <> 'complete'"
        )
        spent = await app.db.fetch_all("SELECT sum(tokens) AS t FROM usage_ledger")
    assert 0 < first.get("complete", 0) < 16
    assert parked and {r["code"] for r in parked} == {"budget.exhausted"}
    assert {r["waiting_on"] for r in parked} == {"budget:openai:all:day"}
    assert all(r["retry_count"] == 0 for r in parked)
    assert int(spent[0]["t"]) <= 1500
    assert state.counters.get("tokens") == int(spent[0]["t"])  # the ledger = what was served

    raised = settings.model_copy(
        update={"traffic": TrafficSettings(budgets=[BudgetSettings(service="openai", tokens=1e9)])}
    )
    async with open_app(raised) as app:
        woken = await reports.retry_jobs(app.db, codes=["budget.exhausted"])
        assert len(woken) == len(parked)
        assert await app.worker(burst=True).run() == 0
        assert await states(app) == {"complete": 16}
        costs = await reports.status(app.db)
    assert costs["usage"]["embedding_tokens"] == state.counters.get("tokens")
