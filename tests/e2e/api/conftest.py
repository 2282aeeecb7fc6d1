"""One ``ingestd serve`` process (and its own database) for the API tests, real HTTP to it, and
factories for API keys and documents. Tests isolate themselves by owner (``owner`` fixture)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from ingestd.config import BlobSettings, HashEmbedderSettings, Settings
from ingestd.db import Database
from ingestd.db.embedded import EmbeddedPostgres
from ingestd.ingest import IngestResult, Upload, ingest_uploads
from ingestd.service.keys import create_key
from ingestd.storage import LocalBlobStore
from tests.conftest import TEST_DIMENSIONS
from tests.e2e.procs import ServeProcess

SERVER_ENV = {
    "INGESTD_API__DOCS_ENABLED": "true",
    "INGESTD_API__MAX_UPLOAD_BYTES": str(256 * 1024),
    "INGESTD_API__MAX_REQUEST_BYTES": str(2 * 1024 * 1024),
    "INGESTD_API__MAX_PARTS": "20",
    "INGESTD_API__MAX_JSON_BYTES": str(64 * 1024),
    "INGESTD_API__MAX_HEADER_BYTES": str(8 * 1024),
    "INGESTD_API__JWT_SECRET": "test-jwt-secret-made-for-this-run-" + uuid.uuid4().hex,
    "INGESTD_LOG_LEVEL": "WARNING",
    # The tests look at the blob folder to check that refused uploads store nothing.
    "INGESTD_BLOBS__BACKEND": "local",
}


@pytest.fixture(scope="package")
def api_db_url(pg_server: EmbeddedPostgres, template_db: str) -> Iterator[str]:
    name = f"api_{uuid.uuid4().hex[:12]}"
    admin = pg_server.status().url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield pg_server.status().url(name)
    if pg_server.status().running:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="package")
def api_settings(api_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("api") / "home",
        database_url=api_db_url,
        embedder=HashEmbedderSettings(dimensions=TEST_DIMENSIONS),
        blobs=BlobSettings(backend="local"),
        log_level="WARNING",
    )


@pytest.fixture(scope="package")
def server(api_settings: Settings) -> Iterator[ServeProcess]:
    proc = ServeProcess(api_settings, api_settings.home.parent / "logs", **SERVER_ENV)
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
async def api_db(api_settings: Settings) -> AsyncIterator[Database]:
    db = Database.from_settings(api_settings)
    await db.open(migrate=False)
    yield db
    await db.close()


@pytest.fixture
def owner() -> str:
    return f"owner-{uuid.uuid4().hex[:8]}"


KeyFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def make_key(api_db: Database) -> KeyFactory:
    async def make(owner: str, *, admin: bool = False) -> str:
        return (await create_key(api_db, owner=owner, admin=admin)).token

    return make


@pytest.fixture
async def client(server: ServeProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


DocFactory = Callable[..., Awaitable[list[IngestResult]]]


@pytest.fixture
def make_documents(api_db: Database, api_settings: Settings) -> DocFactory:
    """Documents queued straight through the library (no worker runs in these tests)."""

    async def make(owner: str, count: int = 1) -> list[IngestResult]:
        uploads = [
            Upload(f"doc-{i}.md", f"# {owner} {i} {uuid.uuid4()}\n\nText.\n".encode())
            for i in range(count)
        ]
        return await ingest_uploads(
            api_db, LocalBlobStore(api_settings.blob_dir), uploads, owner=owner
        )

    return make


def assert_error(answer: httpx.Response, status: int, code: str) -> dict[str, object]:
    """The one error shape, with the request id of the X-Request-ID header."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code, body
    assert body["error"]["request_id"] == answer.headers["x-request-id"]
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def blob_files(home: Path) -> list[Path]:
    return [p for p in (home / "blobs").rglob("*") if p.is_file()]
