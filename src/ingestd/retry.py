"""Pure rules for failures: backoff, and what a classified error does to a job.

A throttle is never a failure: an error that says "capacity is missing" (a shared rate limit, a
vendor's 429, an open circuit breaker, a spent budget) parks the job — released until capacity
returns, its retry count unchanged — instead of counting as a failed try.
"""

from __future__ import annotations

import random

from ingestd.errors import (
    IngestdError,
    PermanentError,
    RateLimitedError,
    RecoverableError,
    Throttled,
)


def backoff_seconds(
    retry_count: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with 'equal jitter': between half and all of base * 2**retry_count."""
    ceiling = min(cap, base * 2.0 ** max(0, retry_count))
    jitter = rng.uniform(0, ceiling / 2) if rng is not None else random.uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


def retry_delay(error: IngestdError, retry_count: int, base: float, cap: float) -> float:
    """Seconds before the next try: the vendor's Retry-After when it gave one, else backoff."""
    delay = backoff_seconds(retry_count, base, cap)
    if isinstance(error, RateLimitedError) and error.retry_after is not None:
        return min(cap, max(error.retry_after, 0.0)) + random.uniform(0, 0.25)
    return delay


# Throttling and outages are not the document's fault: they get this many times more tries.
SERVICE_WAIT_FACTOR = 10


def should_fail(error: IngestdError, retry_count: int, max_attempts: int) -> bool:
    """Fail the stage now (permanent error, or out of tries) rather than retry it."""
    if park_for(error, base=1.0, cap=1.0) is not None:
        return False
    if isinstance(error, PermanentError):
        return True
    if "max_retries" in error.details:  # an error that earns only a few tries of its own
        return retry_count >= int(error.details["max_retries"])
    if isinstance(error, RecoverableError):
        return retry_count + 1 >= max_attempts * SERVICE_WAIT_FACTOR
    return retry_count + 1 >= max_attempts


# Parked jobs come back at least this much later, so a parked job never spins.
MIN_PARK_SECONDS = 0.05


def park_for(error: IngestdError, base: float, cap: float) -> tuple[str, float] | None:
    """(what the job waits on, seconds to park it) for a throttle; ``None`` for a failure.

    A vendor's 429 that reached the stage (no shared limiter in between) parks for its
    Retry-After (or a backoff), waiting on the error code.
    """
    if isinstance(error, Throttled):
        return error.waiting_on, max(MIN_PARK_SECONDS, error.delay)
    if isinstance(error, RateLimitedError):
        return error.code, max(MIN_PARK_SECONDS, retry_delay(error, 0, base, cap))
    return None
