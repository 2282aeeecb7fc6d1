"""The dashboard's reads: one summary, chart series from the per-minute rollup, the jobs table
with its filters, and one job with its timeline. Plain data; the HTTP routes only serialise it."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingestd.config import Settings
from ingestd.db import QUERIES, Database
from ingestd.observability.alerts import RULES
from ingestd.observability.fleet import as_dict, fleet_snapshot, traffic_dict
from ingestd.observability.workers import workers_report
from ingestd.states import FAILED_STATES

MAX_PAGE = 200
HOLDS_SHOWN = 5


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value.__class__.__name__ == "Decimal":
        return float(value)
    return value


def _plain_dict(value: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in value.items()}


async def summary(db: Database, settings: Settings) -> dict[str, Any]:
    """Everything the dashboard's first screen shows, in one answer."""
    snap, workers, states, failures = await asyncio.gather(
        fleet_snapshot(db, settings, recent_events=False),
        workers_report(db, settings.observability),
        db.fetch_all(QUERIES["alert_states"]),
        db.fetch_all(
            QUERIES["latest_failures"], {"states": [s.value for s in FAILED_STATES], "limit": 10}
        ),
    )
    for worker in workers:
        worker["holds_total"] = len(worker["holds"])
        worker["holds"] = worker["holds"][:HOLDS_SHOWN]
    rules = {rule.name: rule for rule in RULES}
    alerts = [
        {**row, "severity": rule.severity, "title": rule.title, "runbook": rule.runbook}
        for row in states
        if (rule := rules.get(row["name"])) is not None
    ]
    return _plain_dict(
        {
            "fleet": as_dict(snap),
            "traffic": traffic_dict(snap),
            "workers": workers,
            "alerts": alerts,
            "latest_failures": failures,
        }
    )


async def series(db: Database, minutes: int = 60) -> dict[str, Any]:
    """Per-minute throughput, failures by code and mean stage latency, from the rollup."""
    await db.execute(QUERIES["refresh_rollup"])
    rows = await db.fetch_all(QUERIES["rollup_series"], {"minutes": minutes})
    completed: dict[str, int] = defaultdict(int)
    failed: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    latency: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for row in rows:
        minute = row["minute"].isoformat()
        if row["to_state"] == "complete" and row["kind"] == "transition":
            completed[minute] += row["events"]
        if row["kind"] == "fail":
            failed[row["code"] or "unknown"][minute] += row["events"]
        if row["kind"] == "transition" and row["timed"]:
            total, timed = latency[row["from_state"]].get(minute, [0, 0])
            latency[row["from_state"]][minute] = [
                total + row["duration_ms_sum"],
                timed + row["timed"],
            ]
    return {
        "minutes": minutes,
        "completed": [{"t": t, "v": v} for t, v in sorted(completed.items())],
        "failed": {
            code: [{"t": t, "v": v} for t, v in sorted(points.items())]
            for code, points in sorted(failed.items())
        },
        "latency_ms": {
            stage: [{"t": t, "v": round(s / n, 1)} for t, (s, n) in sorted(points.items())]
            for stage, points in sorted(latency.items())
        },
    }


@dataclass(frozen=True)
class JobFilter:
    state: str | None = None
    code: str | None = None
    owner: str | None = None
    q: str | None = None
    before: str | None = None  # "<created_at>|<id>" of the last row of the previous page
    limit: int = 50


async def jobs(db: Database, f: JobFilter) -> dict[str, Any]:
    before, before_id = _cursor(f.before)
    limit = max(1, min(f.limit, MAX_PAGE))
    rows = await db.fetch_all(
        QUERIES["dashboard_jobs"],
        {
            "state": f.state or None,
            "code": f.code or None,
            "owner": f.owner or None,
            "q": f.q or None,
            "before": before,
            "before_id": before_id,
            "limit": limit,
        },
    )
    page = _plain(rows)
    cursor = f"{page[-1]['created_at']}|{page[-1]['id']}" if len(page) == limit else None
    return {"jobs": page, "next": cursor}


def _cursor(before: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    """``"<created_at>|<id>"`` -> its parts; raises ``ValueError`` when malformed."""
    if not before:
        return None, None
    created, _, job_id = before.partition("|")
    return datetime.fromisoformat(created), uuid.UUID(job_id)


async def job_detail(db: Database, job_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await db.fetch_all(QUERIES["dashboard_job"], {"id": job_id})
    if not rows:
        return None
    job = rows[0]
    events = await db.fetch_all(QUERIES["job_events"], {"job_id": job_id})
    chunks = await db.fetch_all(
        QUERIES["dashboard_job_chunks"], {"document_id": job["document_id"], "limit": 50}
    )
    return _plain_dict({**job, "events": events, "chunks": chunks})


async def filter_choices(db: Database) -> dict[str, list[str]]:
    codes = await db.fetch_all(QUERIES["error_codes"])
    owners = await db.fetch_all(QUERIES["dashboard_owners"])
    return {"codes": [r["code"] for r in codes], "owners": [r["owner"] for r in owners]}
