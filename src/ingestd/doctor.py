"""``ingestd doctor``: check that a deployment can work, and (``--live``) that its vendors answer.

Without ``--live`` nothing leaves the machine. With it, each configured real vendor gets one tiny
call whose cost is capped by construction: one embedding of the word "ping" (about one token,
~$0.00000002) and one LlamaParse job of a one-line text file at the ``fast`` tier (one page, one
credit, ~$0.00125). It is never part of ``make test``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from ingestd import __version__
from ingestd.app import build_embedder, build_remote
from ingestd.blobs import blob_backend, open_blob_store
from ingestd.config import LlamaParseSettings, OpenAIEmbedderSettings, Settings
from ingestd.db import Database, resolve_database_url
from ingestd.redact import redact

LIVE_PARSE_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str

    def __post_init__(self) -> None:
        # Details quote driver and vendor errors, which may quote a URL or a key.
        object.__setattr__(self, "detail", redact(self.detail))

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


async def _check(name: str, body: Callable[[], Awaitable[str]]) -> CheckResult:
    try:
        return CheckResult(name, "ok", await body())
    except _Skip as skip:
        return CheckResult(name, "skip", str(skip))
    except Exception as exc:
        return CheckResult(name, "fail", f"{type(exc).__name__}: {exc}")


class _Skip(Exception):
    pass


async def run_checks(settings: Settings, *, live: bool = False) -> list[CheckResult]:
    results = [CheckResult("ingestd", "ok", f"version {__version__}, home {settings.home}")]
    results.append(await _check("database", lambda: _database(settings)))
    results.append(await _check("blob store", lambda: _blobs(settings)))
    results.append(await _check("embedder", lambda: _embedder(settings, live)))
    results.append(await _check("parser", lambda: _parser(settings, live)))
    results += await _operations(settings)
    return results


async def _operations(settings: Settings) -> list[CheckResult]:
    """Alerts firing, stale workers, long-held jobs, the vector indexes, disk
    (ingestd.observability.checks)."""
    from ingestd.observability import checks

    results = [_verdict("disk", lambda: checks.disk_check(settings))]
    try:
        async with Database.from_settings(settings) as db:
            for name, check in (
                ("alerts", checks.alerts_check),
                ("workers", checks.workers_check),
                ("long-held jobs", checks.long_leases_check),
                ("vector index", checks.vector_index_check),
            ):
                try:
                    status, detail = await check(db, settings)
                except Exception as exc:
                    status, detail = "fail", f"{type(exc).__name__}: {exc}"
                results.append(CheckResult(name, status, detail))
    except Exception as exc:
        results.append(CheckResult("operations", "skip", f"no database: {exc}"))
    return results


def _verdict(name: str, body: Callable[[], tuple[str, str]]) -> CheckResult:
    try:
        status, detail = body()
    except Exception as exc:
        return CheckResult(name, "fail", f"{type(exc).__name__}: {exc}")
    return CheckResult(name, status, detail)


async def _database(settings: Settings) -> str:
    async with Database.from_settings(settings) as db:
        rows = await db.fetch_all(
            "SELECT current_setting('server_version') AS pg,"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vector,"
            " (SELECT max(version) FROM schema_migrations) AS schema,"
            " (SELECT count(*) FROM workers WHERE status <> 'stopped'"
            "   AND heartbeat_at > now() - interval '1 minute') AS workers"
        )
    row = rows[0]
    where = "embedded" if not settings.database_url else "external"
    return (
        f"{where} PostgreSQL {row['pg']}, pgvector {row['vector']}, schema v{row['schema']}, "
        f"{row['workers']} live worker(s)"
    )


async def _blobs(settings: Settings) -> str:
    backend = blob_backend(settings)
    url = await asyncio.to_thread(resolve_database_url, settings) if backend == "postgres" else ""
    probe = f"ingestd doctor {time.time()}".encode()

    def round_trip() -> str:
        with open_blob_store(settings, url) as store:
            key = store.put(probe)
            try:
                if store.get(key) != probe:
                    raise RuntimeError("read back different bytes")
            finally:
                store.delete(key)
            return f"{backend}: {store} writable"

    return await asyncio.to_thread(round_trip)


async def _embedder(settings: Settings, live: bool) -> str:
    if isinstance(settings.embedder, OpenAIEmbedderSettings) and not live:
        key = "set" if settings.embedder.resolved_api_key() else "MISSING"
        raise _Skip(
            f"openai {settings.embedder.model} at {settings.embedder.base_url}, key "
            f"{key}; run with --live to call it"
        )
    embedder = build_embedder(settings)
    result = await embedder.embed(["ping"])
    dims = len(result.vectors[0])
    if dims != embedder.dimensions:
        raise RuntimeError(
            f"{embedder.model} returned {dims} dimensions, expected {embedder.dimensions}"
        )
    return f"{embedder.model}: {dims} dimensions, {result.usage.prompt_tokens} token(s) used"


async def _parser(settings: Settings, live: bool) -> str:
    config = settings.parser
    if not isinstance(config, LlamaParseSettings):
        from ingestd.parsers.local import LocalParser

        doc = await asyncio.to_thread(
            LocalParser().parse, b"# ok\n\nhello", "text/markdown", "doctor.md"
        )
        return f"local parsers ({len(doc.markdown)} chars from a probe)"
    if not live:
        key = "set" if config.resolved_api_key() else "MISSING"
        hook = config.webhook_url or "none (polling only)"
        raise _Skip(
            f"llamaparse {config.api_version} at {config.base_url}, key {key}, webhook "
            f"{hook}; run with --live to call it"
        )
    async with httpx.AsyncClient() as http:
        remote = build_remote(settings, http)
        assert remote is not None
        client = remote.client
        job_id = await client.submit(b"ingestd doctor: ping\n", "ingestd-doctor.txt", tier="fast")
        deadline = time.monotonic() + LIVE_PARSE_TIMEOUT_SECONDS
        pause = 0.25
        while time.monotonic() < deadline:
            status = await client.status(job_id)
            if status.state == "completed":
                result = await client.fetch_result(job_id)
                return (
                    f"llamaparse job {job_id}: {result.usage.pages} page(s), "
                    f"{result.usage.credits} credit(s)"
                )
            if status.state in ("failed", "cancelled"):
                raise RuntimeError(
                    f"llamaparse job {job_id} {status.state}: {status.error_message}"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
        raise RuntimeError(f"llamaparse job {job_id} not done in {LIVE_PARSE_TIMEOUT_SECONDS}s")
