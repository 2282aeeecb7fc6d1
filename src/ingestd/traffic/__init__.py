"""Fleet-wide traffic control: shared rate limits, circuit breakers, budgets.

Every worker process on every machine draws from the same limits and breakers, kept in
PostgreSQL, so a fleet uses a vendor's rate limit fully without tripping it, learns of an outage
once, and stops at a budget instead of overspending. A throttle is never a failure: a job that
must wait is parked (``waiting_on`` names what for), its attempts unchanged.

    limits.py     GCRA limits in the database (and the per-process variant), header corrections
    breakers.py   closed / open / half-open, per service, with their transitions
    budgets.py    caps by service, owner, day and month, over the usage ledger
    governor.py   the path of every external call through the three
    report.py     what ``ingestd limits`` / ``ingestd costs`` show (``snapshot``)
"""

from __future__ import annotations

from dataclasses import dataclass

from ingestd.config import TrafficSettings
from ingestd.db import Database
from ingestd.traffic.breakers import SharedBreakers
from ingestd.traffic.budgets import Budgets, Usage
from ingestd.traffic.governor import Answer, Governor
from ingestd.traffic.limits import Limiter, LocalLimiter, NoLimiter, SharedLimiter
from ingestd.traffic.report import costs, snapshot


@dataclass
class Traffic:
    """The traffic controls of one process: the governor (adapters call it) and the budgets
    (stages check them)."""

    governor: Governor
    budgets: Budgets


def build_traffic(db: Database, settings: TrafficSettings, worker_id: str) -> Traffic:
    limiter: Limiter
    if settings.mode == "shared":
        limiter = SharedLimiter(db)
    elif settings.mode == "process":
        limiter = LocalLimiter()
    else:
        limiter = NoLimiter()
    breakers = SharedBreakers(db, settings.breaker, worker_id)
    governor = Governor(settings, limiter, breakers, worker_id)
    budgets = Budgets(db, settings.budgets, settings.budget_recheck_seconds)
    return Traffic(governor, budgets)


__all__ = ["Answer", "Governor", "Traffic", "Usage", "build_traffic", "costs", "snapshot"]
