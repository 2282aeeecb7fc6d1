"""Alert rules: one table that both ingestd and Prometheus evaluate.

Each rule has a condition over a ``FleetSnapshot`` (what ``ingestd alerts``, ``GET /v1/alerts``
and the dashboard evaluate, from the database) and the same condition in PromQL over the
exported metrics (``deploy/prometheus/alerts.yml`` is generated from this table, so the two never
drift). Evaluating records firing -> resolved transitions in ``alert_events`` and, when a webhook
URL is configured, POSTs each transition as Slack-compatible JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import structlog
from psycopg.rows import dict_row

from ingestd.config import ObservabilitySettings, Settings
from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.observability.fleet import FleetSnapshot, fleet_snapshot

log = structlog.get_logger(__name__)

RUNBOOKS = "docs/howto/runbooks.md"
# Arbitrary, fixed: serialises evaluations so each transition is recorded once.
ALERT_LOCK_KEY = 0x1D6E57E
WEBHOOK_TIMEOUT_SECONDS = 5.0

Check = Callable[[FleetSnapshot, ObservabilitySettings], tuple[bool, float, str]]


@dataclass(frozen=True)
class AlertRule:
    name: str
    severity: str  # critical | warning
    title: str
    check: Check
    promql: str  # the same condition over the exported metrics (defaults as thresholds)
    for_: str  # how long Prometheus waits before firing

    @property
    def runbook(self) -> str:
        return f"{RUNBOOKS}#{self.name.lower()}"


def _no_workers(s: FleetSnapshot, _: ObservabilitySettings) -> tuple[bool, float, str]:
    waiting = s.runnable + s.lease_expired
    return (
        s.workers_live == 0 and waiting > 0,
        float(waiting),
        f"{waiting} job(s) runnable and no live worker",
    )


def _stuck(s: FleetSnapshot, o: ObservabilitySettings) -> tuple[bool, float, str]:
    return (
        s.stuck > 0,
        float(s.stuck),
        f"{s.stuck} job(s) due but in the same state for over {o.stuck_job_seconds:g}s",
    )


def _backlog(s: FleetSnapshot, o: ObservabilitySettings) -> tuple[bool, float, str]:
    age = s.oldest_runnable_seconds
    return (
        age > o.backlog_age_seconds,
        age,
        f"the oldest runnable job has waited {age:.0f}s (limit {o.backlog_age_seconds:g}s)",
    )


def _error_rate(s: FleetSnapshot, o: ObservabilitySettings) -> tuple[bool, float, str]:
    rate = s.recent_failed / s.recent_finished if s.recent_finished else 0.0
    return (
        s.recent_finished >= o.error_rate_min_jobs and rate > o.error_rate_threshold,
        rate,
        f"{s.recent_failed} of {s.recent_finished} jobs finishing in the last "
        f"{o.alert_window_seconds:g}s failed ({rate:.0%})",
    )


def _lease_expiries(s: FleetSnapshot, o: ObservabilitySettings) -> tuple[bool, float, str]:
    n = s.recent_lease_expired
    return (
        n >= o.lease_expiries_threshold,
        float(n),
        f"{n} lease(s) expired in the last {o.alert_window_seconds:g}s (workers dying or hung)",
    )


def _breaker_open(s: FleetSnapshot, _: ObservabilitySettings) -> tuple[bool, float, str]:
    opened = sorted(service for service, state in s.breakers.items() if state == "open")
    return (
        bool(opened),
        float(len(opened)),
        f"circuit breaker open for {', '.join(opened)}" if opened else "every breaker closed",
    )


def _budget_reached(s: FleetSnapshot, _: ObservabilitySettings) -> tuple[bool, float, str]:
    spent = sorted({b["name"] for b in s.budgets if b["spent"] >= b["cap"]})
    parked = sum(n for name, n in s.parked.items() if name.startswith("budget:"))
    waiting = sorted({name for name in s.parked if name.startswith("budget:")})
    reached = sorted(set(spent) | set(waiting))
    return (
        bool(reached),
        float(parked),
        f"{', '.join(reached)} reached; {parked} job(s) parked" if reached else "within budget",
    )


RULES: tuple[AlertRule, ...] = (
    AlertRule(
        "IngestdNoLiveWorkers",
        "critical",
        "No live worker while jobs wait",
        _no_workers,
        'sum(ingestd_workers{status="live"}) == 0 and '
        "(sum(ingestd_jobs_runnable) + sum(ingestd_jobs_lease_expired)) > 0",
        "2m",
    ),
    AlertRule(
        "IngestdStuckJobs",
        "warning",
        "Jobs are not moving",
        _stuck,
        "sum(ingestd_jobs_stuck) > 0",
        "5m",
    ),
    AlertRule(
        "IngestdBacklogAge",
        "warning",
        "The backlog is getting old",
        _backlog,
        "max(ingestd_oldest_runnable_job_age_seconds) > 1800",
        "5m",
    ),
    AlertRule(
        "IngestdErrorRateSpike",
        "critical",
        "Many jobs are failing",
        _error_rate,
        "sum(increase(ingestd_job_failures_total[10m])) >= 20 * 0.2 and "
        "sum(increase(ingestd_job_failures_total[10m])) / clamp_min("
        'sum(increase(ingestd_transitions_total{to_state="complete"}[10m])) + '
        "sum(increase(ingestd_job_failures_total[10m])), 1) > 0.2",
        "5m",
    ),
    AlertRule(
        "IngestdBreakerOpen",
        "critical",
        "A vendor's circuit breaker is open",
        _breaker_open,
        'max(ingestd_breaker_state{state="open"}) > 0',
        "1m",
    ),
    AlertRule(
        "IngestdBudgetReached",
        "warning",
        "A budget is spent: jobs are parked",
        _budget_reached,
        'sum(ingestd_jobs_parked{waiting_on=~"budget:.*"}) > 0 or '
        "max(ingestd_budget_spent - ingestd_budget_limit) >= 0",
        "0m",
    ),
    AlertRule(
        "IngestdLeaseExpiriesSpike",
        "warning",
        "Workers are losing their jobs",
        _lease_expiries,
        "sum(increase(ingestd_lease_expiries_total[10m])) >= 10",
        "0m",
    ),
)


@dataclass(frozen=True)
class AlertStatus:
    name: str
    severity: str
    title: str
    firing: bool
    value: float
    summary: str
    since: datetime | None
    runbook: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity,
            "title": self.title,
            "status": "firing" if self.firing else "ok",
            "value": self.value,
            "summary": self.summary,
            "since": self.since.isoformat() if self.since else None,
            "runbook": self.runbook,
        }


@dataclass(frozen=True)
class Transition:
    event_id: int
    status: AlertStatus


def evaluate_rules(
    snap: FleetSnapshot, settings: ObservabilitySettings, rules: tuple[AlertRule, ...] = RULES
) -> list[tuple[AlertRule, bool, float, str]]:
    """Pure: each rule's verdict on the snapshot."""
    return [(rule, *rule.check(snap, settings)) for rule in rules]


async def evaluate(db: Database, config: Settings, *, notify: bool = True) -> list[AlertStatus]:
    """Evaluate every rule now, record transitions, and POST them to the webhook (if set)."""
    settings = config.observability
    snap = await fleet_snapshot(db, config)
    verdicts = evaluate_rules(snap, settings)

    async def work(conn: Conn) -> tuple[list[AlertStatus], list[Transition]]:
        await conn.execute(QUERIES["lock_alert_evaluation"], {"key": ALERT_LOCK_KEY})
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["alert_states"])
        before = {row["name"]: row for row in await cur.fetchall()}
        statuses, transitions = [], []
        for rule, firing, value, summary in verdicts:
            status, transition = await _record(cur, rule, firing, value, summary, before)
            statuses.append(status)
            if transition is not None:
                transitions.append(transition)
        return statuses, transitions

    statuses, transitions = await db.transaction(work, deadline=30)
    for t in transitions:
        log.warning(
            "alert." + ("firing" if t.status.firing else "resolved"),
            alert=t.status.name,
            summary=t.status.summary,
        )
    if notify and transitions and settings.alert_webhook_url is not None:
        await _notify(db, settings.alert_webhook_url.get_secret_value(), transitions)
    return statuses


async def _record(
    cur: Any,
    rule: AlertRule,
    firing: bool,
    value: float,
    summary: str,
    before: dict[str, dict[str, Any]],
) -> tuple[AlertStatus, Transition | None]:
    """Save one rule's verdict; a change of firing is also appended to ``alert_events``."""
    previous = before.get(rule.name)
    was_firing = bool(previous and previous["firing"])
    since = previous["since"] if previous and was_firing == firing else None
    event: dict[str, Any] | None = None
    if was_firing != firing:
        params = {"name": rule.name, "status": "firing" if firing else "resolved"}
        await cur.execute(
            QUERIES["record_alert_event"], {**params, "value": value, "summary": summary}
        )
        event = await cur.fetchone()
        assert event is not None
        since = event["created_at"] if firing else None
    row = {"name": rule.name, "firing": firing, "since": since, "value": value, "summary": summary}
    await cur.execute(QUERIES["save_alert_state"], row)
    status = AlertStatus(
        rule.name, rule.severity, rule.title, firing, value, summary, since, rule.runbook
    )
    return status, (Transition(int(event["id"]), status) if event is not None else None)


def slack_message(status: AlertStatus) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body (``text`` is what every receiver reads)."""
    mark = "FIRING" if status.firing else "RESOLVED"
    return {
        "text": f"[{mark}] {status.name} ({status.severity}): {status.title}. "
        f"{status.summary}. Runbook: {status.runbook}",
        "alert": status.to_json(),
    }


async def _notify(db: Database, url: str, transitions: list[Transition]) -> None:
    sent: list[int] = []
    async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as http:
        for t in transitions:
            try:
                response = await http.post(url, json=slack_message(t.status))
                response.raise_for_status()
            except httpx.HTTPError as exc:
                # The transition is recorded either way; the POST is best effort.
                log.warning("alert.webhook_failed", alert=t.status.name, error=type(exc).__name__)
                continue
            sent.append(t.event_id)
    if sent:
        await db.execute(QUERIES["mark_alert_notified"], {"ids": sent})


async def alert_history(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    rows = await db.fetch_all(QUERIES["alert_history"], {"limit": limit})
    return [{**row, "created_at": row["created_at"].isoformat()} for row in rows]
