"""``ingestd serve | doctor | db | mock``: the HTTP app, checks, the database, mock vendors."""

from __future__ import annotations

import socket
import sys
from typing import Any

import typer

from ingestd.cli.common import (
    JsonOpt,
    app,
    console,
    db_app,
    err_console,
    load_settings,
    mock_app,
    print_json,
    reporting_errors,
    run_command,
)
from ingestd.db.database import migrate_database
from ingestd.db.embedded import EmbeddedPostgres, parse_listen
from ingestd.redact import redact

WILDCARD_HOSTS = {"0.0.0.0", "::", "*"}


def _embedded() -> EmbeddedPostgres:
    settings = load_settings()
    if settings.database_url:
        err_console.print("INGESTD_DATABASE_URL is set: the embedded server is not in use.")
    return EmbeddedPostgres(settings.pgdata)


@db_app.command("start")
def db_start(
    listen: str | None = typer.Option(
        None,
        "--listen",
        metavar="HOST:PORT",
        help="Also serve TCP clients (password required) on HOST:PORT, e.g. 0.0.0.0:5433; "
        "remembered for later starts; a running server restarts to apply it.",
    ),
    unix_only: bool = typer.Option(
        False, "--unix-only", help="Stop listening on TCP (the Unix socket only, the default)."
    ),
) -> None:
    """Start the embedded PostgreSQL (no-op if running) and apply migrations."""
    server = _embedded()
    status = reporting_errors(lambda: server.ensure_running("" if unix_only else listen))
    run_command(migrate_database(status.url()))
    where = f"; TCP on {status.listen}" if status.listen else ""
    console.print(f"running (pid {status.pid}{where}): {status.url()}", soft_wrap=True)


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
        "listen": status.listen,
    }
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        console.print(f"{key:8} {'-' if value is None else value}", soft_wrap=True)
    if not status.running:
        raise typer.Exit(3)


@db_app.command("url")
def db_url(
    host: str | None = typer.Option(
        None, "--host", help="Host name other machines use (default: the --listen address)."
    ),
    local: bool = typer.Option(False, "--local", help="The Unix-socket URL even when on TCP."),
    show_password: bool = typer.Option(
        False, "--show-password", help="Put the password in the URL (it is hidden otherwise)."
    ),
) -> None:
    """Print the database URL (start the embedded server if needed): `psql "$(ingestd db url)"`.

    Listening on TCP (`db start --listen`), the URL is the one other machines use; the password
    stays in the 0600 password file its hint names unless --show-password is given.
    """
    settings = load_settings()
    if settings.database_url:
        url = settings.database_url
        sys.stdout.write((url if show_password else redact(url)) + "\n")
        return
    server = EmbeddedPostgres(settings.pgdata)
    status = reporting_errors(server.ensure_running)
    if local or not status.listen:
        sys.stdout.write(status.url() + "\n")
        return
    listen_host, _ = parse_listen(status.listen)
    name = host or (socket.getfqdn() if listen_host in WILDCARD_HOSTS else listen_host)
    password = server.password() if show_password else None
    sys.stdout.write(status.remote_url(name, password=password) + "\n")
    if not show_password:
        err_console.print(
            f"password: in {status.passfile}; copy that file to the client machine and add "
            "'?passfile=<its path>' to the URL (or print it with --show-password)",
            soft_wrap=True,
        )


@db_app.command("rebuild-vector-index")
def db_rebuild_vector_index(
    model: str | None = typer.Option(
        None, "--model", help="Only this embedding model's index (default: every model's)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Rebuild even when the build parameters are already current."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would be done; change nothing."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Rebuild the HNSW vector indexes built with outdated parameters, online.

    Each index whose m / ef_construction differ from the current ones (every index with --force)
    is rebuilt with CREATE INDEX CONCURRENTLY under a temporary name, then swapped in within one
    short transaction: searches and workers keep running. Leftovers of a failed run are dropped.
    """
    from ingestd.db.database import RebuildStep, rebuild_vector_indexes, resolve_database_url

    settings = load_settings()
    url = reporting_errors(lambda: resolve_database_url(settings))

    def show(step: RebuildStep) -> None:
        if as_json:
            return
        old = f"m={step.old['m']}, ef_construction={step.old['ef_construction']}"
        new = f"m={step.new['m']}, ef_construction={step.new['ef_construction']}"
        size = f"{step.size_bytes / 1024**2:.1f} MiB"
        if step.new_size_bytes is not None:
            size += f" -> {step.new_size_bytes / 1024**2:.1f} MiB"
        took = f" in {step.seconds:.1f}s" if step.seconds is not None else ""
        if step.swap_ms is not None:
            took += f" (swap {step.swap_ms:.0f} ms)"
        changes = step.action in ("rebuilt", "would rebuild")
        params = f"{old} -> {new}" if changes else old
        invalid = "" if step.valid else " INVALID"
        console.print(
            f"{step.action:20} {step.index} ({step.model or '?'}{invalid}): {params}, {size}{took}",
            soft_wrap=True,
        )

    steps = run_command(
        rebuild_vector_indexes(url, model=model, force=force, dry_run=dry_run, on_step=show)
    )
    if as_json:
        print_json([step.to_json() for step in steps])
    elif not steps:
        console.print(f"no vector index{f' for model {model}' if model else ''}")


# -- ingest, worker, run ----------------------------------------------------------------------


@app.command()
def serve(
    host: str | None = typer.Option(
        None, envvar="INGESTD_SERVE_HOST", help="Address to bind (default: INGESTD_API__HOST)."
    ),
    port: int | None = typer.Option(
        None, envvar="INGESTD_SERVE_PORT", help="Port to listen on (default: INGESTD_API__PORT)."
    ),
    workers: int | None = typer.Option(
        None, help="Server processes (default: INGESTD_API__WORKERS)."
    ),
) -> None:
    """The HTTP API (docs/reference/http.md), health checks and the LlamaParse webhook."""
    import uvicorn

    settings = load_settings(service=True)
    api = settings.api
    options: dict[str, Any] = {
        "host": host or api.host,
        "port": api.port if port is None else port,
        "log_level": settings.log_level.lower(),
        "h11_max_incomplete_event_size": api.max_header_bytes,
        "timeout_graceful_shutdown": 5,
    }
    if (workers or api.workers) > 1:
        # Each server process builds its own app (and pool) from the environment.
        uvicorn.run(
            "ingestd.api.app:create_app", factory=True, workers=workers or api.workers, **options
        )
        return
    from ingestd.api.app import create_app

    uvicorn.run(create_app(settings), **options)


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
    from ingestd.mocks.openai import build_behaviour, serve

    serve(
        host,
        port,
        behaviour=build_behaviour(
            behaviour,
            api_key=api_key,
            latency_ms=latency_ms,
            per_token_ms=per_token_ms,
            rpm=rpm,
            tpm=tpm,
            quota_tokens=quota_tokens,
            faults=fault,
            seed=seed,
            vectors=vectors,
        ),
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
    from ingestd.mocks.llamaparse import build_behaviour, serve

    serve(
        host,
        port,
        behaviour=build_behaviour(
            behaviour,
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
        ),
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

    settings = load_settings()
    results = run_command(run_checks(settings, live=live))
    if as_json:
        print_json([r.to_json() for r in results])
    else:
        for r in results:
            mark = {
                "ok": "[green]ok[/green]",
                "skip": "[yellow]skip[/yellow]",
                "warn": "[yellow]warn[/yellow]",
            }.get(r.status, "[red]FAIL[/red]")
            console.print(f"{mark:>20}  {r.name:28} {r.detail}")
    if any(r.status == "fail" for r in results):
        raise typer.Exit(1)
