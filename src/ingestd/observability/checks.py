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


async def vector_index_check(db: Database, settings: Settings) -> tuple[str, str]:
    """Warn about HNSW indexes built with other parameters than the current ones (homes made
    before m = 8) and about leftovers of a failed rebuild; both are fixed by one command."""
    from ingestd.db.database import HNSW_EF_CONSTRUCTION, HNSW_M, list_vector_indexes

    async with db.connection() as conn:
        indexes = await list_vector_indexes(conn)
    problems = []
    for index in indexes:
        if index.leftover:
            state = "valid" if index.valid else "INVALID"
            problems.append(f"{index.name}: {state} leftover of a failed rebuild")
        elif index.model is not None and (index.outdated or not index.valid):
            state = "" if index.valid else "INVALID, "
            problems.append(
                f"{index.name} ({index.model}): {state}built with m={index.m}, "
                f"ef_construction={index.ef_construction}"
            )
    if problems:
        return "warn", (
            "; ".join(problems) + f" (current: m={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION});"
            " run `ingestd db rebuild-vector-index`"
        )
    return "ok", f"{len(indexes)} index(es), built with m={HNSW_M}, ef_construction=" + str(
        HNSW_EF_CONSTRUCTION
    )
