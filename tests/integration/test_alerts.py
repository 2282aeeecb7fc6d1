"""Alert rules fire when their condition is produced, resolve when it is fixed, and every
transition is recorded and POSTed to the webhook (a local receiver over real HTTP)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI, Request

from ingestd.app import App, open_app
from ingestd.config import (
    BreakerSettings,
    BudgetSettings,
    ObservabilitySettings,
    Settings,
    TrafficSettings,
)
from ingestd.ingest import Upload, ingest_uploads
from ingestd.jobs import JobStore
from ingestd.mocks import BackgroundServer
from ingestd.observability.alerts import AlertStatus, evaluate
from ingestd.traffic.breakers import Admission, SharedBreakers
from tests.factories import markdown_document
from tests.waiting import eventually

T = TypeVar("T")


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            self.bodies.append(await request.json())
            return {"ok": True}


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    got = Receiver()
    with BackgroundServer(got.app) as server:
        yield got, f"{server.url}/hook"


def by_name(statuses: list[AlertStatus]) -> dict[str, AlertStatus]:
    return {s.name: s for s in statuses}


async def _queue(app: App, count: int) -> None:
    uploads = [Upload(f"a-{i}.md", markdown_document(i).encode()) for i in range(count)]
    await ingest_uploads(app.db, app.blobs, uploads, owner="alerts")


async def _settled(app: App, name: str, firing: bool) -> AlertStatus:
    status = by_name(await evaluate(app.db, app.settings))[name]
    assert status.firing is firing, status
    return status


async def test_no_workers_and_stuck_jobs_fire_then_resolve(
    make_settings: Callable[..., Settings], receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    settings = make_settings(
        observability=ObservabilitySettings(stuck_job_seconds=60, alert_webhook_url=url)
    )
    async with open_app(settings) as app:
        assert not any(s.firing for s in await evaluate(app.db, settings))
        await _queue(app, 2)
        fired = await _settled(app, "IngestdNoLiveWorkers", True)
        assert fired.value == 2 and fired.since is not None
        # A job held by a worker that hangs: due, leased, and not moving for over a minute.
        hung = JobStore(app.db, "hung-worker", lease_seconds=600)
        held = await hung.claim(1)
        await app.db.execute(
            "UPDATE jobs SET state_changed_at = now() - interval '2 minutes' WHERE id = %s",
            (held[0].id,),
        )
        assert (await _settled(app, "IngestdStuckJobs", True)).value == 1

        # Fix: the hung worker's lease is cut, a real worker drains everything.
        await app.db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
        assert await app.worker(burst=True).run() == 0
        await app.db.execute(
            "INSERT INTO workers (id, hostname, pid, concurrency) VALUES ('w-live', 'h', 1, 1)"
        )
        statuses = by_name(await evaluate(app.db, settings))
        assert not statuses["IngestdStuckJobs"].firing
        assert not statuses["IngestdNoLiveWorkers"].firing
        history = await app.db.fetch_all(
            "SELECT name, status, notified FROM alert_events ORDER BY id"
        )
        recovered = await app.db.fetch_all(
            "SELECT count(*) AS n FROM job_events WHERE kind = 'lease_expired'"
        )
    assert [(h["name"], h["status"]) for h in history] == [
        ("IngestdNoLiveWorkers", "firing"),
        ("IngestdStuckJobs", "firing"),
        ("IngestdNoLiveWorkers", "resolved"),
        ("IngestdStuckJobs", "resolved"),
    ]
    assert all(h["notified"] for h in history)
    assert recovered[0]["n"] == 1  # the successor recorded taking over the hung claim
    texts = [b["text"] for b in got.bodies]
    assert len(texts) == 4
    assert texts[0].startswith("[FIRING] IngestdNoLiveWorkers")
    assert "docs/howto/runbooks.md#ingestdstuckjobs" in texts[1]
    assert texts[2].startswith("[RESOLVED] IngestdNoLiveWorkers")


async def test_error_rate_and_lease_expiries_fire_on_recent_events(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        observability=ObservabilitySettings(error_rate_min_jobs=2, lease_expiries_threshold=2)
    )
    async with open_app(settings) as app:
        await _queue(app, 3)
        await app.db.execute(
            "INSERT INTO job_events (job_id, kind, from_state, to_state, attempt, correlation_id)"
            " SELECT id, k, 'parse_queued', s, 1, correlation_id FROM jobs,"
            " (VALUES ('fail', 'failed_parse'), ('lease_expired', 'parse_queued')) AS v(k, s)"
        )
        statuses = by_name(await evaluate(app.db, settings, notify=False))
        assert statuses["IngestdErrorRateSpike"].firing
        assert statuses["IngestdErrorRateSpike"].value == 1.0
        assert statuses["IngestdLeaseExpiriesSpike"].value == 3
        assert statuses["IngestdLeaseExpiriesSpike"].firing


async def test_breaker_open_fires_and_resolves_when_the_vendor_is_back(app: App) -> None:
    policy = BreakerSettings(min_calls=2, open_seconds=0.2)
    breakers = SharedBreakers(app.db, policy, "w1")
    for _ in range(3):
        await breakers.record("openai", "w1", failed=True)
    fired = await _settled(app, "IngestdBreakerOpen", True)
    assert "openai" in fired.summary

    # The vendor is back: after open_seconds one probe goes, succeeds, and closes the breaker.
    async def admitted() -> Admission | None:
        admission = await breakers.admit("openai", "w1")
        return None if admission.kind == "wait" else admission

    probe = await eventually(admitted, what="the breaker to let a probe through")
    assert probe.kind in ("go", "probe")
    assert await breakers.record("openai", "w1", failed=False) == "closed"
    await _settled(app, "IngestdBreakerOpen", False)


async def test_budget_reached_fires_while_jobs_park_and_resolves_when_raised(
    make_settings: Callable[..., Settings],
) -> None:
    def with_budget(tokens: float) -> Settings:
        budget = BudgetSettings(service="hash", tokens=tokens)
        return make_settings(traffic=TrafficSettings(budgets=[budget], budget_recheck_seconds=0.1))

    async with open_app(with_budget(1)) as app:
        await _queue(app, 3)
        assert await app.worker(burst=True).run() == 0
        fired = await _settled(app, "IngestdBudgetReached", True)
        assert fired.value == 3 and "budget:hash:all:day" in fired.summary
    async with open_app(with_budget(1e9)) as app:  # the operator raises the budget
        await eventually(
            lambda: _drained(app, {"complete": 3}), timeout=60, what="the parked jobs to run"
        )
        await _settled(app, "IngestdBudgetReached", False)


async def _drained(app: App, expected: dict[str, int]) -> bool:
    """One burst of a worker; whether the jobs' states are then ``expected``."""
    await app.worker(burst=True).run()
    rows = await app.db.fetch_all("SELECT state, count(*) AS n FROM jobs GROUP BY state")
    return {row["state"]: row["n"] for row in rows} == expected
