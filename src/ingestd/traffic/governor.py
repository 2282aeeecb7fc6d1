"""The governor: every call to an external service goes through it.

``Governor.call(service, scope, costs, send)``:

1. asks the service's circuit breaker (open: raise :class:`Throttled` until its half-open time;
   the job is parked, not failed);
2. reserves ``costs`` (``{"requests": 1, "tokens": 1200}``) on the shared limits
   ``<scope>:<unit>`` and sleeps until they are due — or, when that would take longer than
   ``max_wait_seconds``, raises :class:`Throttled` so the job is parked until then;
3. sends, then tells the breaker how it went and corrects the limits from the answer's
   rate-limit headers, in one transaction;
4. on a 429, the limit is paused for every worker for the vendor's retry-after and the call is
   tried again within the same wait allowance (a throttle is never a failure).

``send`` returns an :class:`Answer` (value or classified error, plus the parsed headers) rather
than raising, so the governor sees the headers of failed answers too.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from ingestd.config import ServiceLimitSettings, TrafficSettings
from ingestd.errors import IngestdError, RateLimitedError, Throttled, TransientError
from ingestd.observability.metrics import record_rate_limit_wait
from ingestd.traffic.breakers import OPEN, SharedBreakers
from ingestd.traffic.headers import RateLimitSnapshot
from ingestd.traffic.limits import Correction, Limit, Limiter, correction

log = structlog.get_logger(__name__)

T = TypeVar("T")
UNITS = ("requests", "tokens", "pages")
# On the happy path a process writes its successes and header corrections at most this often
# (failures, probes and 429 pauses at once): the shared rows stay cool under heavy traffic.
FLUSH_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """What one call got: its value or its (classified) error, and the rate-limit headers."""

    value: T | None = None
    error: IngestdError | None = None
    limits: RateLimitSnapshot | None = None


def is_service_failure(error: IngestdError | None) -> bool:
    """Whether an error counts against the service's breaker: transient, and not a 429."""
    return isinstance(error, TransientError) and not isinstance(error, RateLimitedError)


def limits_of(scope: str, config: ServiceLimitSettings, headroom: float) -> list[Limit]:
    """The limits a scope has from settings (``openai:text-embedding-3-small:requests`` ...)."""
    per_window = {
        "requests": config.requests_per_minute,
        "tokens": config.tokens_per_minute,
        "pages": config.pages_per_minute,
    }
    return [
        Limit(f"{scope}:{unit}", value * headroom / config.window_seconds, value * headroom)
        for unit, value in per_window.items()
        if value is not None
    ]


def header_corrections(
    scope: str, snapshot: RateLimitSnapshot | None, headroom: float, limited: bool
) -> dict[str, Correction]:
    """Corrections of the scope's limits from one answer (a 429's retry-after pauses them)."""
    if snapshot is None:
        return {}
    pause = snapshot.retry_after if limited else None
    found = {
        "requests": correction(
            snapshot.limit_requests,
            snapshot.remaining_requests,
            snapshot.reset_requests,
            headroom=headroom,
            retry_after=pause,
        ),
        "tokens": correction(
            snapshot.limit_tokens,
            snapshot.remaining_tokens,
            snapshot.reset_tokens,
            headroom=headroom,
            retry_after=pause,
        ),
    }
    return {f"{scope}:{unit}": c for unit, c in found.items() if c is not None}


class Governor:
    """Breakers, shared limits and header adaptation around each external call."""

    def __init__(
        self,
        settings: TrafficSettings,
        limiter: Limiter,
        breakers: SharedBreakers | None,
        worker_id: str,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.breakers = breakers
        self.worker_id = worker_id
        self._calls = itertools.count()
        self._successes: dict[str, int] = {}
        self._corrections: dict[str, Correction] = {}
        self._flushed: dict[str, float] = {}

    async def call(
        self,
        service: str,
        scope: str,
        costs: Mapping[str, float],
        send: Callable[[], Awaitable[Answer[T]]],
    ) -> T:
        """Send once capacity allows; raise the answer's error, or :class:`Throttled`."""
        config = self.settings.limits.get(service)
        limits = limits_of(scope, config, self.settings.headroom) if config else []
        await self.limiter.ensure(limits)
        known = {limit.name for limit in limits}
        named = {f"{scope}:{u}": float(c) for u, c in costs.items() if f"{scope}:{u}" in known}
        caller = f"{self.worker_id}:{next(self._calls)}"
        give_up = time.monotonic() + self.settings.max_wait_seconds
        while True:
            probe = await self._admit(service, caller)
            await self._reserve(named, give_up)
            answer = await send()
            limited = isinstance(answer.error, RateLimitedError)
            await self._observe(service, scope, caller, answer, limited, probe)
            if answer.error is None:
                return answer.value  # type: ignore[return-value]
            if not limited:
                raise answer.error
            if time.monotonic() >= give_up:
                raise self._limited(scope, answer.error) from answer.error

    async def _admit(self, service: str, caller: str) -> bool:
        """Raise while the breaker is open; whether this call is the half-open probe."""
        if self.breakers is None:
            return False
        admission = await self.breakers.admit(service, caller)
        if admission.kind == "wait":
            raise breaker_open(service, admission.delay)
        return admission.kind == "probe"

    async def _reserve(self, costs: Mapping[str, float], give_up: float) -> None:
        if not costs:
            return
        allowance = max(0.0, give_up - time.monotonic())
        grant = await self.limiter.acquire(costs, allowance)
        if not grant.reserved:
            raise Throttled(
                "traffic.rate_limited",
                f"{grant.slowest} has no capacity for {grant.wait:.1f}s",
                waiting_on=grant.slowest or "rate_limit",
                delay=grant.wait,
            )
        if grant.wait > 0:
            record_rate_limit_wait(grant.slowest or "rate_limit", grant.wait)
            await asyncio.sleep(grant.wait)

    async def _observe(
        self,
        service: str,
        scope: str,
        caller: str,
        answer: Answer[T],
        limited: bool,
        probe: bool,
    ) -> None:
        await self._correct(scope, answer, limited)
        if self.breakers is None or limited:
            return
        failed = is_service_failure(answer.error)
        if not failed and not probe:
            self._successes[service] = self._successes.get(service, 0) + 1
            if not self._due(f"breaker:{service}"):
                return
            await self.breakers.record(service, None, False, self._take_successes(service))
            return
        successes = self._take_successes(service)
        state = await self.breakers.record(service, caller, failed, successes)
        if failed and state == OPEN and answer.error is not None:
            log.warning("breaker.open", service=service, error=answer.error.to_json())
            delay = self.settings.breaker.open_seconds
            raise breaker_open(service, delay) from answer.error

    async def _correct(self, scope: str, answer: Answer[T], limited: bool) -> None:
        """Correct the limits from the answer's headers: at once after a 429, else at most
        every ``FLUSH_SECONDS`` with the latest headers (they supersede earlier ones)."""
        if not (self.settings.adapt_to_headers or limited):
            return
        found = header_corrections(scope, answer.limits, self.settings.headroom, limited)
        if not self.settings.adapt_to_headers:  # keep only the 429's pause
            found = {n: Correction(None, None, 0.0, c.pause) for n, c in found.items()}
        self._corrections.update(found)
        if self._corrections and (limited or self._due(f"limits:{scope}")):
            corrections, self._corrections = self._corrections, {}
            await self.limiter.correct(corrections)

    def _due(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._flushed.get(key, 0.0) < FLUSH_SECONDS:
            return False
        self._flushed[key] = now
        return True

    def _take_successes(self, service: str) -> int:
        return self._successes.pop(service, 0)

    def _limited(self, scope: str, error: IngestdError) -> Throttled:
        retry_after = error.details.get("retry_after") or self.settings.max_wait_seconds
        return Throttled(
            "traffic.rate_limited",
            f"{scope} keeps answering 429: {error.message}",
            waiting_on=scope,
            delay=float(retry_after),
        )


def breaker_open(service: str, delay: float) -> Throttled:
    """The job waits ``delay`` seconds for ``service``'s breaker (its half-open time)."""
    return Throttled(
        "traffic.breaker_open",
        f"{service} is failing; its circuit breaker is open",
        waiting_on=f"breaker:{service}",
        delay=delay,
    )
