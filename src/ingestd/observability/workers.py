"""Which workers are alive, which are stale, and what each one holds (``ingestd workers``)."""

from __future__ import annotations

from typing import Any

from ingestd.config import ObservabilitySettings
from ingestd.db import QUERIES, Database


async def workers_report(
    db: Database, settings: ObservabilitySettings, *, include_stopped: bool = False
) -> list[dict[str, Any]]:
    """Every registered (not stopped) worker with ``liveness`` (live / stale / stopped) and
    ``holds``: the jobs whose lease names it."""
    workers = await db.fetch_all(
        QUERIES["workers_overview"],
        {"stale": settings.worker_stale_seconds, "all": include_stopped},
    )
    held = await db.fetch_all(QUERIES["held_jobs"], {"workers": [w["id"] for w in workers]})
    by_worker: dict[str, list[dict[str, Any]]] = {w["id"]: [] for w in workers}
    for job in held:
        by_worker[job["lease_owner"]].append(
            {
                "job_id": str(job["id"]),
                "state": job["state"],
                "filename": job["filename"],
                "attempt": job["attempt"],
                "in_state_seconds": round(job["in_state_seconds"], 1),
                "lease_expires_at": job["lease_expires_at"].isoformat(),
            }
        )
    return [
        {
            **{k: v for k, v in w.items() if k not in ("started_at", "heartbeat_at")},
            "started_at": w["started_at"].isoformat(),
            "heartbeat_at": w["heartbeat_at"].isoformat(),
            "heartbeat_age_seconds": round(w["heartbeat_age_seconds"], 1),
            "holds": by_worker[w["id"]],
        }
        for w in workers
    ]
