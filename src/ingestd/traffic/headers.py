"""The vendors' rate-limit headers as numbers: ``x-ratelimit-*``, ``retry-after(-ms)``.

OpenAI (and servers that copy it) report, on every answer, each limit (requests and tokens per
minute), what remains of it, and how long until it is whole again (a Go-style duration such as
``6m0s`` or ``120ms``). :mod:`ingestd.traffic.limits` turns a snapshot into a correction of the
shared limit.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration (``120ms``, ``1s``, ``6m0s``, ``1h2m3.5s``); ``None`` if not
    one. A bare number is seconds."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


@dataclass(frozen=True, slots=True)
class RateLimitSnapshot:
    """The ``x-ratelimit-*`` headers of one answer, as numbers and seconds (``None``: absent)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None
    retry_after: float | None = None
    observed_at: float = 0.0  # time.monotonic() when the answer arrived


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitSnapshot | None:
    """The rate-limit facts in ``headers``, or ``None`` when there are none."""
    snapshot = RateLimitSnapshot(
        limit_requests=_int_header(headers, "x-ratelimit-limit-requests"),
        remaining_requests=_int_header(headers, "x-ratelimit-remaining-requests"),
        reset_requests=parse_duration(headers.get("x-ratelimit-reset-requests")),
        limit_tokens=_int_header(headers, "x-ratelimit-limit-tokens"),
        remaining_tokens=_int_header(headers, "x-ratelimit-remaining-tokens"),
        reset_tokens=parse_duration(headers.get("x-ratelimit-reset-tokens")),
        retry_after=retry_after_from_headers(headers),
        observed_at=time.monotonic(),
    )
    facts = (
        snapshot.limit_requests,
        snapshot.limit_tokens,
        snapshot.remaining_requests,
        snapshot.remaining_tokens,
        snapshot.retry_after,
    )
    return snapshot if any(f is not None for f in facts) else None


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date), in seconds."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
