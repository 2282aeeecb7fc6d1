"""OpenAIEmbedder against the mock OpenAI server over real HTTP: packing, errors, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from ingestd.embedders.batching import BatchLimits, pack_batches
from ingestd.embedders.openai import (
    OpenAIEmbedder,
    classify_status,
    parse_duration,
    retry_after_from_message,
)
from ingestd.errors import PermanentError, RateLimitedError, TransientError
from ingestd.mocks import BackgroundServer
from ingestd.mocks.faults import MockState
from ingestd.mocks.openai import OpenAIBehaviour, create_app
from ingestd.ports import Embedder
from ingestd.tokens import count_tokens

KEY = "sk-embedder-test"
SMALL = "text-embedding-3-small"

MakeEmbedder = Callable[..., OpenAIEmbedder]


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(OpenAIBehaviour(api_key=KEY, hang_seconds=10))) as running:
        yield running


@pytest.fixture
async def make_embedder(
    server: BackgroundServer, state: MockState[OpenAIBehaviour]
) -> AsyncIterator[MakeEmbedder]:
    made: list[OpenAIEmbedder] = []

    def make(**options: Any) -> OpenAIEmbedder:
        settings: dict[str, Any] = {"model": SMALL, "api_key": KEY, "base_url": f"{server.url}/v1"}
        embedder = OpenAIEmbedder(**(settings | options))
        made.append(embedder)
        return embedder

    yield make
    for embedder in made:
        await embedder.aclose()


async def test_embeds_in_order_with_reported_usage(
    make_embedder: MakeEmbedder, server: BackgroundServer
) -> None:
    embedder = make_embedder()
    assert isinstance(embedder, Embedder)
    texts = [f"document number {i} about topic {i % 3}" for i in range(7)]
    result = await embedder.embed(texts)
    assert result.usage.prompt_tokens == sum(count_tokens(t) for t in texts)
    assert result.usage.requests == 1
    assert all(len(v) == 1536 for v in result.vectors)
    sdk = openai.AsyncOpenAI(api_key=KEY, base_url=f"{server.url}/v1")
    direct = await sdk.embeddings.create(model=SMALL, input=texts[4], encoding_format="float")
    await sdk.close()
    assert result.vectors[4] == pytest.approx(direct.data[0].embedding, abs=1e-6)
    assert (await embedder.embed([])).vectors == []


async def test_5000_inputs_take_3_requests(
    make_embedder: MakeEmbedder, state: MockState[OpenAIBehaviour]
) -> None:
    texts = [f"t{i}" for i in range(5000)]
    result = await make_embedder(dimensions=8).embed(texts)
    counters = state.counters.snapshot()
    assert (counters["requests"], counters["embeddings"]) == (3, 5000)
    assert result.usage.requests == 3
    assert result.usage.prompt_tokens == counters["tokens"] == sum(map(count_tokens, texts))
    assert len(result.vectors) == 5000 and len(result.vectors[0]) == 8
    single = await make_embedder(dimensions=8).embed([texts[4321]])
    assert result.vectors[4321] == single.vectors[0]


async def test_token_budget_splits_requests(
    make_embedder: MakeEmbedder, state: MockState[OpenAIBehaviour]
) -> None:
    texts = [" word" * n for n in (10, 20, 15, 5, 30, 1)]
    counts = [count_tokens(t) for t in texts]
    expected = pack_batches(counts, BatchLimits(max_tokens=35))
    result = await make_embedder(max_tokens_per_request=35).embed(texts)
    assert [(b.start, b.stop) for b in expected] == [(0, 2), (2, 4), (4, 6)]
    assert state.counters.get("requests") == 3
    assert result.usage.requests == 3 and result.usage.prompt_tokens == sum(counts)


async def test_concurrent_requests_keep_order(
    make_embedder: MakeEmbedder, state: MockState[OpenAIBehaviour]
) -> None:
    state.patch_behaviour({"latency": {"fixed_ms": 20, "jitter_ms": 30}})
    texts = [f"chunk {i}" for i in range(40)]
    batched = await make_embedder(max_inputs_per_request=3, concurrency=8).embed(texts)
    whole = await make_embedder().embed(texts)
    assert batched.vectors == whole.vectors


async def test_input_over_limit_is_refused_before_any_request(
    make_embedder: MakeEmbedder, state: MockState[OpenAIBehaviour]
) -> None:
    long_text = " hello" * 9000
    with pytest.raises(PermanentError) as caught:
        await make_embedder().embed(["fine", long_text])
    assert caught.value.code == "embed.input_too_long"
    assert caught.value.details["index"] == 1
    assert state.counters.get("requests") == 0
    truncated = await make_embedder(truncate=True).embed(["fine", long_text])
    assert truncated.usage.prompt_tokens == 1 + 8191


def _set(state: MockState[OpenAIBehaviour], **changes: Any) -> None:
    state.patch_behaviour(changes)


@pytest.mark.parametrize(
    ("setup", "options", "error_class", "code", "vendor_code", "status"),
    [
        (None, {"api_key": "sk-wrong"}, PermanentError, "embed.auth", "invalid_api_key", 401),
        ({"max_tokens_per_input": 2}, {}, PermanentError, "embed.invalid_request", None, 400),
        ({"max_tokens_per_request": 2}, {}, PermanentError, "embed.invalid_request",
         "max_tokens_per_request", 400),
        (None, {"model": "text-embedding-9", "dimensions": 4}, PermanentError,
         "embed.invalid_request", "model_not_found", 404),
        ({"rate_limits": {"requests_per_minute": 1}}, {}, RateLimitedError, "embed.rate_limited",
         "rate_limit_exceeded", 429),
        ({"quota": 1}, {}, PermanentError, "embed.insufficient_quota", "insufficient_quota", 429),
    ],
    ids=["401", "400 input too long", "400 max_tokens_per_request", "404 model", "429 rate",
         "429 quota"],
)  # fmt: skip
async def test_vendor_errors_are_classified(
    make_embedder: MakeEmbedder,
    state: MockState[OpenAIBehaviour],
    setup: dict[str, Any] | None,
    options: dict[str, Any],
    error_class: type[Exception],
    code: str,
    vendor_code: str | None,
    status: int,
) -> None:
    if setup:
        state.patch_behaviour(setup)
    embedder = make_embedder(**options)
    texts = ["alpha beta gamma"]
    if error_class is RateLimitedError:
        await embedder.embed(texts)  # spends the one request of the minute
    with pytest.raises(error_class) as caught:
        await embedder.embed(texts)
    error = caught.value
    assert isinstance(error, error_class) and type(error) is error_class
    assert error.code == code  # type: ignore[attr-defined]
    details = error.details  # type: ignore[attr-defined]
    assert details["vendor_code"] == vendor_code and details["status"] == status
    assert details["vendor_message"] and details["request_id"].startswith("req_")
    assert isinstance(error.__cause__, openai.APIStatusError)


async def test_rate_limited_error_carries_retry_after_and_headers(
    make_embedder: MakeEmbedder, state: MockState[OpenAIBehaviour]
) -> None:
    state.patch_behaviour({"rate_limits": {"requests_per_minute": 2, "tokens_per_minute": 600}})
    embedder = make_embedder()
    await embedder.embed(["one two"])
    seen = embedder.last_rate_limits
    assert seen is not None
    assert (seen.limit_requests, seen.remaining_requests) == (2, 1)
    assert (seen.limit_tokens, seen.remaining_tokens) == (600, 598)
    assert seen.reset_requests == pytest.approx(30, abs=0.5)  # one request refills in 60/2 s
    assert seen.reset_tokens == pytest.approx(0.2, abs=0.05)
    await embedder.embed(["three"])
    with pytest.raises(RateLimitedError) as caught:
        await embedder.embed(["four"])
    assert caught.value.retry_after == pytest.approx(29.9, abs=0.5)
    assert embedder.last_rate_limits is not None
    assert embedder.last_rate_limits.remaining_requests == 0
    assert embedder.last_rate_limits.retry_after == pytest.approx(29.9, abs=0.5)


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("http_500", "embed.unavailable", 500),
        ("http_502", "embed.unavailable", 502),
        ("http_503", "embed.unavailable", 503),
        ("timeout", "embed.timeout", None),
        ("connection_reset", "embed.unavailable", None),
        ("malformed_json", "embed.bad_response", None),
        ("wrong_vector_length", "embed.bad_response", None),
        ("partial_success", "embed.bad_response", None),
    ],
)
async def test_injected_faults_are_transient(
    make_embedder: MakeEmbedder,
    state: MockState[OpenAIBehaviour],
    kind: str,
    code: str,
    status: int | None,
) -> None:
    state.patch_behaviour({"faults": [{"kind": kind, "count": 1}]})
    embedder = make_embedder(timeout=0.5)
    with pytest.raises(TransientError) as caught:
        await embedder.embed(["first input", "second input"])
    assert type(caught.value) is TransientError
    assert caught.value.code == code
    assert caught.value.details.get("status") == status
    assert state.counters.errors() == {kind: 1}
    # The fault was counted once: the next call goes through, as a retry would.
    assert len((await embedder.embed(["first input", "second input"])).vectors) == 2


async def test_first_failure_cancels_the_other_requests(
    make_embedder: MakeEmbedder, state: MockState[OpenAIBehaviour]
) -> None:
    state.patch_behaviour({"faults": [{"kind": "http_503", "count": 1}]})
    embedder = make_embedder(max_inputs_per_request=1, concurrency=1)
    with pytest.raises(TransientError):
        await embedder.embed([f"text {i}" for i in range(20)])
    # The request already holding the semaphore when the first one failed may still go out.
    assert state.counters.get("requests") <= 2


async def test_in_process_asgi_transport() -> None:
    app = create_app(OpenAIBehaviour(api_key=KEY))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    embedder = OpenAIEmbedder(SMALL, KEY, "http://mock/v1", dimensions=64, http_client=http)
    result = await embedder.embed(["in", "process"])
    await embedder.aclose()
    assert not http.is_closed  # the owner of an injected client closes it
    await http.aclose()
    assert [len(v) for v in result.vectors] == [64, 64]
    assert app.state.mock.counters.get("embeddings") == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("120ms", 0.12), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("2.812s", 2.812),
     ("7", 7.0), ("500us", 0.0005), ("", None), ("soon", None), ("1x", None)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("Limit 3, Used 3, Requested 1. Please try again in 2.812s. Visit ...", 2.812),
        ("Please try again in 20ms.", 0.02),
        ("Please try again in 1m30s. Visit", 90.0),
        ("Rate limit reached.", None),
    ],
)
def test_retry_after_from_message(message: str, seconds: float | None) -> None:
    assert retry_after_from_message(message) == (
        pytest.approx(seconds) if seconds is not None else None
    )


@pytest.mark.parametrize(
    ("status", "vendor", "headers", "kind", "code"),
    [
        (429, {"code": "rate_limit_exceeded"}, {"retry-after": "3"}, RateLimitedError,
         "embed.rate_limited"),
        (429, {"type": "insufficient_quota"}, {}, PermanentError, "embed.insufficient_quota"),
        (401, {}, {}, PermanentError, "embed.auth"),
        (403, {}, {}, PermanentError, "embed.auth"),
        (400, {}, {}, PermanentError, "embed.invalid_request"),
        (408, {}, {}, TransientError, "embed.timeout"),
        (409, {}, {}, TransientError, "embed.unavailable"),
        (500, {}, {}, TransientError, "embed.unavailable"),
        (529, {}, {}, TransientError, "embed.unavailable"),
    ],
)  # fmt: skip
def test_classify_status(
    status: int, vendor: dict[str, Any], headers: dict[str, str], kind: type, code: str
) -> None:
    error = classify_status(status, vendor, headers)
    assert type(error) is kind and error.code == code
    if isinstance(error, RateLimitedError):
        assert error.retry_after == 3.0


async def test_the_micro_batcher_fills_requests_across_concurrent_callers(
    make_embedder: MakeEmbedder, state: MockState[OpenAIBehaviour]
) -> None:
    from ingestd.embedders.microbatch import MicroBatcher

    inner = make_embedder(dimensions=8, max_inputs_per_request=1000)
    batcher = MicroBatcher(inner, inner.limits, linger_seconds=0.05)
    calls = [[f"caller {c} text {i}" for i in range(300)] for c in range(6)]
    results = await asyncio.gather(*(batcher.embed(texts) for texts in calls))
    counters = state.counters.snapshot()
    assert (counters["requests"], counters["embeddings"]) == (2, 1800)
    assert batcher.stats.requests == 2 and batcher.stats.full_requests == 1
    assert sum(r.usage.requests for r in results) == 2
    assert sum(r.usage.prompt_tokens for r in results) == counters["tokens"]
    single = await inner.embed([calls[4][123]])
    assert results[4].vectors[123] == single.vectors[0]
