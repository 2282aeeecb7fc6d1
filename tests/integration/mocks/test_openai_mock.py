"""The mock OpenAI server over real HTTP, driven by the official ``openai`` SDK, unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import openai
import pytest

from ingestd.mocks import BackgroundServer
from ingestd.mocks.faults import FaultKind, MockState, parse_fault_spec
from ingestd.mocks.openai import OpenAIBehaviour, build_behaviour, create_app, format_duration
from ingestd.ports import EmbeddingResult, EmbeddingUsage
from ingestd.tokens import count_tokens, encode

KEY = "sk-mock-test"
SMALL = "text-embedding-3-small"


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(OpenAIBehaviour(api_key=KEY))) as running:
        yield running


@pytest.fixture
async def client(
    server: BackgroundServer, state: MockState[OpenAIBehaviour]
) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(api_key=KEY, base_url=f"{server.url}/v1", max_retries=0)
    yield sdk
    await sdk.close()


@pytest.fixture
async def admin(server: BackgroundServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield http


async def test_default_encoding_is_base64_and_decodes(client: openai.AsyncOpenAI) -> None:
    texts = ["the cat sat on the mat", "a dog barked"]
    raw = await client.embeddings.with_raw_response.create(model=SMALL, input=texts)
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)  # base64 on the wire
    response = raw.parse()
    assert [d.index for d in response.data] == [0, 1]
    assert all(len(d.embedding) == 1536 for d in response.data)
    tokens = sum(count_tokens(t) for t in texts)
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (tokens, tokens)
    assert response.model == SMALL
    assert np.linalg.norm(response.data[0].embedding) == pytest.approx(1.0, abs=1e-5)


async def test_float_and_base64_give_the_same_vector(client: openai.AsyncOpenAI) -> None:
    as_float = await client.embeddings.create(model=SMALL, input="hello", encoding_format="float")
    as_b64 = await client.embeddings.create(model=SMALL, input=["hello"])
    assert len(as_float.data) == 1
    assert as_float.data[0].embedding == pytest.approx(as_b64.data[0].embedding, abs=1e-6)
    again = await client.embeddings.create(model=SMALL, input="hello", encoding_format="float")
    assert again.data[0].embedding == as_float.data[0].embedding  # deterministic


async def test_token_id_inputs_equal_their_text(client: openai.AsyncOpenAI) -> None:
    texts = ["search engines", "vector databases"]
    ids = [encode(t) for t in texts]
    by_text = await client.embeddings.create(model=SMALL, input=texts)
    by_ids = await client.embeddings.create(model=SMALL, input=ids)
    one = await client.embeddings.create(model=SMALL, input=ids[0])
    assert by_ids.usage.prompt_tokens == sum(map(len, ids))
    assert one.usage.prompt_tokens == len(ids[0])
    for a, b in zip(by_text.data, by_ids.data, strict=True):
        assert a.embedding == b.embedding
    assert one.data[0].embedding == by_text.data[0].embedding


@pytest.mark.parametrize(
    ("model", "dimensions", "length"),
    [
        (SMALL, None, 1536),
        (SMALL, 256, 256),
        (SMALL, 4, 4),  # under the hash embedder's minimum: the token hash answers
        ("text-embedding-3-large", None, 3072),
        ("text-embedding-3-large", 1024, 1024),
        ("text-embedding-ada-002", None, 1536),
    ],
)
async def test_vector_length_follows_model_and_dimensions(
    client: openai.AsyncOpenAI, model: str, dimensions: int | None, length: int
) -> None:
    extra: dict[str, Any] = {} if dimensions is None else {"dimensions": dimensions}
    response = await client.embeddings.create(model=model, input="x", **extra)
    assert len(response.data[0].embedding) == length


async def test_token_hash_vectors(
    client: openai.AsyncOpenAI, state: MockState[OpenAIBehaviour]
) -> None:
    state.patch_behaviour({"vectors": "token-hash"})
    texts = ["alpha beta", "gamma", "alpha beta"]
    response = await client.embeddings.create(model=SMALL, input=texts)
    vectors = [d.embedding for d in response.data]
    assert len(vectors[0]) == 1536 and vectors[0] == vectors[2] != vectors[1]
    assert np.linalg.norm(vectors[1]) == pytest.approx(1.0, abs=1e-5)
    by_ids = await client.embeddings.create(model=SMALL, input=[encode(t) for t in texts])
    assert [d.embedding for d in by_ids.data] == vectors


def _long_text(tokens: int) -> str:
    text = " hello" * tokens
    assert count_tokens(text) == tokens
    return text


@pytest.mark.parametrize(
    ("request_", "status", "vendor_code", "message"),
    [
        ({"input": "x", "dimensions": 8, "model": "text-embedding-ada-002"}, 400, None,
         "does not support specifying dimensions"),
        ({"input": ["x"] * 2049}, 400, None, "'$.input' is invalid"),
        ({"input": ""}, 400, None, "'$.input' is invalid"),
        ({"input": ["a", ""]}, 400, None, "'$.input' is invalid"),
        ({"input": []}, 400, None, "'$.input' is invalid"),
        ({"input": ["a", [1, 2]]}, 400, None, "'$.input' is invalid"),
        ({"input": _long_text(8193)}, 400, None, "maximum context length is 8192 tokens"),
        ({"input": [_long_text(8000)] * 38}, 400, "max_tokens_per_request",
         "Requested 304000 tokens, max 300000 tokens per request"),
        ({"input": "x", "model": "text-embedding-4"}, 404, "model_not_found", "does not exist"),
        ({"input": "x", "dimensions": 5000}, 400, None, "Invalid value for 'dimensions'"),
    ],
    ids=["ada-dimensions", "2049 inputs", "empty", "empty item", "empty list", "mixed",
         "input too long", "request too long", "unknown model", "too many dimensions"],
)  # fmt: skip
async def test_vendor_errors(
    client: openai.AsyncOpenAI,
    state: MockState[OpenAIBehaviour],
    request_: dict[str, Any],
    status: int,
    vendor_code: str | None,
    message: str,
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await client.embeddings.create(**{"model": SMALL, **request_})
    assert caught.value.status_code == status
    assert caught.value.code == vendor_code
    assert message in str(caught.value.message)
    if vendor_code == "max_tokens_per_request":
        assert caught.value.type == "max_tokens_per_request"
    assert state.counters.get("tokens") == 0


@pytest.mark.parametrize("key", ["sk-wrong", ""])
async def test_bad_or_missing_key_is_401(server: BackgroundServer, key: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        answer = await http.post(
            "/v1/embeddings", json={"model": SMALL, "input": "x"}, headers=headers
        )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"
    assert answer.headers["x-request-id"].startswith("req_")


async def test_malformed_body_is_400(server: BackgroundServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.post(
            "/v1/embeddings", content=b"{not json", headers={"Authorization": f"Bearer {KEY}"}
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_rate_limit_headers_and_429(
    client: openai.AsyncOpenAI, state: MockState[OpenAIBehaviour]
) -> None:
    state.patch_behaviour({"rate_limits": {"requests_per_minute": 2, "tokens_per_minute": 1000}})
    ok = await client.embeddings.with_raw_response.create(model=SMALL, input="one two three")
    headers = ok.headers
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "1"
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "997"
    assert re.fullmatch(r"\d+(\.\d+)?s|\d+ms", headers["x-ratelimit-reset-requests"])
    assert int(headers["openai-processing-ms"]) >= 0
    await client.embeddings.create(model=SMALL, input="x")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.embeddings.create(model=SMALL, input="x")
    error = caught.value
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert re.search(r"Please try again in \d+\.\d{3}s\.", error.message)
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    counters = state.counters.snapshot()
    assert counters["rate_limited"] == 1 and counters["errors"] == {"rate_limit_exceeded": 1}


async def test_token_budget_429_names_tokens(
    client: openai.AsyncOpenAI, state: MockState[OpenAIBehaviour]
) -> None:
    state.patch_behaviour({"rate_limits": {"tokens_per_minute": 10}})
    with pytest.raises(openai.RateLimitError) as caught:
        await client.embeddings.create(model=SMALL, input=" hello" * 11)
    assert caught.value.type == "tokens"
    assert "tokens per min (TPM): Limit 10, Used 0, Requested 11" in caught.value.message


async def test_insufficient_quota(
    client: openai.AsyncOpenAI, state: MockState[OpenAIBehaviour]
) -> None:
    state.patch_behaviour({"quota": 5})
    await client.embeddings.create(model=SMALL, input=" a b c")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.embeddings.create(model=SMALL, input=" a b c")
    assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
    assert state.counters.get("tokens") == 3


async def test_models(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert {m.id for m in models.data} == {
        SMALL,
        "text-embedding-3-large",
        "text-embedding-ada-002",
    }
    assert (await client.models.retrieve(SMALL)).owned_by == "system"


async def test_admin_routes(admin: httpx.AsyncClient, client: openai.AsyncOpenAI) -> None:
    assert (await admin.get("/_admin/behaviour")).json()["api_key"] == KEY
    patched = await admin.patch("/_admin/behaviour", json={"latency": {"fixed_ms": 1}})
    assert patched.json()["latency"]["fixed_ms"] == 1 and patched.json()["api_key"] == KEY
    put = await admin.put("/_admin/behaviour", json={"api_key": KEY, "max_inputs": 3})
    assert put.json()["latency"]["fixed_ms"] == 0 and put.json()["max_inputs"] == 3
    assert (await admin.put("/_admin/behaviour", json={"max_inputz": 3})).status_code == 422
    assert (await admin.patch("/_admin/behaviour", json=[1])).status_code == 400
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model=SMALL, input=["a"] * 4)
    await client.embeddings.create(model=SMALL, input=["a", "b"])
    counters = (await admin.get("/_admin/counters")).json()
    assert counters["requests"] == 2 and counters["embeddings"] == 2 and counters["tokens"] == 2
    assert counters["errors"] == {"invalid_request_error": 1}
    assert counters["rate_limits"] == {"requests": None, "tokens": None}
    reset = await admin.post("/_admin/reset", params={"behaviour": "true"})
    assert reset.json()["behaviour"]["max_inputs"] == 2048
    assert (await admin.get("/_admin/counters")).json()["requests"] == 0


class _ThreeDimensional:
    """A real (tiny) Embedder: the mock must fit its vectors to the model's length."""

    model = "tiny"
    dimensions = 3
    max_input_tokens = 8191

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        vectors = [[float(len(t)), 1.0, 0.0] for t in texts]
        return EmbeddingResult(vectors, EmbeddingUsage(requests=1))


async def test_pluggable_embedder_is_padded_or_cut() -> None:
    app = create_app(OpenAIBehaviour(), embedder=_ThreeDimensional())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as http:
        sdk = openai.AsyncOpenAI(
            api_key="any", base_url="http://mock/v1", http_client=cast(Any, http)
        )
        padded = await sdk.embeddings.create(model=SMALL, input="abcd", encoding_format="float")
        cut = await sdk.embeddings.create(model=SMALL, input="abcd", dimensions=1)
    assert padded.data[0].embedding[:4] == [4.0, 1.0, 0.0, 0.0]
    assert len(padded.data[0].embedding) == 1536
    assert cut.data[0].embedding == [1.0]  # shortened, then re-normalised as OpenAI does


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.12, "120ms"), (0.0201, "21ms"), (1, "1s"), (2.812, "2.812s"), (360, "6m0s"),
     (61.5, "1m1.5s"), (3725, "1h2m5s")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("http_503", {"kind": "http_503", "probability": 1.0, "count": None, "skip": 0}),
        ("http_500:0.25", {"kind": "http_500", "probability": 0.25}),
        ("timeout:count=2,skip=1", {"kind": "timeout", "count": 2, "skip": 1}),
        ("malformed_json:p=0.5,routes=/v1/embeddings|/v1/x",
         {"probability": 0.5, "routes": ["/v1/embeddings", "/v1/x"]}),
    ],
)  # fmt: skip
def test_parse_fault_spec(spec: str, expected: dict[str, Any]) -> None:
    rule = parse_fault_spec(spec).model_dump(mode="json")
    assert {k: rule[k] for k in expected} == expected


def test_fault_rules_skip_count_and_seeded_probability() -> None:
    counted = MockState(OpenAIBehaviour(faults=[parse_fault_spec("http_503:count=2,skip=1")]))
    draws = [counted.draw_fault("/v1/embeddings") for _ in range(5)]
    assert draws == [None, FaultKind.HTTP_503, FaultKind.HTTP_503, None, None]
    runs = []
    for _ in range(2):
        mock = MockState(OpenAIBehaviour(seed=11, faults=[parse_fault_spec("timeout:0.5")]))
        runs.append([mock.draw_fault("/v1/embeddings") for _ in range(40)])
    assert runs[0] == runs[1]  # same seed, same faults
    assert 5 < runs[0].count(FaultKind.TIMEOUT) < 35
    scoped = MockState(OpenAIBehaviour(faults=[parse_fault_spec("http_500:routes=/v1/models")]))
    assert scoped.draw_fault("/v1/embeddings") is None
    assert scoped.draw_fault("/v1/models") == "http_500"


def test_build_behaviour_from_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "behaviour.json"
    path.write_text(json.dumps({"api_key": "sk-file", "latency": {"fixed_ms": 80}, "seed": 3}))
    behaviour = build_behaviour(path, rpm=60, per_token_ms=0.5, faults=["http_502:count=1"])
    assert behaviour.api_key == "sk-file" and behaviour.seed == 3
    assert (behaviour.latency.fixed_ms, behaviour.latency.per_unit_ms) == (80, 0.5)
    assert behaviour.rate_limits.requests_per_minute == 60
    assert [f.kind for f in behaviour.faults] == ["http_502"]
    assert build_behaviour('{"vectors": "token-hash"}', api_key="k").vectors == "token-hash"
    with pytest.raises(ValueError):
        build_behaviour(path, vectors="random")
