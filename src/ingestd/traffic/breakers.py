"""Circuit breakers per external service, their state in the database, shared by every worker.

closed → open when, within one counting window, at least ``min_calls`` calls were made and at
least ``failure_rate`` of them failed (timeouts, 5xx, lost connections — not 429s, not a
request's own 4xx). While open, nobody calls the service: jobs that need it are parked until
the breaker's half-open time, attempts unchanged. Then the first caller becomes the one probe
(half-open); its result closes the breaker or opens it again. Results of other calls that were
in flight meanwhile are ignored. Every transition is a row in ``breaker_events``.

The rules (:func:`admit`, :func:`record`) are pure functions of the breaker's row and the
database's clock; :class:`SharedBreakers` reads and writes the rows around them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from psycopg.rows import dict_row

from ingestd.config import BreakerSettings
from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class Breaker:
    """One service's breaker row."""

    service: str
    state: str = CLOSED
    window_started_at: datetime | None = None
    calls: int = 0
    failures: int = 0
    half_open_at: datetime | None = None
    probe_owner: str | None = None
    probe_expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Breaker:
        fields = {k: v for k, v in row.items() if k != "now"}
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Transition:
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True, slots=True)
class Admission:
    """``go`` (closed), ``probe`` (this call decides half-open), or ``wait`` until ``until``."""

    kind: Literal["go", "probe", "wait"]
    until: datetime | None = None
    delay: float = 0.0  # seconds from now until ``until``


def admit(
    b: Breaker, now: datetime, policy: BreakerSettings, caller: str
) -> tuple[Admission, Breaker, Transition | None]:
    """May ``caller`` call the service now? (pure)"""
    if b.state == CLOSED:
        return Admission("go"), b, None
    if b.state == OPEN:
        if b.half_open_at is not None and now < b.half_open_at:
            return _wait(b.half_open_at, now), b, None
        probing = _probe(b, now, policy, caller)
        return Admission("probe"), probing, Transition(OPEN, HALF_OPEN, "open time passed")
    if b.probe_owner == caller:
        return Admission("probe"), b, None
    if b.probe_expires_at is None or now >= b.probe_expires_at:
        return Admission("probe"), _probe(b, now, policy, caller), None
    until = min(b.probe_expires_at, now + timedelta(seconds=policy.open_seconds))
    return _wait(until, now), b, None


def _wait(until: datetime, now: datetime) -> Admission:
    return Admission("wait", until, max(0.0, (until - now).total_seconds()))


def _probe(b: Breaker, now: datetime, policy: BreakerSettings, caller: str) -> Breaker:
    expires = now + timedelta(seconds=policy.probe_timeout_seconds)
    return replace(b, state=HALF_OPEN, probe_owner=caller, probe_expires_at=expires)


def record(
    b: Breaker, now: datetime, policy: BreakerSettings, caller: str, failed: bool
) -> tuple[Breaker, Transition | None]:
    """The breaker after ``caller``'s call succeeded or failed (pure)."""
    if b.state == HALF_OPEN:
        if b.probe_owner != caller:
            return b, None  # in flight before the breaker opened: the probe decides
        if failed:
            return _open(b, now, policy), Transition(HALF_OPEN, OPEN, "the probe failed")
        return _closed(b, now), Transition(HALF_OPEN, CLOSED, "the probe succeeded")
    if b.state == OPEN:
        return b, None
    window = timedelta(seconds=policy.window_seconds)
    if b.window_started_at is None or now - b.window_started_at >= window:
        b = replace(b, window_started_at=now, calls=0, failures=0)
    b = replace(b, calls=b.calls + 1, failures=b.failures + int(failed))
    if failed and b.calls >= policy.min_calls and b.failures >= policy.failure_rate * b.calls:
        reason = f"{b.failures} of {b.calls} calls failed"
        return _open(b, now, policy), Transition(CLOSED, OPEN, reason)
    return b, None


def count_successes(b: Breaker, now: datetime, policy: BreakerSettings, n: int) -> Breaker:
    """A closed breaker after ``n`` more successful calls (counted in a batch, pure)."""
    if b.state != CLOSED or n <= 0:
        return b
    window = timedelta(seconds=policy.window_seconds)
    if b.window_started_at is None or now - b.window_started_at >= window:
        b = replace(b, window_started_at=now, calls=0, failures=0)
    return replace(b, calls=b.calls + n)


def _open(b: Breaker, now: datetime, policy: BreakerSettings) -> Breaker:
    half_open_at = now + timedelta(seconds=policy.open_seconds)
    return replace(
        b, state=OPEN, half_open_at=half_open_at, probe_owner=None, probe_expires_at=None
    )


def _closed(b: Breaker, now: datetime) -> Breaker:
    return Breaker(b.service, CLOSED, now)


class SharedBreakers:
    """The rules above over the ``breakers`` rows; transitions go to ``breaker_events``."""

    def __init__(self, db: Database, policy: BreakerSettings, worker_id: str) -> None:
        self.db = db
        self.policy = policy
        self.worker_id = worker_id

    async def admit(self, service: str, caller: str) -> Admission:
        rows = await self.db.fetch_all(QUERIES["read_breaker"], {"service": service})
        if not rows or rows[0]["state"] == CLOSED:
            return Admission("go")
        first = Breaker.from_row(rows[0])
        quick, _, _ = admit(first, rows[0]["now"], self.policy, caller)
        if quick.kind == "wait":
            return quick  # the common case while open: no lock, no write

        async def work(conn: Conn) -> Admission:
            b, now = await self._lock(conn, service)
            admission, after, transition = admit(b, now, self.policy, caller)
            await self._write(conn, b, after, transition)
            return admission

        return await self.db.transaction(work, deadline=30)

    async def record(
        self, service: str, caller: str | None, failed: bool, successes: int = 0
    ) -> str:
        """Count ``successes`` earlier successful calls, then ``caller``'s call (if any);
        returns the breaker's state after them."""

        async def work(conn: Conn) -> str:
            b, now = await self._lock(conn, service)
            after, transition = count_successes(b, now, self.policy, successes), None
            if caller is not None:
                after, transition = record(after, now, self.policy, caller, failed)
            await self._write(conn, b, after, transition)
            return after.state

        return await self.db.transaction(work, deadline=30)

    async def _lock(self, conn: Conn, service: str) -> tuple[Breaker, datetime]:
        await conn.execute(QUERIES["ensure_breaker"], {"service": service})
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["lock_breaker"], {"service": service})
        row = await cur.fetchone()
        assert row is not None  # ensured just above, in the same transaction
        return Breaker.from_row(row), row["now"]

    async def _write(
        self, conn: Conn, before: Breaker, after: Breaker, transition: Transition | None
    ) -> None:
        if after != before:
            params = {
                "service": after.service,
                "state": after.state,
                "window_started_at": after.window_started_at,
                "calls": after.calls,
                "failures": after.failures,
                "half_open_at": after.half_open_at,
                "probe_owner": after.probe_owner,
                "probe_expires_at": after.probe_expires_at,
            }
            await conn.execute(QUERIES["write_breaker"], params)
        if transition is not None:
            await conn.execute(
                QUERIES["insert_breaker_event"],
                {
                    "service": after.service,
                    "from_state": transition.from_state,
                    "to_state": transition.to_state,
                    "reason": transition.reason,
                    "calls": after.calls,
                    "failures": after.failures,
                    "worker_id": self.worker_id,
                },
            )
