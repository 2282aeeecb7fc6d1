"""Shared fixtures: one embedded PostgreSQL per test session, a migrated template database, and a
fresh clone of it per test (CREATE DATABASE ... TEMPLATE is fast), plus factories for settings,
apps and documents shared by every tier.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingestd.app import App, open_app
from ingestd.config import HashEmbedderSettings, Settings, WorkerSettings
from ingestd.db.database import migrate_database
from ingestd.db.embedded import EmbeddedPostgres

TEMPLATE = "ingestd_template"
TEST_DIMENSIONS = 64


@pytest.fixture(scope="session")
def pg_base() -> Iterator[Path]:
    """Where test servers keep their data: not under pytest's tmp folder, whose permissions
    pytest resets to 0700 (which would lock out the server's system user when run as root)."""
    base = Path(tempfile.mkdtemp(prefix="ingestd-test-pg-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(pg_base: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(pg_base / "session")
    server.ensure_running()
    yield server
    server.stop(mode="immediate")


def _admin_url(server: EmbeddedPostgres) -> str:
    return server.status().url("postgres")


@pytest.fixture(scope="session")
async def template_db(pg_server: EmbeddedPostgres) -> str:
    with psycopg.connect(_admin_url(pg_server), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    url = pg_server.status().url(TEMPLATE)
    await migrate_database(url)
    return TEMPLATE


@pytest.fixture
def make_database(pg_server: EmbeddedPostgres, template_db: str) -> Iterator[Callable[[], str]]:
    """Clone the migrated template into a new database; returns its URL. Dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_admin_url(pg_server), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
        created.append(name)
        return pg_server.status().url(name)

    yield make
    if not pg_server.status().running:
        return
    with psycopg.connect(_admin_url(pg_server), autocommit=True) as conn:
        for name in created:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_url(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def make_settings(tmp_path: Path, db_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        worker = overrides.pop("worker", {})
        base: dict[str, Any] = {
            "home": tmp_path / "home",
            "database_url": db_url,
            "embedder": HashEmbedderSettings(dimensions=TEST_DIMENSIONS),
            "worker": WorkerSettings(
                **{
                    "lease_seconds": 5.0,
                    "poll_seconds": 0.5,
                    "backoff_base_seconds": 0.05,
                    "backoff_max_seconds": 0.2,
                    **worker,
                }
            ),
            "log_level": "WARNING",
        }
        return Settings(**{**base, **overrides})

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    async with open_app(settings) as opened:
        yield opened


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for an ``ingestd`` subprocess that uses ``settings``' database and home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTD_")}
    env.update(
        {
            "INGESTD_HOME": str(settings.home),
            "INGESTD_DATABASE_URL": settings.database_url or "",
            "INGESTD_EMBEDDER__PROVIDER": "hash",
            "INGESTD_EMBEDDER__DIMENSIONS": str(TEST_DIMENSIONS),
            "INGESTD_WORKER__LEASE_SECONDS": str(settings.worker.lease_seconds),
            "INGESTD_WORKER__POLL_SECONDS": str(settings.worker.poll_seconds),
            "INGESTD_WORKER__BACKOFF_BASE_SECONDS": str(settings.worker.backoff_base_seconds),
            "INGESTD_WORKER__BACKOFF_MAX_SECONDS": str(settings.worker.backoff_max_seconds),
            "INGESTD_LOG_FORMAT": "json",
            "INGESTD_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


# -- test processes (pytest-xdist) ----------------------------------------------------------------

ROOT_FIXTURES = "tests"  # the baseid of this file's fixtures: one of each per test process anyway
TESTS = Path(__file__).resolve().parent


def shared_fixture_scope(item: pytest.Item) -> str | None:
    """The widest folder or module whose module/package/session-scoped fixture this test uses
    (a server, a loaded model, a generated corpus), or None."""
    scopes: set[str] = set()
    for defs in item._fixtureinfo.name2fixturedefs.values():  # type: ignore[attr-defined]
        fixture = defs[-1]
        if fixture.scope == "function" or fixture.baseid in ("", ROOT_FIXTURES):
            continue
        if not Path(inspect.getfile(fixture.func)).is_relative_to(TESTS):
            continue  # a plugin's (pytest-asyncio's event loops)
        scopes.add(fixture.baseid)
    return min(scopes, key=len) if scopes else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` (``make test``) the tests that share such a fixture run in one
    process, so it is built once instead of once per process; the others are handed out one by
    one, in collection order (the long chaos run first)."""
    for item in items:
        scope = shared_fixture_scope(item)
        if scope is not None:
            item.add_marker(pytest.mark.xdist_group(scope))
