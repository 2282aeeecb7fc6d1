"""``ingestd workers | alerts``: who is working on what, and what needs a person's attention."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from ingestd.cli.common import JsonOpt, app, console, load_settings, print_json, run_command
from ingestd.config import Settings
from ingestd.db import Database

T = TypeVar("T")


async def _with_db(settings: Settings, body: Callable[[Database], Awaitable[T]]) -> T:
    async with Database.from_settings(settings) as db:
        return await body(db)


@app.command()
def workers(
    include_stopped: bool = typer.Option(False, "--all", help="Also list stopped workers."),
    as_json: bool = JsonOpt,
) -> None:
    """Worker processes: live or stale (no heartbeat for observability.worker_stale_seconds),
    and the jobs each one holds."""
    from ingestd.observability.workers import workers_report

    settings = load_settings()
    found = run_command(
        _with_db(
            settings,
            lambda db: workers_report(db, settings.observability, include_stopped=include_stopped),
        )
    )
    if as_json:
        print_json(found)
        return
    from rich.table import Table

    table = Table("worker", "status", "heartbeat", "jobs held", "processed", "holds")
    for w in found:
        holds = ", ".join(f"{j['job_id'][:8]} {j['state']}" for j in w["holds"][:4])
        if len(w["holds"]) > 4:
            holds += f", +{len(w['holds']) - 4}"
        table.add_row(
            w["id"],
            w["liveness"],
            f"{w['heartbeat_age_seconds']:.0f}s ago",
            str(w["active_jobs"]),
            str(w["processed"]),
            holds,
        )
    console.print(table if found else "no workers registered")


@app.command()
def alerts(
    as_json: bool = JsonOpt,
    history: bool = typer.Option(False, "--history", help="Show recent transitions instead."),
) -> None:
    """Evaluate the alert rules now (recording firing/resolved transitions, POSTing them to
    observability.alert_webhook_url); exit 1 when any alert fires."""
    from ingestd.observability.alerts import alert_history, evaluate

    settings = load_settings()
    if history:
        rows = run_command(_with_db(settings, lambda db: alert_history(db)))
        if as_json:
            print_json(rows)
        else:
            for row in rows:
                console.print(
                    f"{row['created_at']}  {row['status']:8} {row['name']}: {row['summary']}"
                )
        return
    statuses = run_command(_with_db(settings, lambda db: evaluate(db, settings)))
    if as_json:
        print_json([s.to_json() for s in statuses])
    else:
        _print_alerts([s.to_json() for s in statuses])
    if any(s.firing for s in statuses):
        raise typer.Exit(1)


def _print_alerts(statuses: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("alert", "severity", "status", "summary", "runbook")
    for s in statuses:
        mark = "[red]FIRING[/red]" if s["status"] == "firing" else "[green]ok[/green]"
        table.add_row(s["name"], s["severity"], mark, s["summary"], s["runbook"])
    console.print(table)
