"""Token-budget batching: packing inputs into requests within the vendor's limits, in order."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.embedders.batching import Batch, BatchLimits, pack_batches
from ingestd.errors import PermanentError

L = BatchLimits


@pytest.mark.parametrize(
    ("counts", "limits", "expected"),
    [
        ([], L(), []),
        ([5], L(), [(0, 1, 5)]),
        ([1] * 5000, L(), [(0, 2048, 2048), (2048, 4096, 2048), (4096, 5000, 904)]),
        ([1] * 6, L(max_inputs=2), [(0, 2, 2), (2, 4, 2), (4, 6, 2)]),
        ([10, 10, 10], L(max_tokens=25), [(0, 2, 20), (2, 3, 10)]),
        ([10, 10, 10], L(max_tokens=20), [(0, 2, 20), (2, 3, 10)]),
        ([10, 10, 10], L(max_tokens=19), [(0, 1, 10), (1, 2, 10), (2, 3, 10)]),
        ([8191] * 40, L(), [(0, 36, 294_876), (36, 40, 32_764)]),
        ([3, 20, 3], L(max_tokens=20, max_tokens_per_input=20), [(0, 1, 3), (1, 2, 20), (2, 3, 3)]),
        ([4, 4, 4, 4, 4], L(max_inputs=3, max_tokens=10), [(0, 2, 8), (2, 4, 8), (4, 5, 4)]),
    ],
    ids=[
        "empty",
        "one",
        "5000 inputs -> 3 requests",
        "input ceiling",
        "token ceiling",
        "token ceiling exactly met",
        "one per request",
        "max-size inputs",
        "big input alone",
        "both ceilings",
    ],
)
def test_pack_batches(
    counts: list[int], limits: BatchLimits, expected: list[tuple[int, int, int]]
) -> None:
    assert pack_batches(counts, limits) == [Batch(*row) for row in expected]


@pytest.mark.parametrize(
    ("counts", "limits", "code", "index"),
    [
        ([5, 8192], L(), "embed.input_too_long", 1),
        ([8191, 8191], L(max_tokens_per_input=8000), "embed.input_too_long", 0),
        ([30], L(max_tokens=20), "embed.input_too_long", 0),  # cannot fit in any request
        ([3, 0, 3], L(), "embed.empty_input", 1),
    ],
)
def test_bad_inputs_are_permanent_errors(
    counts: list[int], limits: BatchLimits, code: str, index: int
) -> None:
    with pytest.raises(PermanentError) as caught:
        pack_batches(counts, limits)
    assert caught.value.code == code
    assert caught.value.details["index"] == index


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BatchLimits(max_inputs=0)


@given(
    counts=st.lists(st.integers(1, 50), max_size=200),
    max_inputs=st.integers(1, 20),
    max_tokens=st.integers(50, 300),
)
def test_batches_cover_inputs_in_order_within_limits(
    counts: list[int], max_inputs: int, max_tokens: int
) -> None:
    batches = pack_batches(counts, L(max_inputs=max_inputs, max_tokens=max_tokens))
    assert [i for b in batches for i in range(b.start, b.stop)] == list(range(len(counts)))
    for batch in batches:
        assert 1 <= batch.size <= max_inputs
        assert batch.tokens == sum(counts[batch.start : batch.stop]) <= max_tokens
    # greedy: no batch could have taken the next input
    for batch, nxt in itertools.pairwise(batches):
        assert batch.size == max_inputs or batch.tokens + counts[nxt.start] > max_tokens
