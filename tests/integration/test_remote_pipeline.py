"""The whole pipeline with parser=llamaparse and embedder=openai, against both mock servers over
real HTTP, with ``ingestd serve`` receiving the webhooks: the webhook path, the polling path,
duplicated/reordered webhooks, bad signatures, a 429 storm, a lost submit, and usage that
matches what the mocks served."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ingestd.api.app import create_app as create_api
from ingestd.app import App, open_app
from ingestd.config import LlamaParseSettings, OpenAIEmbedderSettings, Settings
from ingestd.ingest import Upload, ingest_uploads
from ingestd.mocks import BackgroundServer, free_port
from ingestd.mocks.llamaparse import create_app as create_llamaparse
from ingestd.mocks.llamaparse_behaviour import LlamaParseBehaviour
from ingestd.mocks.openai import OpenAIBehaviour
from ingestd.mocks.openai import create_app as create_openai
from tests.factories import markdown_document
from tests.waiting import eventually

SECRET = "whsec-test-only"


@dataclass
class Vendors:
    openai: BackgroundServer
    llamaparse: BackgroundServer

    def counters(self, server: BackgroundServer) -> dict[str, Any]:
        return httpx.get(server.url + "/_admin/counters").json()  # type: ignore[no-any-return]

    def behave(self, server: BackgroundServer, patch: dict[str, Any]) -> None:
        httpx.patch(server.url + "/_admin/behaviour", json=patch).raise_for_status()


@pytest.fixture
def vendors() -> Iterator[Vendors]:
    fast = LlamaParseBehaviour.model_validate(
        {
            "latency": {"fixed_ms": 20, "per_unit_ms": 5},
            "webhook_delivery": {"backoff_scale": 0.01},
        }
    )
    openai_app = create_openai(OpenAIBehaviour(max_inputs=8))
    with (
        BackgroundServer(openai_app) as oa,
        BackgroundServer(create_llamaparse(fast), lifespan="on") as lp,
    ):
        yield Vendors(oa, lp)


def remote_settings(
    make_settings: Callable[..., Settings],
    vendors: Vendors,
    hook_url: str,
    faults: dict[str, Any],
    worker: dict[str, Any],
    **parser: Any,
) -> Settings:
    return make_settings(
        faults=faults,
        worker=worker,
        parser=LlamaParseSettings(
            base_url=vendors.llamaparse.url,
            api_key="llx-test",
            webhook_url=hook_url,
            webhook_secret=SECRET,
            **{"poll_after_seconds": 60.0, **parser},
        ),
        embedder=OpenAIEmbedderSettings(
            base_url=vendors.openai.url + "/v1", api_key="sk-test", dimensions=32
        ),
    )


async def ingest_docs(app: App, n: int, paragraphs: int = 3) -> list[uuid.UUID]:
    uploads = [
        Upload(f"r{i}.md", markdown_document(i, paragraphs, seed=3).encode()) for i in range(n)
    ]
    return [
        r.job_id for r in await ingest_uploads(app.db, app.blobs, uploads, owner="o") if r.job_id
    ]


async def wait_complete(app: App, n: int, timeout: float = 20) -> None:
    async def all_complete() -> bool:
        rows = await app.db.fetch_all("SELECT state, count(*) AS n FROM jobs GROUP BY state")
        return rows == [{"state": "complete", "n": n}]

    await eventually(all_complete, timeout, interval=0.05, what=f"all {n} jobs complete")


@asynccontextmanager
async def pipeline(
    make_settings: Callable[..., Settings],
    vendors: Vendors,
    faults: dict[str, Any] | None = None,
    worker: dict[str, Any] | None = None,
    **parser: Any,
) -> AsyncIterator[App]:
    """The app, ``ingestd serve`` receiving the webhooks, and one in-process worker."""
    port = free_port("127.0.0.1")
    hook = f"http://127.0.0.1:{port}/v1/webhooks/llamaparse"
    settings = remote_settings(
        make_settings, vendors, hook, faults=faults or {}, worker=worker or {}, **parser
    )
    async with open_app(settings) as app:
        api = BackgroundServer(create_api(settings), port=port, lifespan="on")
        with api:
            worker = app.worker()
            task = asyncio.create_task(worker.run())
            try:
                yield app
            finally:
                worker.request_stop()
                await task


async def receipts(app: App) -> dict[str, int]:
    rows = await app.db.fetch_all(
        "SELECT outcome, count(*) AS n FROM webhook_receipts GROUP BY outcome"
    )
    return {r["outcome"]: r["n"] for r in rows}


async def test_webhook_path_and_usage_matches_the_mocks(
    make_settings: Callable[..., Settings], vendors: Vendors
) -> None:
    async with pipeline(make_settings, vendors) as app:  # polls only after 60 s
        await ingest_docs(app, 6)
        await wait_complete(app, 6, timeout=30)  # so the webhooks woke every job
        woken = await receipts(app)
        usage = await app.db.fetch_all(
            "SELECT sum((usage->>'embedding_tokens')::int) AS tokens,"
            " sum((usage->>'parse_pages')::int) AS pages,"
            " sum((usage->>'parse_credits')::numeric) AS credits FROM jobs"
        )
    assert woken["woken"] == 6
    openai, llamaparse = vendors.counters(vendors.openai), vendors.counters(vendors.llamaparse)
    assert usage[0]["tokens"] == openai["tokens"] > 0
    assert usage[0]["pages"] == llamaparse["pages"] > 0
    assert float(usage[0]["credits"]) == llamaparse["credits"]
    assert llamaparse["uploads"] == 6


async def test_polling_when_webhooks_are_dropped(
    make_settings: Callable[..., Settings], vendors: Vendors
) -> None:
    vendors.behave(vendors.llamaparse, {"webhook_faults": {"drop": {"probability": 1.0}}})
    async with pipeline(make_settings, vendors, poll_after_seconds=0.3) as app:
        await ingest_docs(app, 4)
        await wait_complete(app, 4)
        assert await receipts(app) == {}


async def test_duplicated_and_reordered_webhooks(
    make_settings: Callable[..., Settings], vendors: Vendors
) -> None:
    vendors.behave(
        vendors.llamaparse,
        {"webhook_faults": {"duplicate": {"probability": 1.0}, "reorder": {"probability": 1.0}}},
    )
    async with pipeline(make_settings, vendors) as app:
        ids = await ingest_docs(app, 4)
        await wait_complete(app, 4)
        seen = await receipts(app)
        moves = await app.db.fetch_all(
            "SELECT job_id, count(*) AS n FROM job_events WHERE to_state = 'parsed' GROUP BY job_id"
        )
    assert seen["woken"] == 4  # each job woken once; duplicates were no-ops
    assert sorted(m["job_id"] for m in moves) == sorted(ids)
    assert all(m["n"] == 1 for m in moves)


async def test_bad_signatures_are_ignored(
    make_settings: Callable[..., Settings], vendors: Vendors
) -> None:
    vendors.behave(vendors.llamaparse, {"webhook_faults": {"bad_signature": {"probability": 1.0}}})
    async with pipeline(make_settings, vendors, poll_after_seconds=0.5) as app:
        await ingest_docs(app, 3)
        await wait_complete(app, 3)  # by polling
        assert await receipts(app) == {}
    deliveries = httpx.get(vendors.llamaparse.url + "/_admin/webhooks").json()
    assert deliveries and {d["outcome"] for d in deliveries} == {"401"}


async def test_a_429_storm_is_waited_out_without_attempts(
    make_settings: Callable[..., Settings], vendors: Vendors
) -> None:
    vendors.behave(
        vendors.openai, {"rate_limits": {"requests_per_minute": 2, "window_seconds": 1.0}}
    )
    async with pipeline(make_settings, vendors, worker={"embed_slice": 8}) as app:
        await ingest_docs(app, 6, paragraphs=12)
        await wait_complete(app, 6, timeout=60)  # about 30 requests at 2 a second
        retries = await app.db.fetch_all(
            "SELECT count(*) AS n FROM job_events WHERE kind IN ('retry', 'fail')"
        )
        limits = await app.db.fetch_all("SELECT burst, source FROM rate_limits")
    # The shared limit learned the vendor's 2 requests a second from its headers, and every
    # request waited for capacity (or a 429's retry-after) in the worker: no attempt counted.
    assert retries == [{"n": 0}]
    assert {(round(r["burst"], 2), r["source"]) for r in limits} >= {(1.9, "headers")}


async def test_a_lost_submit_is_recovered_not_repeated(
    make_settings: Callable[..., Settings], vendors: Vendors
) -> None:
    """The worker dies between the upload and storing the remote id (here: the stage fails
    right after the upload); the next claim finds the remote job instead of uploading again."""
    once = {"remote_parse.after_submit": {"action": "raise_transient", "count": 1}}
    async with pipeline(make_settings, vendors, faults=once, poll_after_seconds=0.3) as app:
        await ingest_docs(app, 2)
        await wait_complete(app, 2)
        recovered = await app.db.fetch_all(
            "SELECT error->>'code' AS code FROM job_events WHERE kind = 'retry'"
        )
    assert vendors.counters(vendors.llamaparse)["uploads"] == 2
    assert recovered == [{"code": "fault.injected"}]


async def test_a_webhook_that_beats_the_submit_record_still_wakes_the_job(
    make_settings: Callable[..., Settings], vendors: Vendors
) -> None:
    """The vendor's webhook can arrive before the worker has committed its wait (here the worker
    dawdles after uploading); the job must not then sleep until the poll time."""
    dawdle = {"remote_parse.after_submit": {"action": "sleep", "seconds": 1.0}}
    async with pipeline(make_settings, vendors, faults=dawdle) as app:  # polls after 60 s
        await ingest_docs(app, 3)
        await wait_complete(app, 3, timeout=20)
