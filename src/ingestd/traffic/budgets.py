"""Budgets: caps on what external services may cost, per service and owner, by day and month.

Every external call's usage goes into ``usage_ledger`` (one row per UTC day, service and owner).
Before a stage makes its next call it asks :meth:`Budgets.check` with an estimate of that call;
if the call would cross a budget, the stage's jobs are parked with ``budget.exhausted`` (state
and attempts unchanged) until the period rolls over — they look again every
``budget_recheck_seconds``, so raising the budget (and restarting the workers) lets them go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ingestd.config import BudgetSettings
from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.errors import Throttled


@dataclass(frozen=True, slots=True)
class Usage:
    """What calls cost (or are estimated to): tokens, pages, US dollars, requests."""

    tokens: float = 0.0
    pages: float = 0.0
    usd: float = 0.0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.tokens + other.tokens,
            self.pages + other.pages,
            self.usd + other.usd,
            self.requests + other.requests,
        )


@dataclass(frozen=True, slots=True)
class Spend:
    """One (service, owner)'s spend this UTC day and this month."""

    service: str
    owner: str
    day: Usage
    month: Usage


def period_end(period: str, now: datetime) -> datetime:
    """When the budget period that contains ``now`` (UTC) ends."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return today + timedelta(days=1)
    first = today.replace(day=1)
    return (first + timedelta(days=32)).replace(day=1)


def _caps(budget: BudgetSettings) -> dict[str, float]:
    caps = {"tokens": budget.tokens, "pages": budget.pages, "usd": budget.usd}
    return {k: v for k, v in caps.items() if v is not None}


def budget_name(budget: BudgetSettings, owner: str | None) -> str:
    return f"budget:{budget.service}:{owner or 'all'}:{budget.period}"


def crossed(
    budgets: Sequence[BudgetSettings],
    spend: Iterable[Spend],
    service: str,
    owners: Iterable[str],
    estimate: Usage,
) -> tuple[BudgetSettings, str | None, str] | None:
    """The first budget that the estimated call would cross: (budget, owner, unit) (pure)."""
    spend = list(spend)
    for budget in budgets:
        if budget.service not in (service, "*"):
            continue
        mine = [s for s in spend if budget.service == "*" or s.service == service]
        scopes: list[str | None] = [None] if budget.owner is None else []
        if budget.owner == "*":
            scopes = list(dict.fromkeys(owners))
        elif budget.owner is not None and budget.owner in owners:
            scopes = [budget.owner]
        for owner in scopes:
            used = sum(
                (getattr(s, budget.period) for s in mine if owner is None or s.owner == owner),
                Usage(),
            )
            for unit, cap in _caps(budget).items():
                if getattr(used, unit) + getattr(estimate, unit) > cap:
                    return budget, owner, unit
    return None


def budget_status(
    budgets: Sequence[BudgetSettings], spend: Iterable[Spend]
) -> list[dict[str, Any]]:
    """Each budget's spend against its caps, per unit (pure; metrics and the dashboard show it).

    A per-owner budget (``owner="*"``) reports its most-spent owner."""
    spend = list(spend)
    out = []
    for budget in budgets:
        mine = [s for s in spend if budget.service == "*" or s.service == budget.service]
        owners: list[str | None] = [None]
        if budget.owner == "*":
            owners = list(dict.fromkeys(s.owner for s in mine)) or [None]
        elif budget.owner is not None:
            owners = [budget.owner]
        for unit, cap in _caps(budget).items():
            used = max(
                sum(
                    getattr(getattr(s, budget.period), unit)
                    for s in mine
                    if owner is None or s.owner == owner
                )
                for owner in owners
            )
            name = budget_name(budget, None if budget.owner == "*" else budget.owner)
            out.append({"name": name, "unit": unit, "spent": float(used), "cap": cap})
    return out


def spend_of(row: Mapping[str, Any]) -> Spend:
    """A ``period_spend`` row as a :class:`Spend`."""
    return _spend(row)


class Budgets:
    """The budgets of the settings over the usage ledger."""

    def __init__(
        self, db: Database, budgets: Sequence[BudgetSettings], recheck_seconds: float
    ) -> None:
        self.db = db
        self.budgets = list(budgets)
        self.recheck_seconds = recheck_seconds

    def applies(self, service: str) -> bool:
        return any(b.service in (service, "*") for b in self.budgets)

    async def check(self, service: str, owners: Iterable[str], estimate: Usage) -> None:
        """Raise :class:`Throttled` (``budget.exhausted``) if the call would cross a budget."""
        if not self.applies(service):
            return
        owners = list(owners)
        every = any(b.service == "*" for b in self.budgets)
        rows = await self.db.fetch_all(
            QUERIES["period_spend"], {"services": None if every else [service]}
        )
        hit = crossed(self.budgets, [_spend(r) for r in rows], service, owners, estimate)
        if hit is None:
            return
        budget, owner, unit = hit
        now = rows[0]["now"] if rows else datetime.now(UTC)
        delay = min((period_end(budget.period, now) - now).total_seconds(), self.recheck_seconds)
        cap = _caps(budget)[unit]
        who = f"owner {owner}" if owner else "all owners"
        raise Throttled(
            "budget.exhausted",
            f"the {budget.period}ly {unit} budget of {service} for {who} ({cap:g}) is spent",
            waiting_on=budget_name(budget, owner),
            delay=delay,
            service=service,
            owner=owner,
            unit=unit,
            cap=cap,
        )


def _spend(row: Mapping[str, Any]) -> Spend:
    def usage(prefix: str) -> Usage:
        return Usage(
            tokens=float(row[f"{prefix}_tokens"] or 0),
            pages=float(row[f"{prefix}_pages"] or 0),
            usd=float(row[f"{prefix}_usd"] or 0),
        )

    return Spend(row["service"], row["owner"], usage("day"), usage("month"))


async def record_usage(conn: Conn, service: str, by_owner: Mapping[str, Usage]) -> None:
    """Add calls' usage to the ledger (inside the caller's transaction)."""
    if not by_owner:
        return
    owners = sorted(by_owner)
    await conn.execute(
        QUERIES["record_usage"],
        {
            "service": service,
            "owners": owners,
            "requests": [by_owner[o].requests for o in owners],
            "tokens": [round(by_owner[o].tokens) for o in owners],
            "pages": [round(by_owner[o].pages) for o in owners],
            "costs": [by_owner[o].usd for o in owners],
        },
    )


__all__ = [
    "Budgets",
    "Spend",
    "Usage",
    "budget_status",
    "crossed",
    "period_end",
    "record_usage",
    "spend_of",
]
