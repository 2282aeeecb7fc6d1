"""Fleet figures computed from the database at scrape time, and their Prometheus exposition.

Queue depth, the oldest runnable job, live workers, failures by code and usage belong to no
single worker: every scraper would otherwise see a different slice. ``ingestd serve`` computes
them here when ``/metrics`` is scraped, so any number of workers on any number of machines report
one consistent picture (one snapshot: the reads share a repeatable-read transaction).

None of it reads every job: counts by state and code and the usage totals are sums of
``job_counts``, which triggers keep exact in the transaction of every change to ``jobs``
(migration 0011); the queue figures are one pass over the unfinished jobs only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg.rows import dict_row

from ingestd.config import Settings
from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.states import FAILED_STATES, State
from ingestd.traffic.budgets import budget_status, spend_of


@dataclass
class FleetSnapshot:
    """What the database says about the whole fleet, at ``taken_at``."""

    jobs_by_state: dict[str, int]
    runnable: int = 0
    waiting: int = 0
    leased: int = 0
    lease_expired: int = 0
    stuck: int = 0
    oldest_runnable_seconds: float = 0.0
    failures: list[tuple[str, str, int]] = field(default_factory=list)
    usage: dict[str, float] = field(default_factory=dict)
    workers_live: int = 0
    workers_stale: int = 0
    workers_held: int = 0
    recent_failed: int = 0
    recent_finished: int = 0
    recent_lease_expired: int = 0
    # Alert name -> firing, as last recorded by an evaluation (ingestd serve, ingestd alerts).
    alerts: dict[str, bool] = field(default_factory=dict)
    # Traffic control (ingestd.traffic): breaker states, parked jobs by what they wait on, rate
    # limits (name, per minute, paused until), budgets against their caps.
    breakers: dict[str, str] = field(default_factory=dict)
    parked: dict[str, int] = field(default_factory=dict)
    limits: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    taken_at: float = field(default_factory=time.time)

    @property
    def pending(self) -> int:
        return self.runnable + self.waiting + self.leased + self.lease_expired


USAGE_KINDS = ("embedding_tokens", "parse_pages", "embedding_cost_usd", "parse_cost_usd")
QUEUE_FIGURES = ("runnable", "waiting", "leased", "lease_expired", "stuck")


async def fleet_snapshot(
    db: Database, config: Settings, *, recent_events: bool = True
) -> FleetSnapshot:
    """The fleet as the database sees it now. ``recent_events``: also count the job events of
    the alert window (the error-rate and lease-expiry rules need them; the metrics do not)."""
    settings = config.observability
    failed = {s.value for s in FAILED_STATES}

    async def work(conn: Conn) -> FleetSnapshot:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snap = FleetSnapshot({s.value: 0 for s in State})
        snap.usage = dict.fromkeys(USAGE_KINDS, 0.0)
        await cur.execute(QUERIES["fleet_counts"])
        for row in await cur.fetchall():
            for kind in USAGE_KINDS:
                snap.usage[kind] += row[kind]
            if not row["jobs"]:
                continue
            snap.jobs_by_state[row["state"]] = snap.jobs_by_state.get(row["state"], 0) + row["jobs"]
            if row["state"] in failed:
                snap.failures.append((row["state"], row["code"] or "unknown", row["jobs"]))
        await cur.execute(QUERIES["fleet_pending"], {"stuck": settings.stuck_job_seconds})
        for row in await cur.fetchall():
            for name in QUEUE_FIGURES:
                setattr(snap, name, getattr(snap, name) + row[name])
            oldest = row["oldest_runnable_seconds"] or 0.0
            snap.oldest_runnable_seconds = max(snap.oldest_runnable_seconds, oldest)
            if row["waiting_on"] is not None:
                snap.parked[row["waiting_on"]] = row["jobs"]
        await cur.execute(QUERIES["fleet_workers"], {"stale": settings.worker_stale_seconds})
        workers = await cur.fetchone() or {}
        snap.workers_live = workers.get("live", 0)
        snap.workers_stale = workers.get("stale", 0)
        snap.workers_held = int(workers.get("held", 0))
        if recent_events:
            await cur.execute(
                QUERIES["recent_event_counts"], {"window": settings.alert_window_seconds}
            )
            recent = await cur.fetchone() or {}
            snap.recent_failed = recent.get("failed", 0)
            snap.recent_finished = recent.get("finished", 0)
            snap.recent_lease_expired = recent.get("lease_expired", 0)
        await cur.execute(QUERIES["alert_states"])
        snap.alerts = {row["name"]: row["firing"] for row in await cur.fetchall()}
        await _traffic(cur, snap, config)
        return snap

    return await db.transaction(work, deadline=30)


async def _traffic(cur: Any, snap: FleetSnapshot, config: Settings) -> None:
    await cur.execute(QUERIES["list_breakers"])
    snap.breakers = {row["service"]: row["state"] for row in await cur.fetchall()}
    await cur.execute(QUERIES["list_limits"])
    snap.limits = [
        {
            "name": row["name"],
            "per_minute": round(row["rate"] * 60, 3),
            "available": round(row["available"], 3),
            "paused_until": row["paused_until"].isoformat() if row["paused_until"] else None,
        }
        for row in await cur.fetchall()
    ]
    if config.traffic.budgets:
        await cur.execute(QUERIES["period_spend"], {"services": None})
        spend = [spend_of(row) for row in await cur.fetchall()]
        snap.budgets = budget_status(config.traffic.budgets, spend)


BREAKER_STATES = ("closed", "half_open", "open")


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(
    name: str, doc: str, labels: list[str], values: Iterable[tuple[list[str], float]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


def fleet_families(snap: FleetSnapshot) -> Iterator[Metric]:
    """The snapshot as metric families (documented in docs/reference/metrics.md)."""
    yield _labelled(
        "ingestd_jobs",
        "Jobs in each state (queue depth for the non-terminal ones).",
        ["state"],
        (([state], n) for state, n in sorted(snap.jobs_by_state.items())),
    )
    yield _gauge(
        "ingestd_jobs_runnable", "Jobs due now and not held by a live lease.", snap.runnable
    )
    yield _gauge(
        "ingestd_jobs_waiting_retry", "Jobs waiting for their retry time (backoff).", snap.waiting
    )
    yield _gauge("ingestd_jobs_leased", "Jobs held by a live lease right now.", snap.leased)
    yield _gauge(
        "ingestd_jobs_lease_expired",
        "Jobs whose lease expired and that no worker has claimed again yet.",
        snap.lease_expired,
    )
    yield _gauge(
        "ingestd_jobs_stuck",
        "Non-terminal jobs that have not changed state for observability.stuck_job_seconds.",
        snap.stuck,
    )
    yield _gauge(
        "ingestd_oldest_runnable_job_age_seconds",
        "How long the longest-waiting runnable job has been due (0: none).",
        snap.oldest_runnable_seconds,
    )
    yield _labelled(
        "ingestd_failed_jobs",
        "Jobs in a failed state, by state and error code.",
        ["state", "code"],
        (([state, code], n) for state, code, n in sorted(snap.failures)),
    )
    yield _labelled(
        "ingestd_usage",
        "Usage recorded on all jobs: embedding_tokens, parse_pages, embedding_cost_usd, "
        "parse_cost_usd.",
        ["kind"],
        (([kind], float(v)) for kind, v in sorted(snap.usage.items())),
    )
    yield _labelled(
        "ingestd_workers",
        "Registered worker processes by heartbeat: live or stale.",
        ["status"],
        [(["live"], snap.workers_live), (["stale"], snap.workers_stale)],
    )
    yield _gauge(
        "ingestd_workers_jobs_held", "Jobs the live workers say they hold.", snap.workers_held
    )
    yield _labelled(
        "ingestd_alert_firing",
        "1 while ingestd's own evaluation of an alert rule says it fires (ingestd alerts).",
        ["alert"],
        (([name], float(firing)) for name, firing in sorted(snap.alerts.items())),
    )
    yield _labelled(
        "ingestd_breaker_state",
        "1 for the state each service's circuit breaker is in (closed, half_open, open).",
        ["service", "state"],
        (
            ([service, name], float(state == name))
            for service, state in sorted(snap.breakers.items())
            for name in BREAKER_STATES
        ),
    )
    yield _labelled(
        "ingestd_jobs_parked",
        "Jobs parked by traffic control, by what they wait on (a limit, breaker:, budget:).",
        ["waiting_on"],
        (([name], n) for name, n in sorted(snap.parked.items())),
    )
    yield _labelled(
        "ingestd_rate_limit_per_minute",
        "Each shared rate limit's current rate (units per minute).",
        ["limit"],
        (([limit["name"]], limit["per_minute"]) for limit in snap.limits),
    )
    yield _labelled(
        "ingestd_budget_spent",
        "What each budget's period has spent so far, by unit (usd, tokens, pages).",
        ["budget", "unit"],
        (([b["name"], b["unit"]], b["spent"]) for b in snap.budgets),
    )
    yield _labelled(
        "ingestd_budget_limit",
        "Each budget's cap, by unit.",
        ["budget", "unit"],
        (([b["name"], b["unit"]], b["cap"]) for b in snap.budgets),
    )
    yield _gauge(
        "ingestd_fleet_scrape_timestamp_seconds", "When these figures were read.", snap.taken_at
    )


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(*family_groups: Iterable[Metric]) -> bytes:
    """This process's own metrics followed by the given families, in the text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([f for group in family_groups for f in group]))
    return generate_latest(REGISTRY) + generate_latest(registry)


def as_dict(snap: FleetSnapshot) -> dict[str, Any]:
    return {
        "jobs_by_state": snap.jobs_by_state,
        "runnable": snap.runnable,
        "waiting_retry": snap.waiting,
        "leased": snap.leased,
        "lease_expired": snap.lease_expired,
        "stuck": snap.stuck,
        "oldest_runnable_seconds": round(snap.oldest_runnable_seconds, 3),
        "failures": [{"state": s, "code": c, "jobs": n} for s, c, n in snap.failures],
        "usage": snap.usage,
        "workers": {
            "live": snap.workers_live,
            "stale": snap.workers_stale,
            "held": snap.workers_held,
        },
    }


def traffic_dict(snap: FleetSnapshot) -> dict[str, Any]:
    return {
        "breakers": [{"service": s, "state": st} for s, st in sorted(snap.breakers.items())],
        "parked": snap.parked,
        "limits": snap.limits,
        "budgets": snap.budgets,
    }
