"""``ingestd init | ingest | worker | run | reindex``: getting documents through the pipeline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer

from ingestd import reports
from ingestd.app import App
from ingestd.blobs import blob_backend
from ingestd.cli.common import (
    AllOwnersOpt,
    JsonOpt,
    OwnerOpt,
    app,
    console,
    err_console,
    load_settings,
    print_json,
    rich_console,
    run_command,
    scoped_owner,
    with_app,
)
from ingestd.db import QUERIES, Database
from ingestd.db.conninfo import passwordless_env
from ingestd.folders import Skipped
from ingestd.ingest import IngestReport, IngestResult, PipelineVersions, ingest_paths
from ingestd.redact import redact
from ingestd.search import search as run_search
from ingestd.states import FAILED_STATES, TERMINAL_STATES, State


@app.command()
def init() -> None:
    """Create the ingestd home, start the database if embedded, and apply migrations."""
    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)

    async def body(opened: App) -> None:
        console.print(f"ingestd home: {settings.home}")
        console.print(f"database:     {redact(opened.db.url)}")
        console.print("schema:       up to date")

    run_command(with_app(settings, body))


# `ingest` leaves out entries it cannot take (links out of the roots, FIFOs, unreadable files):
# a script must be able to tell that from a clean run, and from an error (2).
EXIT_SKIPPED = 3

FollowSymlinksOpt = typer.Option(
    False,
    "--follow-symlinks",
    help="Follow symbolic links inside folders (never to targets outside the named paths).",
)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (recursively)."),
    owner: str | None = OwnerOpt,
    follow_symlinks: bool = FollowSymlinksOpt,
    priority: int = typer.Option(0, help="Higher runs first."),
    wait: bool = typer.Option(
        False, "--wait", help="Show progress until every job is terminal; exit 1 if any failed."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Upload documents and queue their jobs (workers do the processing).

    Exit status: 0 when every file was queued (or already known); 3 when some entries were
    skipped (each is listed with its reason) and every other file was queued; 1 with --wait
    when a job failed (this wins over 3); 2 on an error.
    """
    settings = load_settings(owner=owner)

    async def body(opened: App) -> int:
        report = await _ingest(opened, paths, priority, follow_symlinks)
        if as_json:
            queued = [_result_json(r) for r in report.results]
            print_json(queued + [_skipped_json(s) for s in report.skipped])
        else:
            _print_report(report)
        skipped = EXIT_SKIPPED if report.skipped else 0
        if not wait:
            return skipped
        counts = await _watch(report.job_ids, opened.db)
        return 1 if any(counts.get(s.value) for s in FAILED_STATES) else skipped

    raise typer.Exit(run_command(with_app(settings, body)))


async def _ingest(
    opened: App, paths: list[Path], priority: int = 0, follow_symlinks: bool = False
) -> IngestReport:
    settings = opened.settings
    versions = PipelineVersions(opened.ports.chunker.version, opened.ports.embedder.model)
    return await ingest_paths(
        opened.db,
        opened.blobs,
        paths,
        owner=settings.owner,
        max_attempts=settings.worker.max_attempts,
        priority=priority,
        versions=versions,
        follow_symlinks=follow_symlinks,
        max_bytes=settings.parser.max_bytes,
    )


def _print_report(report: IngestReport) -> None:
    results = report.results
    new = sum(not r.duplicate for r in results)
    again = sum(r.reindexed for r in results)
    err_console.print(
        f"queued {new} new document(s); {len(results) - new} already known"
        + (f", {again} of them re-indexed with the current settings" if again else "")
        + (f"; skipped {len(report.skipped)}" if report.skipped else "")
    )
    for entry in report.skipped:
        line = f"  skipped {entry.path}: {entry.code} ({entry.reason})"
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)


def _result_json(r: IngestResult) -> dict[str, Any]:
    return {
        "status": "duplicate" if r.duplicate else "queued",
        "document_id": str(r.document_id),
        "job_id": str(r.job_id) if r.job_id else None,
        "filename": r.filename,
        "duplicate": r.duplicate,
        "reindexed": r.reindexed,
    }


def _skipped_json(entry: Skipped) -> dict[str, Any]:
    return {"status": "skipped", "path": entry.path, "code": entry.code, "reason": entry.reason}


async def _job_counts(db: Database, job_ids: list[uuid.UUID]) -> dict[str, int]:
    rows = await db.fetch_all(QUERIES["job_states_of"], {"ids": job_ids})
    return {row["state"]: row["n"] for row in rows}


async def _watch(jobs: Iterable[uuid.UUID], db: Database, poll: float = 0.25) -> dict[str, int]:
    """A progress bar until every job in ``jobs`` is terminal; returns the state counts.

    Jobs are counted once however often they are named (identical files share one), and a job
    deleted meanwhile (its document removed) counts as done, so the wait always ends.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    job_ids = sorted(set(jobs))
    terminal = {s.value for s in TERMINAL_STATES}
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=rich_console(stderr=True), transient=False) as bar:
        task = bar.add_task("ingesting", total=len(job_ids), detail="")
        while True:
            counts = await _job_counts(db, job_ids)
            gone = len(job_ids) - sum(counts.values())
            done = gone + sum(n for s, n in counts.items() if s in terminal)
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
    metrics_port: int | None = typer.Option(
        None,
        envvar="INGESTD_OBSERVABILITY__METRICS_PORT",
        help="Serve this process's Prometheus metrics on this port (0: any free port, logged).",
    ),
) -> None:
    """Process jobs until stopped (SIGTERM/SIGINT: finish or release within the grace period)."""
    settings = load_settings(
        service=True,
        worker={
            "concurrency": concurrency,
            "batch_size": batch_size,
            "lease_seconds": lease_seconds,
        },
    )
    if metrics_port is not None:
        from ingestd.observability.metrics import serve_process_metrics

        serve_process_metrics(metrics_port, settings.observability.metrics_host)

    async def body(opened: App) -> int:
        return await opened.worker(burst=burst).run()

    raise typer.Exit(run_command(with_app(settings, body)))


@app.command()
def run(
    paths: list[Path] = typer.Argument(..., help="Files or folders (recursively)."),
    owner: str | None = OwnerOpt,
    follow_symlinks: bool = FollowSymlinksOpt,
    processes: int = typer.Option(0, help="Worker processes to start (0: work in this process)."),
    concurrency: int | None = typer.Option(
        None, envvar="INGESTD_WORKER__CONCURRENCY", help="Jobs at once per worker."
    ),
    query: str | None = typer.Option(None, help="Search for this when done and show the best hit."),
    metrics_port: int | None = typer.Option(
        None,
        envvar="INGESTD_OBSERVABILITY__METRICS_PORT",
        help="Serve Prometheus metrics: worker process i (from 0) of --processes on this port + i "
        "(0: free ports), each printed; without --processes, this process on this port.",
    ),
) -> None:
    """Ingest PATHs and drive workers until every job is done; print a summary."""
    settings = load_settings(owner=owner, worker={"concurrency": concurrency})
    started = time.monotonic()
    host = settings.observability.metrics_host
    ports = child_metrics_ports(metrics_port, processes, host)
    if metrics_port is not None and processes <= 0:
        from ingestd.observability.metrics import serve_process_metrics

        bound = serve_process_metrics(metrics_port, host)
        console.print(f"metrics at http://{host}:{bound}/metrics")

    async def body(opened: App) -> int:
        report = await _ingest(opened, paths, follow_symlinks=follow_symlinks)
        _print_report(report)
        counts = await _drive(opened, report.job_ids, processes, ports)
        elapsed = time.monotonic() - started
        await _summary(opened, counts, len(report.results), elapsed, query)
        return 1 if any(counts.get(s.value) for s in FAILED_STATES) else 0

    raise typer.Exit(run_command(with_app(settings, body)))


def child_metrics_ports(base: int | None, processes: int, host: str) -> list[int]:
    """The metrics port of each worker process ``run`` starts: ``base + i``; for ``base`` 0,
    ports free right now (so they can be printed); none when ``base`` is unset."""
    if base is None or processes <= 0:
        return []
    if base == 0:
        from ingestd.mocks import free_port

        ports: list[int] = []
        while len(ports) < processes:
            port = free_port(host)
            if port not in ports:
                ports.append(port)
        return ports
    if base + processes - 1 > 65535:
        raise typer.BadParameter(f"ports {base}..{base + processes - 1} do not all exist")
    return [base + i for i in range(processes)]


async def _drive(
    opened: App, job_ids: set[uuid.UUID], processes: int, metrics_ports: list[int]
) -> dict[str, int]:
    if processes <= 0:
        work = opened.worker()
        task = asyncio.create_task(work.run())
        try:
            return await _watch(job_ids, opened.db)
        finally:
            work.request_stop()
            await task
    environ = {
        **os.environ,
        "INGESTD_LOG_LEVEL": os.environ.get("INGESTD_LOG_LEVEL", "WARNING"),
        # The children are handed a database URL, which would turn `auto` into `postgres`:
        # they must read the uploads from the store this process wrote them to.
        "INGESTD_BLOBS__BACKEND": blob_backend(opened.settings),
    }
    # Each child its own metrics port (or none): the parent's setting would be one port for all.
    environ.pop("INGESTD_OBSERVABILITY__METRICS_PORT", None)
    host = opened.settings.observability.metrics_host
    with passwordless_env(opened.db.url, opened.settings.home, environ) as env:
        children = []
        for i in range(processes):
            child_env = dict(env)
            if metrics_ports:
                child_env["INGESTD_OBSERVABILITY__METRICS_PORT"] = str(metrics_ports[i])
            child = subprocess.Popen([sys.executable, "-m", "ingestd", "worker"], env=child_env)
            children.append(child)
            if metrics_ports:
                console.print(
                    f"worker process {i} (pid {child.pid}): metrics at "
                    f"http://{host}:{metrics_ports[i]}/metrics"
                )
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
    from rich.table import Table

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
def reindex(
    document: list[str] | None = typer.Option(
        None, "--document", help="Only these documents (ids; repeatable)."
    ),
    force: bool = typer.Option(
        False, "--all", help="Every complete document, even those made with the current settings."
    ),
    owner: str | None = OwnerOpt,
    all_owners: bool = AllOwnersOpt,
    wait: bool = typer.Option(
        False, "--wait", help="Show progress until re-indexing is done (needs running workers)."
    ),
) -> None:
    """Re-chunk and re-embed documents made with other chunker or embedding settings.

    Search keeps answering from the old chunks until each document's new ones are swapped in.
    """
    settings = load_settings(owner=owner)
    try:
        doc_ids = [uuid.UUID(d) for d in document] if document else None
    except ValueError as exc:
        raise typer.BadParameter("document ids must be full UUIDs") from exc

    async def body(opened: App) -> int:
        moved = await reports.reindex_jobs(
            opened.db,
            chunker_version=opened.ports.chunker.version,
            embedding_model=opened.ports.embedder.model,
            owner=scoped_owner(settings, all_owners),
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

    raise typer.Exit(run_command(with_app(settings, body)))
