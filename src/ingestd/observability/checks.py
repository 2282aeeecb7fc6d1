"""``ingestd doctor``'s operational checks: alerts firing, stale workers, long-held jobs, and the
free disk space of the embedded database."""

from __future__ import annotations

import shutil

from ingestd.config import Settings
from ingestd.db import QUERIES, Database
from ingestd.observability.alerts import evaluate_rules
from ingestd.observability.fleet import fleet_snapshot
from ingestd.observability.workers import workers_report


async def alerts_check(db: Database, settings: Settings) -> tuple[str, str]:
    """Verdicts only: doctor reads, it never records a transition (serve and ``ingestd alerts``
    do, so a notification is never swallowed)."""
    snap = await fleet_snapshot(db, settings)
    firing = [(r.name, s) for r, on, _, s in evaluate_rules(snap, settings.observability) if on]
    if firing:
        return "fail", "; ".join(f"{name}: {summary}" for name, summary in firing)
    return "ok", "no alert firing"


async def workers_check(db: Database, settings: Settings) -> tuple[str, str]:
    workers = await workers_report(db, settings.observability)
    live = sum(w["liveness"] == "live" for w in workers)
    stale = [w for w in workers if w["liveness"] == "stale"]
    if stale:
        ids = ", ".join(f"{w['id']} ({w['heartbeat_age_seconds']:.0f}s)" for w in stale)
        return "warn", f"{live} live, {len(stale)} stale: {ids}"
    return "ok", f"{live} live, none stale"


async def long_leases_check(db: Database, settings: Settings) -> tuple[str, str]:
    seconds = settings.observability.long_lease_seconds
    rows = await db.fetch_all(QUERIES["long_leased_jobs"], {"seconds": seconds})
    jobs, longest = rows[0]["jobs"], rows[0]["longest"]
    if jobs:
        return "warn", f"{jobs} job(s) held in one state over {seconds:g}s (longest {longest:.0f}s)"
    return "ok", f"no job held in one state over {seconds:g}s"


def disk_check(settings: Settings) -> tuple[str, str]:
    if settings.database_url:
        return "skip", "external database: watch its disk where it runs"
    folder = settings.pgdata if settings.pgdata.exists() else settings.home
    while not folder.exists():
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    free, floor = usage.free, settings.observability.min_free_disk_bytes
    detail = f"{free / 1024**3:.1f} GiB free of {usage.total / 1024**3:.1f} GiB under {folder}"
    return ("fail" if free < floor else "ok"), detail
