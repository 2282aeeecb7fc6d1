"""Pure rules, as parameter tables: retries and backoff, usage sharing, progress, named queries."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.db.queries import QUERIES, parse_queries
from ingestd.errors import (
    PermanentError,
    RateLimitedError,
    RecoverableError,
    TransientError,
)
from ingestd.reports import progress
from ingestd.retry import SERVICE_WAIT_FACTOR, backoff_seconds, retry_delay, should_fail
from ingestd.stages import split_usage


@pytest.mark.parametrize(
    ("error", "retry_count", "max_attempts", "fail"),
    [
        (PermanentError("parse.corrupt", "x"), 0, 5, True),
        (TransientError("embed.unavailable", "x"), 0, 5, False),
        (TransientError("embed.unavailable", "x"), 3, 5, False),
        (TransientError("embed.unavailable", "x"), 4, 5, True),
        (RateLimitedError("embed.rate_limited", "x"), 4, 5, False),
        # A throttle is never a failure: a 429 parks the job however often it comes.
        (RateLimitedError("embed.rate_limited", "x"), 5 * SERVICE_WAIT_FACTOR - 1, 5, False),
        (RecoverableError("parse.remote_down", "x"), 5 * SERVICE_WAIT_FACTOR - 1, 5, True),
        (RecoverableError("parse.remote_down", "x"), 10, 5, False),
    ],
)
def test_should_fail(
    error: PermanentError, retry_count: int, max_attempts: int, fail: bool
) -> None:
    assert should_fail(error, retry_count, max_attempts) is fail


@pytest.mark.parametrize(
    ("retry_count", "low", "high"),
    [(0, 1.0, 2.0), (1, 2.0, 4.0), (3, 8.0, 16.0), (10, 50.0, 100.0)],
)
def test_backoff_doubles_with_jitter_up_to_the_cap(
    retry_count: int, low: float, high: float
) -> None:
    rng = random.Random(7)
    for _ in range(50):
        assert low <= backoff_seconds(retry_count, base=2.0, cap=100.0, rng=rng) <= high


def test_retry_after_from_the_vendor_wins_within_the_cap() -> None:
    limited = RateLimitedError("embed.rate_limited", "slow down", retry_after=7.0)
    assert 7.0 <= retry_delay(limited, 0, base=2.0, cap=300.0) <= 7.25
    assert retry_delay(limited, 0, base=2.0, cap=3.0) <= 3.25
    plain = TransientError("embed.unavailable", "down")
    assert 1.0 <= retry_delay(plain, 0, base=2.0, cap=300.0) <= 2.0


@given(st.integers(0, 10**6), st.lists(st.integers(0, 10**4), min_size=1, max_size=50))
def test_split_usage_adds_up_and_is_proportional(total: int, weights: list[int]) -> None:
    parts = split_usage(total, weights)
    assert len(parts) == len(weights)
    if sum(weights) == 0:
        assert parts == [0] * len(weights)
        return
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part - total * weight / sum(weights)) < 1


@pytest.mark.parametrize(
    ("state", "chunks", "buffered", "vectors", "percent", "done"),
    [
        ("uploaded", None, 0, 0, 0.0, None),
        ("parsed", None, 0, 0, 22.2, None),
        ("chunks_stored", 10, 10, 0, 55.6, 10),
        ("embedding_in_progress", 10, 10, 5, 83.3, 5),
        ("embeddings_stored", 10, 10, 10, 88.9, 10),
        ("complete", 10, 0, 0, 100.0, 10),
        ("failed_parse", None, 0, 0, None, None),
    ],
)
def test_progress_comes_from_the_buffers(
    state: str,
    chunks: int | None,
    buffered: int,
    vectors: int,
    percent: float | None,
    done: int | None,
) -> None:
    result = progress(state, chunks, buffered, vectors)
    assert result["percent"] == percent
    assert result["done"] == done
    assert result["stage"] == state


def test_named_queries() -> None:
    assert "claim_jobs" in QUERIES and "FOR UPDATE SKIP LOCKED" in QUERIES["claim_jobs"]
    parsed = parse_queries("-- preamble\n-- name: a\nSELECT 1\n\n-- name: b\nSELECT 2\n")
    assert parsed == {"a": "SELECT 1", "b": "SELECT 2"}
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")
