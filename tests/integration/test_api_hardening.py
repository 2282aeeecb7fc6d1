"""The HTTP app's operational hardening (issue 7, finding 8; both failed on main: /health/ready
hung for minutes with the database down, and the API docs pages were served by default)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from ingestd.api.app import READY_TIMEOUT_SECONDS, create_app
from ingestd.app import App
from ingestd.config import ApiSettings, BlobSettings, Settings
from ingestd.db import Database
from ingestd.testing.silent import silent_database

DOC_PAGES = ("/docs", "/redoc", "/openapi.json")


async def serve(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    api = create_app(settings, db=db)
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingestd") as client:
            yield client


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: a database that hangs."""
    with silent_database(backlog=16) as url:
        yield url


async def test_ready_answers_503_instead_of_hanging_when_the_database_hangs(
    settings: Settings, silent_server: str
) -> None:
    """The probe gives up after READY_TIMEOUT_SECONDS; the test allows ten times that, so only a
    hang fails it (how fast it answers is a figure of benchmarks/bench_ready.py)."""
    db = Database(silent_server)
    await db.open(migrate=False)
    # Blobs in a folder: the blob store would otherwise live in the hanging database too.
    local_blobs = settings.model_copy(update={"blobs": BlobSettings(backend="local")})
    try:
        async for client in serve(local_blobs, db):
            response = await asyncio.wait_for(
                client.get("/health/ready"), timeout=10 * READY_TIMEOUT_SECONDS
            )
    finally:
        await db.close()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "fail"
    assert body["checks"]["database"]["code"] == "db.unavailable"


async def test_ready_answers_200_with_the_database_up(settings: Settings, app: App) -> None:
    async for client in serve(settings, app.db):
        response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["status"] == "ok"


@pytest.mark.parametrize("enabled", [False, True])
async def test_api_docs_pages_are_off_unless_enabled(
    settings: Settings, app: App, enabled: bool
) -> None:
    configured = settings.model_copy(update={"api": ApiSettings(docs_enabled=enabled)})
    async for client in serve(configured, app.db):
        codes = {page: (await client.get(page)).status_code for page in DOC_PAGES}
    assert codes == dict.fromkeys(DOC_PAGES, 200 if enabled else 404)
