"""Blob stores under test: the local folder, PostgreSQL (a fresh test database), and S3 against a
moto server on a local port (real HTTP, a new bucket per test)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from moto.server import ThreadedMotoServer

from ingestd.blobs.postgres import PostgresBlobStore
from ingestd.blobs.s3 import S3BlobStore, s3_client
from ingestd.config import BlobSettings
from ingestd.db.embedded import EmbeddedPostgres
from ingestd.ports import BlobStore
from ingestd.storage import LocalBlobStore

# Small parts, so a blob of a few MB already spans several of them.
TEST_PART_BYTES = 256 * 1024
S3_MULTIPART_BYTES = 5 * 1024 * 1024  # S3's smallest part


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server in a thread of this process; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_bucket(s3_server: str) -> tuple[BlobSettings, Any]:
    """One bucket on the moto server for the session, and a client for it (made once: building a
    boto3 client takes a second). The credentials are made up at run time."""
    settings = BlobSettings(
        backend="s3",
        s3_bucket=f"ingestd-{uuid.uuid4().hex[:12]}",
        s3_endpoint_url=s3_server,
        s3_region="us-east-1",
        s3_access_key_id=secrets.token_hex(10),
        s3_secret_access_key=secrets.token_hex(20),
    )
    client = s3_client(settings)
    client.create_bucket(Bucket=settings.s3_bucket)
    return settings, client


@pytest.fixture
def s3_settings(s3_bucket: tuple[BlobSettings, Any]) -> BlobSettings:
    """The session's bucket, under a key prefix of this test's own."""
    return s3_bucket[0].model_copy(update={"s3_prefix": f"t-{uuid.uuid4().hex[:12]}/"})


@pytest.fixture(scope="module")
def blob_db_url(pg_server: EmbeddedPostgres, template_db: str) -> Iterator[str]:
    """One migrated database per module for the PostgreSQL store (blobs are content-addressed, so
    tests sharing it do not see each other's work as their own)."""
    name = f"blobs_{uuid.uuid4().hex[:12]}"
    admin = pg_server.status().url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield pg_server.status().url(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], BlobStore]]:
    """``make_store(kind)``: a new, empty store of that kind (its database or bucket made on
    demand, so a local-only test needs neither)."""
    opened: list[PostgresBlobStore] = []

    def make(kind: str) -> BlobStore:
        if kind == "local":
            return LocalBlobStore(tmp_path / "blobs")
        if kind == "postgres":
            store = PostgresBlobStore(
                request.getfixturevalue("blob_db_url"), part_bytes=TEST_PART_BYTES
            )
            store.open()
            opened.append(store)
            return store
        settings: BlobSettings = request.getfixturevalue("s3_settings")
        assert settings.s3_bucket is not None
        return S3BlobStore(
            request.getfixturevalue("s3_bucket")[1],
            settings.s3_bucket,
            settings.s3_prefix,
            multipart_bytes=S3_MULTIPART_BYTES,
        )

    yield make
    for store in opened:
        store.close()


@pytest.fixture(params=["local", "postgres", "s3"])
def store(request: pytest.FixtureRequest, make_store: Callable[[str], BlobStore]) -> BlobStore:
    return make_store(request.param)
