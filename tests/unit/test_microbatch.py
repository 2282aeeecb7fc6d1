"""The micro-batcher: concurrent embed calls share requests filled to the limits, and each caller
gets back exactly its own vectors, rejections and share of the usage."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ingestd.embedders.batching import BatchLimits
from ingestd.embedders.microbatch import MicroBatcher
from ingestd.errors import IngestdError, PermanentError, TransientError
from ingestd.ports import EmbeddingResult, EmbeddingUsage


class FakeEmbedder:
    """Vectors that name their text; texts starting with ``poison`` are rejected one by one, and
    ``fail_next`` makes the next request fail as a whole."""

    model = "fake"
    dimensions = 2
    max_input_tokens = 100

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.fail_next: IngestdError | None = None

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        self.requests.append(list(texts))
        await asyncio.sleep(0)
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        failures: dict[int, IngestdError] = {
            i: PermanentError("embed.rejected", f"no: {t}")
            for i, t in enumerate(texts)
            if t.startswith("poison")
        }
        vectors = [[] if i in failures else [float(len(t)), 1.0] for i, t in enumerate(texts)]
        usage = EmbeddingUsage(prompt_tokens=sum(len(t.split()) for t in texts), requests=1)
        return EmbeddingResult(vectors, usage, failures)


def words(text: str) -> int:
    return len(text.split())


def batcher(
    inner: FakeEmbedder, max_inputs: int = 8, max_tokens: int = 1000, linger: float = 0.05
) -> MicroBatcher:
    limits = BatchLimits(max_inputs=max_inputs, max_tokens=max_tokens, max_tokens_per_input=100)
    return MicroBatcher(inner, limits, linger_seconds=linger, count=words)


def texts(caller: str, n: int, size: int = 1) -> list[str]:
    return [" ".join([f"{caller}{i}"] * size) for i in range(n)]


async def test_concurrent_calls_share_full_requests_and_get_their_own_vectors() -> None:
    inner = FakeEmbedder()
    mb = batcher(inner, max_inputs=8)
    calls = [texts(c, 4) for c in "abcd"]
    results = await asyncio.gather(*(mb.embed(t) for t in calls))
    assert [len(r) for r in inner.requests] == [8, 8]
    for sent, result in zip(calls, results, strict=True):
        assert result.vectors == [[float(len(t)), 1.0] for t in sent]
        assert result.failures == {}
    assert sum(r.usage.prompt_tokens for r in results) == 16
    assert sum(r.usage.requests for r in results) == 2
    assert mb.stats.requests == 2 and mb.stats.full_requests == 2
    assert mb.stats.mean_fullness == 1.0 and mb.stats.by_linger == 0


async def test_a_call_split_across_requests_is_reassembled_in_order() -> None:
    inner = FakeEmbedder()
    mb = batcher(inner, max_inputs=5, linger=0.01)
    first, second = texts("a", 3), texts("b", 9)
    a, b = await asyncio.gather(mb.embed(first), mb.embed(second))
    assert [len(r) for r in inner.requests] == [5, 5, 2]
    assert b.vectors == [[float(len(t)), 1.0] for t in second]
    assert a.vectors == [[float(len(t)), 1.0] for t in first]
    assert mb.stats.by_linger == 1  # the last two inputs left when the linger expired


async def test_requests_stay_within_the_token_limit() -> None:
    inner = FakeEmbedder()
    mb = batcher(inner, max_inputs=100, max_tokens=30, linger=0.01)
    await asyncio.gather(*(mb.embed(texts(c, 3, size=4)) for c in "abcde"))  # 60 tokens
    assert [sum(words(t) for t in r) for r in inner.requests] == [28, 28, 4]
    assert mb.stats.tokens == 60


async def test_a_rejected_input_fails_only_its_caller_at_its_own_index() -> None:
    inner = FakeEmbedder()
    mb = batcher(inner)
    good = texts("g", 3)
    bad = ["fine", "poison pill", "also fine"]
    g, b = await asyncio.gather(mb.embed(good), mb.embed(bad))
    assert len(inner.requests) == 1
    assert g.failures == {} and all(g.vectors)
    assert set(b.failures) == {1} and b.failures[1].code == "embed.rejected"
    assert b.vectors[1] == [] and b.vectors[0] and b.vectors[2]


async def test_a_caller_whose_every_input_is_rejected_gets_the_error() -> None:
    mb = batcher(FakeEmbedder())
    ok, poisoned = await asyncio.gather(
        mb.embed(texts("a", 2)), mb.embed(["poison 1", "poison 2"]), return_exceptions=True
    )
    assert isinstance(ok, EmbeddingResult) and ok.failures == {}
    assert isinstance(poisoned, PermanentError) and poisoned.code == "embed.rejected"


async def test_a_request_that_fails_as_a_whole_fails_every_caller_in_it() -> None:
    inner = FakeEmbedder()
    inner.fail_next = TransientError("embed.unavailable", "503")
    mb = batcher(inner)
    results = await asyncio.gather(
        mb.embed(texts("a", 2)), mb.embed(texts("b", 2)), return_exceptions=True
    )
    assert all(isinstance(r, TransientError) for r in results)
    again = await mb.embed(texts("c", 2))
    assert len(again.vectors) == 2


@pytest.mark.parametrize(
    ("text", "code"), [("", "embed.empty_input"), ("x " * 101, "embed.input_too_long")]
)
async def test_an_input_no_request_can_carry_fails_alone(text: str, code: str) -> None:
    inner = FakeEmbedder()
    mb = batcher(inner)
    result = await mb.embed(["fine", text])
    assert result.failures[1].code == code
    assert inner.requests == [["fine"]]


async def test_a_single_input_on_an_idle_batcher_does_not_wait_for_the_linger() -> None:
    inner = FakeEmbedder()
    mb = batcher(inner, linger=60)
    result = await asyncio.wait_for(mb.embed(["a search query"]), timeout=5)
    assert result.vectors == [[14.0, 1.0]] and mb.stats.requests == 0


async def test_a_cancelled_callers_queued_inputs_are_not_sent() -> None:
    inner = FakeEmbedder()
    mb = batcher(inner, linger=0.05)
    task = asyncio.create_task(mb.embed(texts("gone", 3)))
    await asyncio.sleep(0)
    task.cancel()
    kept = await mb.embed(texts("kept", 2))
    assert len(kept.vectors) == 2
    assert inner.requests == [texts("kept", 2)]
    await mb.aclose()


# -- the fill rule: a worker drives the batcher ---------------------------------------------------


class SlowEmbedder(FakeEmbedder):
    """Answers only when ``answer`` is set, so a request stays in flight as long as a test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        await self.answer.wait()
        return await super().embed(texts)


async def test_a_driven_batcher_holds_a_partial_request_until_the_worker_flushes() -> None:
    inner = FakeEmbedder()
    mb = MicroBatcher(
        inner,
        BatchLimits(max_inputs=8, max_tokens=1000),
        linger_seconds=0.001,
        fill_wait_seconds=60,
        count=words,
    )
    wakes: list[int] = []
    mb.drive(lambda: wakes.append(mb.waiting_calls))
    call = asyncio.create_task(mb.embed(texts("a", 3)))
    await asyncio.sleep(0.05)  # fifty times the undriven linger: still queued
    assert inner.requests == [] and mb.waiting_calls == 1 and mb.hungry
    assert wakes == [1]  # the worker heard that a call waits
    mb.flush()
    result = await call
    assert len(result.vectors) == 3 and inner.requests == [texts("a", 3)]
    assert mb.stats.by_idle == 1 and mb.stats.by_linger == 0
    assert mb.waiting_calls == 0 and len(wakes) == 2  # and that the request was answered


async def test_a_driven_batcher_still_sends_full_requests_at_once() -> None:
    inner = FakeEmbedder()
    mb = batcher(inner, max_inputs=4, linger=60)
    mb.drive(lambda: None)
    result = await asyncio.wait_for(mb.embed(texts("a", 8)), timeout=5)
    assert [len(r) for r in inner.requests] == [4, 4] and len(result.vectors) == 8
    assert mb.stats.full_requests == 2


async def test_a_driven_batcher_is_not_hungry_with_max_in_flight_requests_unanswered() -> None:
    inner = SlowEmbedder()
    mb = MicroBatcher(
        inner, BatchLimits(max_inputs=2), linger_seconds=60, count=words, max_in_flight=1
    )
    mb.drive(lambda: None)
    call = asyncio.create_task(mb.embed(texts("a", 3)))  # one full request leaves, one input waits
    await asyncio.sleep(0.01)
    assert not mb.hungry and mb.waiting_calls == 1
    inner.answer.set()
    mb.flush()
    assert len((await call).vectors) == 3
    assert mb.hungry


async def test_a_batcher_nobody_drives_any_more_uses_the_short_linger_again() -> None:
    inner = FakeEmbedder()
    mb = MicroBatcher(
        inner, BatchLimits(max_inputs=8), linger_seconds=0.01, fill_wait_seconds=60, count=words
    )
    mb.drive(lambda: None)
    mb.drive(None)  # the worker stops
    result = await asyncio.wait_for(mb.embed(texts("a", 3)), timeout=5)
    assert len(result.vectors) == 3 and mb.stats.by_linger == 1
