"""``ingestd status | jobs | search``: what the pipeline did, and what it found."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from ingestd import reports
from ingestd.app import App
from ingestd.cli.common import (
    AllOwnersOpt,
    JsonOpt,
    OwnerOpt,
    app,
    console,
    err_console,
    jobs_app,
    load_settings,
    print_json,
    run_command,
    scoped_owner,
    with_app,
    with_db,
)
from ingestd.db import Database
from ingestd.search import search as run_search
from ingestd.states import State
from ingestd.traffic.headers import parse_duration


@app.command()
def status(
    owner: str | None = OwnerOpt, all_owners: bool = AllOwnersOpt, as_json: bool = JsonOpt
) -> None:
    """Jobs by state, documents and chunks stored, and live workers."""
    settings = load_settings(owner=owner)

    async def body(db: Database) -> dict[str, Any]:
        return await reports.status(db, owner=scoped_owner(settings, all_owners))

    result = run_command(with_db(settings, body))
    if as_json:
        print_json(result)
        return
    from rich.table import Table

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
    for breaker in result["traffic"]["breakers"]:
        if breaker["state"] != "closed":
            console.print(f"breaker {breaker['service']} is {breaker['state']}")
    for row in result["traffic"]["waiting"]:
        console.print(f"{row['jobs']} job(s) waiting on {row['waiting_on']}")


@jobs_app.command("list")
def jobs_list(
    state: list[str] | None = typer.Option(None, "--state", help="Only jobs in these states."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    owner: str | None = OwnerOpt,
    all_owners: bool = AllOwnersOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Jobs with their state, error code and progress."""
    settings = load_settings(owner=owner)
    for s in state or []:
        if s not in {x.value for x in State}:
            raise typer.BadParameter(f"unknown state {s!r}", param_hint="--state")

    async def body(db: Database) -> list[dict[str, Any]]:
        scope = scoped_owner(settings, all_owners)
        return await reports.list_jobs(db, owner=scope, states=state, limit=limit)

    rows = run_command(with_db(settings, body))
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("job", "file", "state", "progress", "error", "waiting on")
    for row in rows:
        pct = row["progress"]["percent"]
        table.add_row(
            row["id"][:8],
            row["filename"],
            row["state"],
            "" if pct is None else f"{pct:.0f}%",
            row["error_code"] or "",
            row.get("waiting_on") or "",
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: str = typer.Argument(..., help="A job id or a unique prefix of one."),
    owner: str | None = OwnerOpt,
    all_owners: bool = AllOwnersOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One job in full, with its event history."""
    settings = load_settings(owner=owner)

    async def body(db: Database) -> dict[str, Any] | reports.JobNotFound:
        try:
            scope = scoped_owner(settings, all_owners)
            return await reports.get_job(db, job_id, owner=scope)
        except reports.JobNotFound as exc:
            return exc

    job = run_command(with_db(settings, body))
    if isinstance(job, reports.JobNotFound):
        err_console.print(job.message)
        raise typer.Exit(4)
    if as_json:
        print_json(job)
        return
    for key in (
        "id",
        "filename",
        "state",
        "progress",
        "last_error",
        "waiting_on",
        "attempt",
        "retry_count",
        "chunk_count",
        "chunker_version",
        "embedding_model",
        "usage",
        "correlation_id",
    ):
        console.print(f"{key:16} {job.get(key)}")
    from rich.table import Table

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
    state: list[str] | None = typer.Option(
        None, "--state", help="Only jobs in these states (e.g. failed_embedding)."
    ),
    code: list[str] | None = typer.Option(
        None, "--code", help="Only jobs whose last error has this code (e.g. embed.rate_limited)."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only jobs that entered their state this recently (30m, 1h, 2h30m)."
    ),
    owner: str | None = OwnerOpt,
    all_owners: bool = AllOwnersOpt,
) -> None:
    """Send failed jobs back to the start of the stage that failed; with --state or --code,
    parked jobs that match (e.g. --code budget.exhausted after raising a budget) go now too."""
    settings = load_settings(owner=owner)
    try:
        ids = [uuid.UUID(j) for j in job_ids] if job_ids else None
    except ValueError as exc:
        raise typer.BadParameter("job ids must be full UUIDs") from exc
    for s in state or []:
        if s not in {x.value for x in State}:
            raise typer.BadParameter(f"unknown state {s!r}", param_hint="--state")
    after = None
    if since is not None:
        seconds = parse_duration(since)
        if seconds is None:
            raise typer.BadParameter(f"not a duration: {since!r}", param_hint="--since")
        after = datetime.now(UTC) - timedelta(seconds=seconds)

    async def body(opened: App) -> list[uuid.UUID]:
        return await reports.retry_jobs(
            opened.db,
            ids,
            owner=scoped_owner(settings, all_owners),
            states=state,
            codes=code,
            since=after,
        )

    moved = run_command(with_app(settings, body))
    console.print(f"requeued {len(moved)} job(s)")


@app.command()
def search(
    text: str = typer.Argument(..., help="What to look for."),
    limit: int = typer.Option(5, "--limit", "-k", help="How many results."),
    document: str | None = typer.Option(None, help="Only in this document (id)."),
    owner: str | None = OwnerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Semantic search over stored chunks, best first."""
    settings = load_settings(owner=owner)
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

    hits = run_command(with_app(settings, body))
    if as_json:
        print_json(hits)
        return
    for i, hit in enumerate(hits, 1):
        where = " > ".join(hit["heading_path"]) or "(top)"
        console.print(f"[bold]{i}. {hit['filename']}[/bold]  score {hit['score']:.3f}  {where}")
        console.print("   " + hit["text"][:240].replace("\n", " "))


# -- serve, mock, doctor ----------------------------------------------------------------------
