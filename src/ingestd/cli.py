"""The ``ingestd`` command: a thin surface over the library (see docs/reference/cli.md)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingestd import reports
from ingestd.app import App, open_app
from ingestd.config import Settings
from ingestd.db import QUERIES, Database
from ingestd.db.database import migrate_database, resolve_database_url
from ingestd.db.embedded import EmbeddedPostgres
from ingestd.errors import IngestdError
from ingestd.ingest import IngestResult, PipelineVersions, ingest_files
from ingestd.logs import configure_logging
from ingestd.search import search as run_search
from ingestd.states import FAILED_STATES, TERMINAL_STATES, State

T = TypeVar("T")

app = typer.Typer(
    help="ingestd: durable document ingestion into PostgreSQL + pgvector.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the embedded PostgreSQL server.", no_args_is_help=True)
jobs_app = typer.Typer(help="Inspect and retry jobs.", no_args_is_help=True)
mock_app = typer.Typer(
    help="Run a mock vendor server (OpenAI, LlamaParse) for offline work.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
app.add_typer(mock_app, name="mock")

console = Console()
err_console = Console(stderr=True)

OwnerOpt = typer.Option(
    None, "--owner", envvar="INGESTD_OWNER", help="Owner of the documents (default: 'local')."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON document instead of a table.")


def _settings(*, service: bool = False, **overrides: Any) -> Settings:
    """Settings from the environment plus the command's flags; logging configured.

    Commands a person runs and reads (everything but ``worker`` and ``serve``) log warnings only
    unless INGESTD_LOG_LEVEL says otherwise, so their output stays readable.
    """
    settings = Settings()
    if not service and "INGESTD_LOG_LEVEL" not in os.environ:
        overrides.setdefault("log_level", "WARNING")
    worker = {k: v for k, v in overrides.pop("worker", {}).items() if v is not None}
    if worker:
        overrides["worker"] = settings.worker.model_copy(update=worker)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except IngestdError as exc:
        err_console.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(2) from exc


async def _with_app(settings: Settings, body: Callable[[App], Awaitable[T]]) -> T:
    async with open_app(settings) as opened:
        return await body(opened)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# -- init and db ------------------------------------------------------------------------------


@app.command()
def init() -> None:
    """Create the ingestd home, start the database if embedded, and apply migrations."""
    settings = _settings()
    settings.home.mkdir(parents=True, exist_ok=True)

    async def body(opened: App) -> None:
        console.print(f"ingestd home: {settings.home}")
        console.print(f"database:     {_safe_url(opened.db.url)}")
        console.print("schema:       up to date")

    _run(_with_app(settings, body))


def _safe_url(url: str) -> str:
    """A URL fit to print: any password replaced by ***."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return url


def _embedded() -> EmbeddedPostgres:
    settings = _settings()
    if settings.database_url:
        err_console.print("INGESTD_DATABASE_URL is set: the embedded server is not in use.")
    return EmbeddedPostgres(settings.pgdata)


@db_app.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL (no-op if running) and apply migrations."""
    server = _embedded()
    status = server.ensure_running()
    _run(migrate_database(status.url()))
    console.print(f"running (pid {status.pid}): {status.url()}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL. Workers using it wait and reconnect when it is back."""
    stopped = _embedded().stop()
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status(as_json: bool = JsonOpt) -> None:
    """Whether the embedded PostgreSQL is running, where its data lives, how to connect."""
    status = _embedded().status()
    info = {
        "running": status.running,
        "pid": status.pid,
        "pgdata": str(status.pgdata),
        "url": status.url(),
    }
    if as_json:
        _print_json(info)
        return
    for key, value in info.items():
        console.print(f"{key:8} {value}")
    if not status.running:
        raise typer.Exit(3)


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (start the embedded server if needed): `psql "$(ingestd db url)"`."""
    settings = _settings()
    sys.stdout.write(resolve_database_url(settings) + "\n")


# -- ingest, worker, run ----------------------------------------------------------------------


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (recursively)."),
    owner: str | None = OwnerOpt,
    priority: int = typer.Option(0, help="Higher runs first."),
    wait: bool = typer.Option(
        False, "--wait", help="Show progress until every job is terminal; exit 1 if any failed."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Upload documents and queue their jobs (workers do the processing)."""
    settings = _settings(owner=owner)

    async def body(opened: App) -> int:
        results = await ingest_files(
            opened.db,
            opened.blobs,
            paths,
            owner=settings.owner,
            max_attempts=settings.worker.max_attempts,
            versions=_versions(opened),
            priority=priority,
        )
        if as_json:
            _print_json([_result_json(r) for r in results])
        else:
            new = sum(not r.duplicate for r in results)
            again = sum(r.reindexed for r in results)
            err_console.print(
                f"queued {new} new document(s); {len(results) - new} already known"
                + (f", {again} of them re-indexed with the current settings" if again else "")
            )
        if not wait:
            return 0
        counts = await _watch([r.job_id for r in results if r.job_id], opened.db)
        return 1 if any(counts.get(s.value) for s in FAILED_STATES) else 0

    raise typer.Exit(_run(_with_app(settings, body)))


def _versions(opened: App) -> PipelineVersions:
    return PipelineVersions(opened.ports.chunker.version, opened.ports.embedder.model)


def _result_json(r: IngestResult) -> dict[str, Any]:
    return {
        "document_id": str(r.document_id),
        "job_id": str(r.job_id) if r.job_id else None,
        "filename": r.filename,
        "duplicate": r.duplicate,
        "reindexed": r.reindexed,
    }


async def _job_counts(db: Database, job_ids: list[uuid.UUID]) -> dict[str, int]:
    rows = await db.fetch_all(QUERIES["job_states_of"], {"ids": job_ids})
    return {row["state"]: row["n"] for row in rows}


async def _watch(job_ids: list[uuid.UUID], db: Database, poll: float = 0.25) -> dict[str, int]:
    """A progress bar until every job in ``job_ids`` is terminal; returns the state counts."""
    terminal = {s.value for s in TERMINAL_STATES}
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task("ingesting", total=len(job_ids), detail="")
        while True:
            counts = await _job_counts(db, job_ids)
            done = sum(n for s, n in counts.items() if s in terminal)
            failed = sum(n for s, n in counts.items() if State(s) in FAILED_STATES)
            bar.update(task, completed=done, detail=f"failed {failed}" if failed else "")
            if done >= len(job_ids):
                return counts
            await asyncio.sleep(poll)


@app.command()
def worker(
    concurrency: int | None = typer.Option(
        None, envvar="INGESTD_WORKER__CONCURRENCY", help="Jobs processed at once by this process."
    ),
    batch_size: int | None = typer.Option(
        None, envvar="INGESTD_WORKER__BATCH_SIZE", help="Jobs claimed per statement."
    ),
    lease_seconds: float | None = typer.Option(
        None, envvar="INGESTD_WORKER__LEASE_SECONDS", help="Lease length; heartbeats renew it."
    ),
    burst: bool = typer.Option(False, "--burst", help="Exit when nothing is runnable."),
) -> None:
    """Process jobs until stopped (SIGTERM/SIGINT: finish or release within the grace period)."""
    settings = _settings(
        service=True,
        worker={
            "concurrency": concurrency,
            "batch_size": batch_size,
            "lease_seconds": lease_seconds,
        },
    )

    async def body(opened: App) -> int:
        return await opened.worker(burst=burst).run()

    raise typer.Exit(_run(_with_app(settings, body)))


@app.command()
def run(
    paths: list[Path] = typer.Argument(..., help="Files or folders (recursively)."),
    owner: str | None = OwnerOpt,
    processes: int = typer.Option(0, help="Worker processes to start (0: work in this process)."),
    concurrency: int | None = typer.Option(
        None, envvar="INGESTD_WORKER__CONCURRENCY", help="Jobs at once per worker."
    ),
    query: str | None = typer.Option(None, help="Search for this when done and show the best hit."),
) -> None:
    """Ingest PATHs and drive workers until every job is done; print a summary."""
    settings = _settings(owner=owner, worker={"concurrency": concurrency})
    started = time.monotonic()

    async def body(opened: App) -> int:
        results = await ingest_files(
            opened.db,
            opened.blobs,
            paths,
            owner=settings.owner,
            max_attempts=settings.worker.max_attempts,
            versions=_versions(opened),
        )
        job_ids = [r.job_id for r in results if r.job_id]
        counts = await _drive(opened, job_ids, processes)
        elapsed = time.monotonic() - started
        await _summary(opened, counts, len(results), elapsed, query)
        return 1 if any(counts.get(s.value) for s in FAILED_STATES) else 0

    raise typer.Exit(_run(_with_app(settings, body)))


async def _drive(opened: App, job_ids: list[uuid.UUID], processes: int) -> dict[str, int]:
    if processes <= 0:
        work = opened.worker()
        task = asyncio.create_task(work.run())
        try:
            return await _watch(job_ids, opened.db)
        finally:
            work.request_stop()
            await task
    env = {
        **os.environ,
        "INGESTD_DATABASE_URL": opened.db.url,
        "INGESTD_LOG_LEVEL": os.environ.get("INGESTD_LOG_LEVEL", "WARNING"),
    }
    children = [
        subprocess.Popen([sys.executable, "-m", "ingestd", "worker"], env=env)
        for _ in range(processes)
    ]
    try:
        return await _watch(job_ids, opened.db)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=60)


async def _summary(
    opened: App, counts: dict[str, int], documents: int, elapsed: float, query: str | None
) -> None:
    overview = await reports.status(opened.db, owner=opened.settings.owner)
    table = Table(title="ingestd run", show_header=False)
    table.add_row("documents", str(documents))
    for state, n in sorted(counts.items()):
        table.add_row(f"  {state}", str(n))
    table.add_row("chunks (all documents)", str(overview["chunks"]))
    table.add_row("time", f"{elapsed:.1f} s ({documents / elapsed:.1f} documents/s)")
    console.print(table)
    if query:
        hits = await run_search(
            opened.db, opened.ports.embedder, query, owner=opened.settings.owner, limit=1
        )
        if hits:
            hit = hits[0]
            console.print(
                f"\nsearch {query!r}: best match [bold]{hit.filename}[/bold] "
                f"(score {hit.score:.3f})"
            )
            console.print(
                "  " + hit.text[:300].replace("\n", " ") + ("…" if len(hit.text) > 300 else "")
            )


# -- status, jobs, search ---------------------------------------------------------------------


@app.command()
def status(owner: str | None = OwnerOpt, as_json: bool = JsonOpt) -> None:
    """Jobs by state, documents and chunks stored, and live workers."""
    settings = _settings()

    async def body(opened: App) -> dict[str, Any]:
        return await reports.status(opened.db, owner=owner)

    result = _run(_with_app(settings, body))
    if as_json:
        _print_json(result)
        return
    table = Table("state", "jobs")
    for state, n in result["counts"].items():
        if n:
            table.add_row(state, str(n))
    console.print(table)
    usage = result["usage"]
    console.print(
        f"embedding tokens {usage['embedding_tokens']}  parse pages {usage['parse_pages']}  "
        f"credits {usage['parse_credits']:g}  cost ${usage['cost_usd']:.4f}"
    )
    console.print(
        f"documents {result['documents']}  chunks {result['chunks']}  "
        f"leased {result['leased']}  workers {len(result['workers'])}"
    )


@jobs_app.command("list")
def jobs_list(
    state: list[str] | None = typer.Option(None, "--state", help="Only jobs in these states."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    owner: str | None = OwnerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Jobs with their state, error code and progress."""
    settings = _settings()
    for s in state or []:
        if s not in {x.value for x in State}:
            raise typer.BadParameter(f"unknown state {s!r}", param_hint="--state")

    async def body(opened: App) -> list[dict[str, Any]]:
        return await reports.list_jobs(opened.db, owner=owner, states=state, limit=limit)

    rows = _run(_with_app(settings, body))
    if as_json:
        _print_json(rows)
        return
    table = Table("job", "file", "state", "progress", "error")
    for row in rows:
        pct = row["progress"]["percent"]
        table.add_row(
            row["id"][:8],
            row["filename"],
            row["state"],
            "" if pct is None else f"{pct:.0f}%",
            row["error_code"] or "",
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: str = typer.Argument(..., help="A job id or a unique prefix of one."),
    owner: str | None = OwnerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One job in full, with its event history."""
    settings = _settings()

    async def body(opened: App) -> dict[str, Any]:
        return await reports.get_job(opened.db, job_id, owner=owner)

    try:
        job = _run(_with_app(settings, body))
    except reports.JobNotFound as exc:
        err_console.print(str(exc))
        raise typer.Exit(4) from exc
    if as_json:
        _print_json(job)
        return
    for key in (
        "id",
        "filename",
        "state",
        "progress",
        "last_error",
        "attempt",
        "retry_count",
        "chunk_count",
        "chunker_version",
        "embedding_model",
        "usage",
        "correlation_id",
    ):
        console.print(f"{key:16} {job.get(key)}")
    table = Table("when", "event", "from", "to", "worker", "ms", "error")
    for ev in job["events"]:
        error = (ev["error"] or {}).get("code", "")
        table.add_row(
            ev["created_at"][11:23],
            ev["kind"],
            ev["from_state"],
            ev["to_state"],
            (ev["worker_id"] or "")[-8:],
            str(ev["duration_ms"] or ""),
            error,
        )
    console.print(table)


@jobs_app.command("retry")
def jobs_retry(
    job_ids: list[str] | None = typer.Argument(None, help="Job ids (default: every failed job)."),
    owner: str | None = OwnerOpt,
) -> None:
    """Send failed jobs back to the start of the stage that failed."""
    settings = _settings()
    try:
        ids = [uuid.UUID(j) for j in job_ids] if job_ids else None
    except ValueError as exc:
        raise typer.BadParameter("job ids must be full UUIDs") from exc

    async def body(opened: App) -> list[uuid.UUID]:
        return await reports.retry_jobs(opened.db, ids, owner=owner)

    moved = _run(_with_app(settings, body))
    console.print(f"requeued {len(moved)} job(s)")


@app.command()
def reindex(
    document: list[str] | None = typer.Option(
        None, "--document", help="Only these documents (ids; repeatable)."
    ),
    force: bool = typer.Option(
        False, "--all", help="Every complete document, even those made with the current settings."
    ),
    owner: str | None = OwnerOpt,
    wait: bool = typer.Option(
        False, "--wait", help="Show progress until re-indexing is done (needs running workers)."
    ),
) -> None:
    """Re-chunk and re-embed documents made with other chunker or embedding settings.

    Search keeps answering from the old chunks until each document's new ones are swapped in.
    """
    settings = _settings()
    try:
        doc_ids = [uuid.UUID(d) for d in document] if document else None
    except ValueError as exc:
        raise typer.BadParameter("document ids must be full UUIDs") from exc

    async def body(opened: App) -> int:
        moved = await reports.reindex_jobs(
            opened.db,
            chunker_version=opened.ports.chunker.version,
            embedding_model=opened.ports.embedder.model,
            owner=owner,
            document_ids=doc_ids,
            force=force,
        )
        err_console.print(
            f"re-indexing {len(moved)} document(s) with "
            f"{opened.ports.chunker.version} + {opened.ports.embedder.model}"
        )
        if wait and moved:
            counts = await _watch(moved, opened.db)
            return 1 if any(counts.get(s.value) for s in FAILED_STATES) else 0
        return 0

    raise typer.Exit(_run(_with_app(settings, body)))


@app.command()
def search(
    text: str = typer.Argument(..., help="What to look for."),
    limit: int = typer.Option(5, "--limit", "-k", help="How many results."),
    document: str | None = typer.Option(None, help="Only in this document (id)."),
    owner: str | None = OwnerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Semantic search over stored chunks, best first."""
    settings = _settings(owner=owner)
    doc_id = uuid.UUID(document) if document else None

    async def body(opened: App) -> list[dict[str, Any]]:
        hits = await run_search(
            opened.db,
            opened.ports.embedder,
            text,
            owner=settings.owner,
            limit=limit,
            document_id=doc_id,
        )
        return [h.to_json() for h in hits]

    hits = _run(_with_app(settings, body))
    if as_json:
        _print_json(hits)
        return
    for i, hit in enumerate(hits, 1):
        where = " > ".join(hit["heading_path"]) or "(top)"
        console.print(f"[bold]{i}. {hit['filename']}[/bold]  score {hit['score']:.3f}  {where}")
        console.print("   " + hit["text"][:240].replace("\n", " "))


# -- serve, mock, doctor ----------------------------------------------------------------------


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", envvar="INGESTD_SERVE_HOST", help="Address to bind."),
    port: int = typer.Option(8900, envvar="INGESTD_SERVE_PORT", help="Port to listen on."),
) -> None:
    """The HTTP app: health checks and the LlamaParse webhook (POST /v1/webhooks/llamaparse)."""
    import uvicorn

    from ingestd.api.app import create_app

    settings = _settings(service=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower())


FaultOpt = typer.Option(
    [],
    "--fault",
    help="Request fault, e.g. 'http_503:0.1' or "
    "'timeout:count=2' (repeatable); see docs/reference/mock-*.md.",
)


HostOpt = typer.Option("127.0.0.1", help="Address to bind.")
BehaviourOpt = typer.Option(None, help="Behaviour as a JSON file or JSON text.")
ApiKeyOpt = typer.Option(None, help="The one key accepted (default: any).")
SeedOpt = typer.Option(None, help="Seed for fault draws.")


@mock_app.command("openai")
def mock_openai(
    host: str = HostOpt,
    port: int = typer.Option(8901, help="Port to listen on."),
    behaviour: str | None = BehaviourOpt,
    api_key: str | None = ApiKeyOpt,
    latency_ms: float | None = typer.Option(None, help="Fixed latency per request."),
    per_token_ms: float | None = typer.Option(None, help="Extra latency per input token."),
    rpm: int | None = typer.Option(None, help="Requests-per-minute budget (429 beyond)."),
    tpm: int | None = typer.Option(None, help="Tokens-per-minute budget (429 beyond)."),
    quota_tokens: int | None = typer.Option(None, help="Total tokens before insufficient_quota."),
    fault: list[str] = FaultOpt,
    seed: int | None = SeedOpt,
    vectors: str | None = typer.Option(
        None, help="'hash' (default; the hash embedder's space) or 'token-hash' (cheaper)."
    ),
) -> None:
    """A mock of OpenAI's /v1/embeddings and /v1/models."""
    from ingestd.mocks.openai import serve as serve_openai

    serve_openai(
        host,
        port,
        behaviour=behaviour,
        api_key=api_key,
        latency_ms=latency_ms,
        per_token_ms=per_token_ms,
        rpm=rpm,
        tpm=tpm,
        quota_tokens=quota_tokens,
        faults=fault,
        seed=seed,
        vectors=vectors,
    )


@mock_app.command("llamaparse")
def mock_llamaparse(
    host: str = HostOpt,
    port: int = typer.Option(8902, help="Port to listen on."),
    behaviour: str | None = BehaviourOpt,
    api_key: str | None = ApiKeyOpt,
    latency_ms: float | None = typer.Option(None, help="Fixed time per job."),
    per_page_ms: float | None = typer.Option(None, help="Extra time per page parsed."),
    uploads_per_window: int | None = typer.Option(None, help="Uploads allowed per window."),
    window_seconds: float | None = typer.Option(None, help="The rate-limit window."),
    retry_after: bool | None = typer.Option(None, help="Send Retry-After with 429s."),
    quota_credits: float | None = typer.Option(None, help="Credits before 402."),
    fault: list[str] = FaultOpt,
    webhook_backoff_scale: float | None = typer.Option(
        None, help="Scale the 1/2/4 s webhook retry schedule (tests use 0.01)."
    ),
    seed: int | None = SeedOpt,
) -> None:
    """A mock of LlamaParse (v2 and v1 routes, jobs, credits, signed webhooks)."""
    from ingestd.mocks.llamaparse import serve as serve_llamaparse

    serve_llamaparse(
        host,
        port,
        behaviour=behaviour,
        api_key=api_key,
        latency_ms=latency_ms,
        per_page_ms=per_page_ms,
        uploads_per_window=uploads_per_window,
        window_seconds=window_seconds,
        retry_after=retry_after,
        quota_credits=quota_credits,
        faults=fault,
        webhook_backoff_scale=webhook_backoff_scale,
        seed=seed,
    )


@app.command()
def doctor(
    live: bool = typer.Option(
        False,
        "--live",
        help="Also make one tiny, cost-capped call to "
        "each configured real vendor (OpenAI, LlamaParse).",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Check the configuration, the database, the blob store and the adapters."""
    from ingestd.doctor import run_checks

    settings = _settings()
    results = _run(run_checks(settings, live=live))
    if as_json:
        _print_json([r.to_json() for r in results])
    else:
        for r in results:
            mark = {"ok": "[green]ok[/green]", "skip": "[yellow]skip[/yellow]"}.get(
                r.status, "[red]FAIL[/red]"
            )
            console.print(f"{mark:>20}  {r.name:28} {r.detail}")
    if any(r.status == "fail" for r in results):
        raise typer.Exit(1)


def main() -> None:
    app()
