"""``ingestd limits | costs``: shared rate limits, circuit breakers, and what was spent."""

from __future__ import annotations

from typing import Any

import typer

from ingestd import traffic
from ingestd.cli.common import (
    JsonOpt,
    OwnerOpt,
    app,
    console,
    load_settings,
    print_json,
    run_command,
    with_db,
)
from ingestd.db import Database


@app.command()
def limits(as_json: bool = JsonOpt) -> None:
    """Shared rate limits (rate, burst, available now), circuit breakers and their latest
    transitions, and what parked jobs wait on."""
    settings = load_settings()

    async def body(db: Database) -> dict[str, Any]:
        return await traffic.snapshot(db)

    found = run_command(with_db(settings, body))
    if as_json:
        print_json(found)
        return
    from rich.table import Table

    table = Table("limit", "per minute", "burst", "available", "source", "paused until")
    for row in found["limits"]:
        table.add_row(
            row["name"],
            f"{row['per_minute']:,.0f}",
            f"{row['burst']:,.0f}",
            f"{row['available']:,.0f}",
            row["source"],
            row["paused_until"] or "",
        )
    console.print(table)
    breakers = Table("breaker", "state", "calls", "failures", "half-open at")
    for row in found["breakers"]:
        breakers.add_row(
            row["service"],
            row["state"],
            str(row["calls"]),
            str(row["failures"]),
            row["half_open_at"] or "",
        )
    console.print(breakers)
    events = Table("when", "breaker", "from", "to", "reason")
    for ev in found["events"]:
        events.add_row(
            ev["created_at"][:19], ev["service"], ev["from_state"], ev["to_state"], ev["reason"]
        )
    console.print(events)
    for row in found["waiting"]:
        console.print(f"{row['jobs']} job(s) waiting on {row['waiting_on']}")


@app.command()
def costs(
    days: int = typer.Option(31, min=1, help="This many UTC days back, today included."),
    owner: str | None = OwnerOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Spend by day, service and owner (requests, tokens, pages, US dollars)."""
    settings = load_settings()

    async def body(db: Database) -> list[dict[str, Any]]:
        return await traffic.costs(db, days=days, owner=owner)

    rows = run_command(with_db(settings, body))
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("day", "service", "owner", "requests", "tokens", "pages", "USD")
    for row in rows:
        table.add_row(
            row["day"],
            row["service"],
            row["owner"],
            f"{row['requests']:,}",
            f"{row['tokens']:,}",
            f"{row['pages']:,}",
            f"{row['cost_usd']:.4f}",
        )
    console.print(table)
    total = sum(row["cost_usd"] for row in rows)
    console.print(f"total ${total:.4f} over {days} day(s)")
