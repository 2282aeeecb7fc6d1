"""Rate limits shared by every worker: GCRA kept in PostgreSQL, one row per limit.

A limit is a rate (units per second) and a burst (units that may go at once); its row keeps the
theoretical arrival time (``tat``) of GCRA, the generic cell rate algorithm. A request of ``cost``
units may be sent at ``max(tat, now) + cost/rate - burst/rate``; reserving it moves ``tat`` on by
``cost/rate``. Reservations are made *before* the request is sent and sized by its token count,
so a fleet of workers never sends more than the limit, and a worker that must wait knows for how
long (it sleeps, or parks the job when the wait passes ``max_wait_seconds``). One statement
acquires every limit a request needs (requests and tokens) at once, or none of them.

The vendor's answers correct the limits (:func:`correction`): its ``x-ratelimit-limit-*`` gives
the burst, ``limit - remaining`` over ``reset`` gives the refill rate, and ``remaining`` says how
empty its bucket is (the shared bucket is made at least as empty). A 429's ``retry-after``
pauses the limit for every worker.

:class:`SharedLimiter` is the database version; :class:`LocalLimiter` runs the same arithmetic in
one process (``traffic.mode=process``: each process believes it owns the whole limit, which is
what per-process limiting amounts to).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn

# Below this share of the limit used, limit - remaining is too small to infer a rate from.
MIN_DEFICIT_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class Limit:
    """A limit as settings give it: ``rate`` units per second, ``burst`` units at once."""

    name: str
    rate: float
    burst: float


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to an acquisition: wait ``wait`` seconds, then send (if ``reserved``)."""

    wait: float
    reserved: bool
    slowest: str | None = None  # the limit that asked for the longest wait


def gcra(
    tat: float, now: float, rate: float, burst: float, cost: float, paused_until: float = 0.0
) -> tuple[float, float]:
    """(seconds to wait before sending ``cost`` units, the new ``tat`` once reserved).

    A cost above the burst is charged as the burst (it could never go otherwise).
    """
    cost = min(cost, burst)
    base = max(tat, now)
    wait = max(base + (cost - burst) / rate - now, paused_until - now, 0.0)
    return wait, base + cost / rate


@dataclass(frozen=True, slots=True)
class Correction:
    """How one answer corrects one limit (``None``: keep what the row has)."""

    rate: float | None
    burst: float | None
    deficit: float  # units the shared bucket must at least be short of
    pause: float | None  # seconds nobody may send (a 429's retry-after)


def correction(
    limit: int | None,
    remaining: int | None,
    reset: float | None,
    *,
    headroom: float,
    retry_after: float | None = None,
) -> Correction | None:
    """The correction of a limit from the vendor's headers (pure; ``None``: nothing to learn).

    ``headroom`` (< 1) keeps ingestd a little under the vendor's limit: the burst is that share
    of ``limit``, the rate that share of the refill rate inferred from ``(limit - remaining) /
    reset`` (only when enough of the limit is in use for the figures to mean something).
    ``remaining`` is a whole number rounded down, so the deficit it implies can be one unit too
    large; the rate is inferred from one unit less — never above the vendor's.
    """
    if limit is None or limit <= 0:
        if retry_after is None:
            return None
        return Correction(None, None, 0.0, retry_after)
    rate = None
    deficit = 0.0
    if remaining is not None:
        used = max(0, limit - remaining)
        deficit = used * headroom
        surely_used = used - 1
        if reset and reset > 0 and surely_used >= max(1.0, limit * MIN_DEFICIT_SHARE):
            rate = surely_used / reset * headroom
    return Correction(rate, limit * headroom, deficit, retry_after)


class Limiter(Protocol):
    async def ensure(self, limits: Sequence[Limit]) -> None: ...

    async def acquire(self, costs: Mapping[str, float], max_wait: float) -> Grant: ...

    async def correct(self, corrections: Mapping[str, Correction]) -> None: ...


class SharedLimiter:
    """The limits in the database: every worker on every machine draws from the same rows."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ensured: set[str] = set()

    async def ensure(self, limits: Sequence[Limit]) -> None:
        missing = sorted(
            (limit for limit in limits if limit.name not in self._ensured), key=lambda x: x.name
        )
        if not missing:
            return
        await self.db.execute(
            QUERIES["ensure_limits"],
            {
                "names": [limit.name for limit in missing],
                "rates": [limit.rate for limit in missing],
                "bursts": [limit.burst for limit in missing],
            },
        )
        self._ensured.update(limit.name for limit in missing)

    async def acquire(self, costs: Mapping[str, float], max_wait: float) -> Grant:
        params = {"names": list(costs), "costs": list(costs.values()), "max_wait": max_wait}

        async def work(conn: Conn) -> Grant:
            cur = await conn.execute(QUERIES["acquire_limits"], params)
            row = await cur.fetchone()
            if row is None or row[1] is None:  # no such limit (any more): nothing to wait for
                return Grant(0.0, True)
            return Grant(float(row[0]), bool(row[2]), row[1])

        return await self.db.transaction(work, deadline=30)

    async def correct(self, corrections: Mapping[str, Correction]) -> None:
        if not corrections:
            return
        params = correction_params(corrections)

        async def work(conn: Conn) -> None:
            await conn.execute(QUERIES["lock_limits"], {"names": params["names"]})
            await conn.execute(QUERIES["adapt_limits"], params)

        await self.db.transaction(work, deadline=30)


def correction_params(corrections: Mapping[str, Correction]) -> dict[str, list[Any]]:
    names = sorted(corrections)
    values = [corrections[name] for name in names]
    return {
        "names": names,
        "rates": [c.rate for c in values],
        "bursts": [c.burst for c in values],
        "deficits": [c.deficit for c in values],
        "pauses": [c.pause for c in values],
    }


@dataclass
class _Bucket:
    rate: float
    burst: float
    tat: float = 0.0
    paused_until: float = 0.0


class LocalLimiter:
    """The same arithmetic in one process: each process throttles only itself."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    async def ensure(self, limits: Sequence[Limit]) -> None:
        for limit in limits:
            self._buckets.setdefault(limit.name, _Bucket(limit.rate, limit.burst))

    async def acquire(self, costs: Mapping[str, float], max_wait: float) -> Grant:
        now = time.monotonic()
        timed = {}
        for name, cost in costs.items():
            b = self._buckets.get(name)
            if b is not None:
                timed[name] = gcra(b.tat, now, b.rate, b.burst, cost, b.paused_until)
        if not timed:
            return Grant(0.0, True)
        slowest = max(timed, key=lambda n: timed[n][0])
        wait = timed[slowest][0]
        if wait > max_wait:
            return Grant(wait, False, slowest)
        for name, (_, new_tat) in timed.items():
            self._buckets[name].tat = new_tat
        return Grant(wait, True, slowest)

    async def correct(self, corrections: Mapping[str, Correction]) -> None:
        now = time.monotonic()
        for name, c in corrections.items():
            b = self._buckets.get(name)
            if b is None:
                continue
            b.rate = c.rate or b.rate
            b.burst = c.burst or b.burst
            b.tat = max(b.tat, now + c.deficit / b.rate)
            if c.pause is not None:
                b.paused_until = max(b.paused_until, now + c.pause)


class NoLimiter:
    """``traffic.mode=off``: send at once; only the vendor's 429s slow anything down."""

    async def ensure(self, limits: Sequence[Limit]) -> None:
        return None

    async def acquire(self, costs: Mapping[str, float], max_wait: float) -> Grant:
        return Grant(0.0, True)

    async def correct(self, corrections: Mapping[str, Correction]) -> None:
        return None
