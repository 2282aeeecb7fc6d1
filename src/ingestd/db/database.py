"""The connection pool, migrations, and retries of transient database errors.

A lost connection or a PostgreSQL restart is normal: ``Database.transaction`` retries an
idempotent unit of work with jittered backoff until the database is back, and the pool checks
connections before handing them out, so a restarted server is picked up with no manual step.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import psycopg
import structlog
from pgvector.psycopg import register_vector_async
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ingestd.config import Settings
from ingestd.db.embedded import EmbeddedPostgres
from ingestd.errors import PermanentError, TransientError
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
# Indexes made before keep their parameters (CREATE INDEX IF NOT EXISTS by name) until
# `ingestd db rebuild-vector-index` (rebuild_vector_indexes) rebuilds them.
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


# -- rebuilding the vector indexes (ingestd db rebuild-vector-index) ---------------------------

# Arbitrary, fixed, distinct from MIGRATION_LOCK_KEY: held for a whole rebuild, so two rebuilds
# never run at once. Not the migration lock: a concurrent build waits for every open snapshot,
# and a process starting meanwhile waits in migrate_database for the migration lock with one.
REBUILD_LOCK_KEY = 0x1D6E57E
REBUILD_SUFFIX = "_new"
# pgvector's defaults: what an index built without WITH (m, ef_construction) has.
PGVECTOR_DEFAULT_M = 16
PGVECTOR_DEFAULT_EF_CONSTRUCTION = 64
SWAP_LOCK_TIMEOUT_MS = 2000
SWAP_ATTEMPTS = 15

_INDEXES_QUERY = """
SELECT c.relname AS name, i.indisvalid AS valid, c.reloptions AS options,
       a.atttypmod AS dimensions, pg_relation_size(c.oid) AS size_bytes,
       pg_get_expr(i.indpred, i.indrelid) AS predicate
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am am ON am.oid = c.relam
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1
WHERE i.indrelid = 'chunks'::regclass AND am.amname = 'hnsw'
  AND c.relname LIKE 'chunks\\_hnsw\\_%'
ORDER BY c.relname
"""
_MODEL_PREDICATE = re.compile(r"^\(?embedding_model = '((?:[^']|'')*)'::text\)?$")


@dataclass(frozen=True, slots=True)
class VectorIndex:
    """One embedding model's HNSW index on ``chunks`` as the catalog describes it."""

    name: str
    model: str | None  # None: a name or predicate ingestd did not make
    dimensions: int
    m: int
    ef_construction: int
    valid: bool
    size_bytes: int

    @property
    def leftover(self) -> bool:
        """A replacement a rebuild left behind (failed or interrupted before the swap)."""
        return self.name.endswith(REBUILD_SUFFIX)

    @property
    def outdated(self) -> bool:
        return (self.m, self.ef_construction) != (HNSW_M, HNSW_EF_CONSTRUCTION)

    def parameters(self) -> dict[str, int]:
        return {"m": self.m, "ef_construction": self.ef_construction}


def _index_from_row(row: tuple[Any, ...]) -> VectorIndex:
    name, valid, options, dimensions, size_bytes, predicate = row
    settings = dict(option.split("=", 1) for option in options or ())
    match = _MODEL_PREDICATE.match(predicate or "")
    model = match.group(1).replace("''", "'") if match else None
    base = name.removesuffix(REBUILD_SUFFIX)
    if model is not None and vector_index_name(model) != base:
        model = None
    return VectorIndex(
        name=name,
        model=model,
        dimensions=int(dimensions),
        m=int(settings.get("m", PGVECTOR_DEFAULT_M)),
        ef_construction=int(settings.get("ef_construction", PGVECTOR_DEFAULT_EF_CONSTRUCTION)),
        valid=bool(valid),
        size_bytes=int(size_bytes),
    )


async def list_vector_indexes(conn: Conn) -> list[VectorIndex]:
    """Every ``chunks_hnsw_*`` index on ``chunks``, leftovers of a failed rebuild included."""
    cur = await conn.execute(_INDEXES_QUERY)
    return [_index_from_row(row) for row in await cur.fetchall()]


@dataclass(slots=True)
class RebuildStep:
    """What ``rebuild_vector_indexes`` did (or, dry, would do) to one index."""

    index: str
    model: str | None
    action: str  # rebuilt | would rebuild | up to date | dropped leftover | would drop leftover
    old: dict[str, int]
    new: dict[str, int]
    valid: bool
    size_bytes: int
    new_size_bytes: int | None = None
    seconds: float | None = None
    swap_ms: float | None = None  # how long the drop-and-rename transaction took

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "model": self.model,
            "action": self.action,
            "old": self.old,
            "new": self.new,
            "valid": self.valid,
            "size_bytes": self.size_bytes,
            "new_size_bytes": self.new_size_bytes,
            "seconds": self.seconds,
            "swap_ms": self.swap_ms,
        }


async def rebuild_vector_indexes(
    url: str,
    *,
    model: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    on_step: Callable[[RebuildStep], None] | None = None,
) -> list[RebuildStep]:
    """Rebuild each model's HNSW index (or ``model``'s) whose build parameters differ from
    HNSW_M / HNSW_EF_CONSTRUCTION (every one with ``force``) without stopping searches or writes:
    ``CREATE INDEX CONCURRENTLY`` under ``<name>_new``, then, in one short transaction, drop the
    old index and rename the new one. Leftovers of a failed run (``<name>_new``, usually INVALID)
    are dropped first. ``dry_run`` only reports. Raises db.rebuild_busy if another rebuild runs.
    """
    steps: list[RebuildStep] = []

    def report(step: RebuildStep) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    current = {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET statement_timeout = 0")
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (REBUILD_LOCK_KEY,))
        locked = await cur.fetchone()
        if not (locked and locked[0]):
            raise PermanentError("db.rebuild_busy", "another vector index rebuild is running")
        try:
            indexes = await list_vector_indexes(conn)
            wanted = vector_index_name(model) if model is not None else None
            for index in indexes:
                if wanted is not None and index.name.removesuffix(REBUILD_SUFFIX) != wanted:
                    continue
                if not index.leftover:
                    continue
                step = RebuildStep(
                    index.name,
                    index.model,
                    "would drop leftover" if dry_run else "dropped leftover",
                    index.parameters(),
                    index.parameters(),
                    index.valid,
                    index.size_bytes,
                )
                if not dry_run:
                    started = time.monotonic()
                    await conn.execute(
                        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                            sql.Identifier(index.name)
                        )
                    )
                    step.seconds = round(time.monotonic() - started, 3)
                report(step)
            for index in indexes:
                if index.leftover or (wanted is not None and index.name != wanted):
                    continue
                if index.model is None:
                    continue  # not one ingestd made: leave it alone
                step = RebuildStep(
                    index.name,
                    index.model,
                    "up to date",
                    index.parameters(),
                    dict(current),
                    index.valid,
                    index.size_bytes,
                )
                if not (force or index.outdated or not index.valid):
                    report(step)
                    continue
                if dry_run:
                    step.action = "would rebuild"
                    report(step)
                    continue
                started = time.monotonic()
                step.new_size_bytes, step.swap_ms = await _rebuild_one(conn, index)
                step.action, step.valid = "rebuilt", True
                step.seconds = round(time.monotonic() - started, 3)
                log.info("db.vector_index_rebuilt", **step.to_json())
                report(step)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (REBUILD_LOCK_KEY,))
    return steps


async def _rebuild_one(conn: Conn, index: VectorIndex) -> tuple[int, float]:
    """Build ``index``'s replacement concurrently and swap it in; the new index's size and the
    milliseconds the swap transaction took (its last attempt)."""
    assert index.model is not None
    temporary = index.name + REBUILD_SUFFIX
    await conn.execute(
        sql.SQL(
            "CREATE INDEX CONCURRENTLY {temporary} ON chunks USING hnsw "
            "((embedding::vector({dims})) vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})"
            " WHERE embedding_model = {model}"
        ).format(
            temporary=sql.Identifier(temporary),
            dims=sql.Literal(index.dimensions),
            model=sql.Literal(index.model),
            m=sql.Literal(HNSW_M),
            ef=sql.Literal(HNSW_EF_CONSTRUCTION),
        )
    )
    # The swap needs ACCESS EXCLUSIVE on chunks for a moment: a short lock_timeout, retried, so
    # it never queues long behind a writer while every later search and insert waits behind it.
    swap_ms = 0.0
    for attempt in range(SWAP_ATTEMPTS):
        started = time.monotonic()
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {SWAP_LOCK_TIMEOUT_MS}")
                # Also serialise with ensure_vector_index and migrations, briefly.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                await conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index.name)))
                await conn.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        sql.Identifier(temporary), sql.Identifier(index.name)
                    )
                )
            swap_ms = round((time.monotonic() - started) * 1000, 1)
            break
        except psycopg.errors.LockNotAvailable:
            if attempt == SWAP_ATTEMPTS - 1:
                raise
            log.warning("db.vector_index_swap_retry", index=index.name, attempt=attempt + 1)
            await asyncio.sleep(backoff_delay(attempt, base=0.1, cap=2.0))
    cur = await conn.execute(
        "SELECT pg_relation_size(oid) FROM pg_class WHERE relname = %s", (index.name,)
    )
    row = await cur.fetchone()
    return (int(row[0]) if row else 0), swap_ms
