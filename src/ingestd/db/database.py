"""The connection pool, migrations, and retries of transient database errors.

A lost connection or a PostgreSQL restart is normal: ``Database.transaction`` retries an
idempotent unit of work with jittered backoff until the database is back, and the pool checks
connections before handing them out, so a restarted server is picked up with no manual step.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import psycopg
import structlog
from pgvector.psycopg import register_vector_async
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ingestd.config import Settings
from ingestd.db.embedded import EmbeddedPostgres
from ingestd.errors import TransientError
from ingestd.redact import redact
from ingestd.states import ALLOWED_TRANSITIONS, TERMINAL_STATES, State

log = structlog.get_logger(__name__)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

# Arbitrary, fixed: the advisory lock that serialises schema changes across processes.
MIGRATION_LOCK_KEY = 0x1D6E57D


def resolve_database_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return EmbeddedPostgres(settings.pgdata).ensure_running().url()


def is_transient_db_error(exc: BaseException) -> bool:
    """Connection loss, server shutdown, serialization failure: worth retrying."""
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.SerializationFailure):
        return True
    return isinstance(exc, psycopg.errors.DeadlockDetected)


def backoff_delay(attempt: int, base: float = 0.05, cap: float = 2.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2**attempt)))


class Database:
    """A pool of connections to one PostgreSQL database, with transient-error retries."""

    def __init__(self, url: str, *, pool_size: int = 8, statement_timeout_ms: int = 30_000) -> None:
        self.url = url
        self.statement_timeout_ms = statement_timeout_ms
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            configure=self._configure,
            check=AsyncConnectionPool.check_connection,
            reconnect_timeout=3600,
            timeout=120,
            name="ingestd",
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            resolve_database_url(settings),
            pool_size=settings.db_pool_size,
            statement_timeout_ms=settings.statement_timeout_ms,
        )

    async def _configure(self, conn: Conn) -> None:
        await register_vector_async(conn)
        await conn.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
        await conn.commit()

    async def open(self, migrate: bool = True) -> None:
        if migrate:
            await self.retrying(lambda: migrate_database(self.url))
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        async with self.pool.connection() as conn:
            yield conn

    async def transaction(
        self, work: Callable[[Conn], Awaitable[T]], *, deadline: float | None = 600.0
    ) -> T:
        """Run ``work`` in one transaction, retrying it whole on transient errors.

        ``work`` must be idempotent as a unit (it is: every write is fenced or an upsert).
        """

        async def once() -> T:
            async with self.pool.connection() as conn, conn.transaction():
                return await work(conn)

        return await self.retrying(once, deadline=deadline)

    async def retrying(
        self, call: Callable[[], Awaitable[T]], *, deadline: float | None = 600.0
    ) -> T:
        loop = asyncio.get_running_loop()
        give_up = None if deadline is None else loop.time() + deadline
        attempt = 0
        while True:
            try:
                return await call()
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                if give_up is not None and loop.time() >= give_up:
                    raise TransientError("db.unavailable", f"database unavailable: {exc}") from exc
                attempt += 1
                delay = backoff_delay(attempt)
                log.warning("db.retry", attempt=attempt, delay=round(delay, 3), error=str(exc))
                await asyncio.sleep(delay)

    async def ping(self, timeout: float) -> dict[str, Any]:
        """One ``SELECT 1`` within ``timeout`` seconds, no retries: a health check's detail."""
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(timeout), self.pool.connection(timeout=timeout) as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # any failure is the answer, not an error of the check
            error = "timed out" if isinstance(exc, TimeoutError) else redact(str(exc))
            return {"status": "fail", "code": "db.unavailable", "error": error}
        elapsed = asyncio.get_running_loop().time() - started
        return {"status": "ok", "ms": round(elapsed * 1000, 1)}

    async def fetch_all(self, query: sql.SQL | str, params: Any = None) -> list[dict[str, Any]]:
        async def work(conn: Conn) -> list[dict[str, Any]]:
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            await cur.execute(query, params)
            return await cur.fetchall()

        return await self.transaction(work)

    async def execute(self, query: sql.SQL | str, params: Any = None) -> int:
        async def work(conn: Conn) -> int:
            cur = await conn.execute(query, params)
            return cur.rowcount

        return await self.transaction(work)

    async def ensure_vector_index(self, model: str, dimensions: int) -> None:
        """A partial HNSW index for one embedding model's vectors (cosine distance)."""
        await self.retrying(lambda: ensure_vector_index(self.url, model, dimensions))


# HNSW build parameters (docs/decisions/0009-drain-performance.md, "HNSW build parameters"):
# m = 8 halves the insert cost of pgvector's default (16), and searching with ef_search = 80
# (search.py) finds more of the exact top 10 than m = 16 with the default ef_search (40).
# Indexes made before keep their parameters (CREATE INDEX IF NOT EXISTS by name).
HNSW_M = 8
HNSW_EF_CONSTRUCTION = 64


def vector_index_name(model: str) -> str:
    return "chunks_hnsw_" + hashlib.sha256(model.encode()).hexdigest()[:16]


async def ensure_vector_index(url: str, model: str, dimensions: int) -> None:
    name = vector_index_name(model)
    statement = sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON chunks USING hnsw "
        "((embedding::vector({dims})) vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})"
        " WHERE embedding_model = {model}"
    ).format(
        name=sql.Identifier(name),
        dims=sql.Literal(dimensions),
        model=sql.Literal(model),
        m=sql.Literal(HNSW_M),
        ef=sql.Literal(HNSW_EF_CONSTRUCTION),
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        exists = await conn.execute("SELECT 1 FROM pg_class WHERE relname = %s", (name,))
        if await exists.fetchone():
            return
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            await conn.execute(statement)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration, in order."""
    folder = resources.files("ingestd.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def migrate_database(url: str) -> list[str]:
    """Apply missing migrations under an advisory lock; returns the names applied."""
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for version, name, text in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(text.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
            await sync_state_machine(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    if applied:
        log.info("db.migrated", applied=applied)
    return applied


async def sync_state_machine(conn: Conn) -> None:
    """Copy states.py's states and transitions into the tables the trigger checks."""
    states = [(s.value, s in TERMINAL_STATES) for s in State]
    edges = sorted((a.value, b.value) for a, b in ALLOWED_TRANSITIONS)
    cur = await conn.execute("SELECT name, terminal FROM job_states ORDER BY name")
    current_states = await cur.fetchall()
    cur = await conn.execute("SELECT from_state, to_state FROM job_transitions ORDER BY 1, 2")
    if current_states == sorted(states) and await cur.fetchall() == edges:
        return  # the usual case: nothing changed, write nothing
    async with conn.transaction():
        cur = conn.cursor()
        await cur.executemany(
            "INSERT INTO job_states (name, terminal) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET terminal = EXCLUDED.terminal",
            states,
        )
        await conn.execute("DELETE FROM job_transitions")
        await cur.executemany(
            "INSERT INTO job_transitions (from_state, to_state) VALUES (%s, %s)", edges
        )
