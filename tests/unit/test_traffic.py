"""Traffic control's pure rules, as tables: GCRA, header corrections, breaker transitions,
budgets, bisection of poisonous inputs, and what a throttle does to a job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingestd.config import BreakerSettings, BudgetSettings
from ingestd.embedders.poison import is_input_error, isolate
from ingestd.errors import (
    PermanentError,
    RateLimitedError,
    Throttled,
    TransientError,
)
from ingestd.retry import park_for, should_fail
from ingestd.traffic.breakers import Breaker, admit, record
from ingestd.traffic.budgets import Spend, Usage, crossed, period_end
from ingestd.traffic.limits import correction, gcra

# -- GCRA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tat", "now", "rate", "burst", "cost", "paused", "wait", "new_tat"),
    [
        (0.0, 10.0, 1.0, 5.0, 1.0, 0.0, 0.0, 11.0),  # idle: goes at once
        (14.0, 10.0, 1.0, 5.0, 1.0, 0.0, 0.0, 15.0),  # the burst's last unit
        (15.0, 10.0, 1.0, 5.0, 1.0, 0.0, 1.0, 16.0),  # burst spent: one interval
        (10.0, 10.0, 2.0, 10.0, 30.0, 0.0, 0.0, 15.0),  # cost above the burst: charged as it
        (10.0, 10.0, 100.0, 1000.0, 400.0, 0.0, 0.0, 14.0),  # tokens: sized by the request
        (18.0, 10.0, 100.0, 1000.0, 400.0, 0.0, 2.0, 22.0),
        (0.0, 10.0, 1.0, 5.0, 1.0, 13.5, 3.5, 11.0),  # a 429 paused it: wait out the pause
    ],
)
def test_gcra(
    tat: float,
    now: float,
    rate: float,
    burst: float,
    cost: float,
    paused: float,
    wait: float,
    new_tat: float,
) -> None:
    assert gcra(tat, now, rate, burst, cost, paused) == pytest.approx((wait, new_tat))


def test_gcra_never_lets_more_than_rate_times_time_plus_burst() -> None:
    tat, now, sent = 0.0, 0.0, 0
    for _ in range(1000):
        wait, new_tat = gcra(tat, now, rate=10.0, burst=20.0, cost=1.0)
        now += wait
        tat = new_tat
        sent += 1
    assert sent <= 10.0 * now + 20.0 + 1e-6


# -- header corrections -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "remaining", "reset", "retry_after", "expected"),
    [
        (None, None, None, None, None),
        (None, None, None, 2.0, (None, None, 0.0, 2.0)),  # only a 429's retry-after: pause
        # 3000 per minute: 600 used (at least 599: remaining is rounded down), whole again in
        # 12 s -> about 50/s; 95 % of it, and of the burst.
        (3000, 2400, 12.0, None, (599 / 12 * 0.95, 2850.0, 570.0, None)),
        # Too little used to infer a rate from: keep the rate, learn the burst and the deficit.
        (3000, 2995, 0.1, None, (None, 2850.0, 4.75, None)),
        # A shortened window (the mock's window_seconds): the rate comes from reset, not 60 s.
        (1000, 0, 2.0, 1.5, (999 / 2 * 0.95, 950.0, 950.0, 1.5)),
        # Small limits: one unit of rounding is a large share (2 used could be 1.01), and one
        # used is too few to tell a rate from.
        (6, 4, 0.34, None, (1 / 0.34 * 0.95, 5.7, 1.9, None)),
        (6, 5, 0.2, None, (None, 5.7, 0.95, None)),
        (6, 3, 0.67, None, (2 / 0.67 * 0.95, 5.7, 2.85, None)),
    ],
)
def test_header_correction(
    limit: int | None,
    remaining: int | None,
    reset: float | None,
    retry_after: float | None,
    expected: tuple[float | None, float | None, float, float | None] | None,
) -> None:
    found = correction(limit, remaining, reset, headroom=0.95, retry_after=retry_after)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert (found.rate, found.burst, found.deficit, found.pause) == pytest.approx(expected)


# -- breakers -----------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = BreakerSettings(
    failure_rate=0.5, min_calls=4, window_seconds=10, open_seconds=5, probe_timeout_seconds=30
)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _run(events: list[tuple[float, str, str | bool]]) -> list[str]:
    """Play (time, caller, 'admit' | failed?) events; returns the state after each."""
    b = Breaker("openai", window_started_at=T0)
    states = []
    for at, caller, what in events:
        if what == "admit":
            admission, b, _ = admit(b, _at(at), POLICY, caller)
            states.append(f"{b.state}/{admission.kind}")
        else:
            b, _ = record(b, _at(at), POLICY, caller, failed=bool(what))
            states.append(b.state)
    return states


@pytest.mark.parametrize(
    ("events", "states"),
    [
        # Failures below the minimum of calls do not open it.
        ([(0, "a", True), (1, "a", True), (2, "a", True)], ["closed"] * 3),
        # Four calls, half failed: open.
        (
            [(0, "a", False), (1, "a", True), (2, "a", False), (3, "a", True)],
            ["closed", "closed", "closed", "open"],
        ),
        # Failures in an old window do not count.
        (
            [(0, "a", True), (1, "a", True), (2, "a", True), (12, "a", True), (13, "a", False)],
            ["closed"] * 5,
        ),
        # Open: callers wait; after open_seconds one probe; its success closes it.
        (
            [(0, "a", True)] * 4
            + [(1, "b", "admit"), (6, "b", "admit"), (6.1, "c", "admit"), (7, "b", False)],
            ["closed"] * 3 + ["open", "open/wait", "half_open/probe", "half_open/wait", "closed"],
        ),
        # A failed probe opens it again; another caller's late result changes nothing.
        (
            [(0, "a", True)] * 4
            + [(6, "b", "admit"), (6.5, "a", False), (7, "b", True), (8, "c", "admit")],
            ["closed"] * 3 + ["open", "half_open/probe", "half_open", "open", "open/wait"],
        ),
        # A probe that never reports is replaced after its timeout.
        (
            [(0, "a", True)] * 4 + [(6, "b", "admit"), (40, "c", "admit"), (41, "c", False)],
            ["closed"] * 3 + ["open", "half_open/probe", "half_open/probe", "closed"],
        ),
    ],
)
def test_breaker_transitions(
    events: list[tuple[float, str, str | bool]], states: list[str]
) -> None:
    assert _run(events) == states


def test_open_breaker_says_how_long_to_wait() -> None:
    b = Breaker("openai", state="open", half_open_at=_at(5))
    admission, _, _ = admit(b, _at(2), POLICY, "x")
    assert admission.kind == "wait" and admission.delay == pytest.approx(3)


# -- budgets ------------------------------------------------------------------------------------


def _spend(owner: str, day_usd: float, month_usd: float, service: str = "openai") -> Spend:
    return Spend(service, owner, Usage(usd=day_usd), Usage(usd=month_usd))


@pytest.mark.parametrize(
    ("budget", "owners", "estimate", "hit"),
    [
        (BudgetSettings(service="openai", usd=10), ["a"], 1.0, None),
        (BudgetSettings(service="openai", usd=10), ["a"], 4.5, "all"),  # 6 spent by a and b
        (BudgetSettings(service="openai", owner="*", usd=5), ["a"], 1.0, None),  # a spent 4
        (BudgetSettings(service="openai", owner="*", usd=4.2), ["b", "a"], 0.5, "a"),
        (BudgetSettings(service="openai", owner="b", usd=2), ["a"], 3.0, None),  # not b's call
        (BudgetSettings(service="openai", period="month", usd=20), ["a"], 5.0, "all"),
        (BudgetSettings(service="llamaparse", usd=0), ["a"], 5.0, None),  # another service
        (BudgetSettings(service="*", usd=7), ["a"], 1.5, "all"),  # 6 + 1.5 over every service
    ],
)
def test_budgets(
    budget: BudgetSettings, owners: list[str], estimate: float, hit: str | None
) -> None:
    spend = [_spend("a", 4, 10), _spend("b", 2, 6)]
    found = crossed([budget], spend, "openai", owners, Usage(usd=estimate))
    if hit is None:
        assert found is None
    else:
        assert found is not None and (found[1] or "all") == hit and found[2] == "usd"


@pytest.mark.parametrize(
    ("now", "period", "end"),
    [
        (datetime(2026, 3, 14, 15, 9, tzinfo=UTC), "day", datetime(2026, 3, 15, tzinfo=UTC)),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "month", datetime(2027, 1, 1, tzinfo=UTC)),
        (datetime(2026, 2, 1, 0, 0, tzinfo=UTC), "month", datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_budget_period_end(now: datetime, period: str, end: datetime) -> None:
    assert period_end(period, now) == end


# -- a throttle is never a failure ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "parked"),
    [
        (Throttled("budget.exhausted", "x", waiting_on="budget:openai:all:day", delay=60), True),
        (Throttled("traffic.breaker_open", "x", waiting_on="breaker:openai", delay=3), True),
        (RateLimitedError("embed.rate_limited", "x", retry_after=2.0), True),
        (TransientError("embed.unavailable", "x"), False),
        (PermanentError("embed.invalid_request", "x"), False),
    ],
)
def test_throttles_park_and_never_fail(error: Exception, parked: bool) -> None:
    assert isinstance(error, Throttled | RateLimitedError | TransientError | PermanentError)
    found = park_for(error, base=1.0, cap=30.0)
    assert (found is not None) is parked
    if parked:
        assert not should_fail(error, retry_count=10_000, max_attempts=5)
        assert found is not None and found[1] > 0


# -- poison isolation -----------------------------------------------------------------------------


def _rejected(index: int) -> PermanentError:
    return PermanentError("embed.invalid_request", f"bad input {index}", status=400)


@pytest.mark.parametrize(
    ("size", "bad", "max_requests"),
    [(1, {0}, 1), (8, set(), 1), (8, {3}, 7), (16, {0, 15}, 15), (5, {0, 1, 2, 3, 4}, 9)],
)
async def test_bisection_embeds_every_good_input(
    size: int, bad: set[int], max_requests: int
) -> None:
    async def send(start: int, stop: int) -> list[int]:
        for i in range(start, stop):
            if i in bad:
                raise _rejected(i)
        return list(range(start, stop))

    found = await isolate(0, size, send)
    good = sorted(i for start, part in found.parts.items() for i in part)
    assert good == sorted(set(range(size)) - bad)
    assert set(found.failures) == bad
    assert all(found.failures[i].message == f"bad input {i}" for i in bad)
    assert found.requests <= max_requests


async def test_bisection_lets_other_errors_through() -> None:
    async def send(start: int, stop: int) -> list[int]:
        raise TransientError("embed.unavailable", "down")

    with pytest.raises(TransientError):
        await isolate(0, 4, send)


@pytest.mark.parametrize(
    ("status", "culprit"), [(400, True), (422, True), (404, False), (401, False), (None, False)]
)
def test_only_input_errors_are_bisected(status: int | None, culprit: bool) -> None:
    assert is_input_error(PermanentError("embed.invalid_request", "x", status=status)) is culprit
    assert not is_input_error(TransientError("embed.unavailable", "x", status=status))
