"""A mock of OpenAI's embeddings API that the official SDK (and ingestd's client) use unchanged.

``POST /v1/embeddings`` takes every input form (a string, strings, token ids, lists of token
ids) and both encodings (``float``; ``base64`` of little-endian float32, the SDK's default),
honours ``dimensions`` (text-embedding-3 only), counts usage with cl100k_base and answers the
vendor's limits with its error bodies: 400 (too many inputs, empty or malformed input, an input
over 8,192 tokens, a request over 300,000 tokens), 401 ``invalid_api_key``, 404
``model_not_found``, 429 ``rate_limit_exceeded`` (with ``x-ratelimit-*`` and ``retry-after``)
and 429 ``insufficient_quota``. ``GET /v1/models`` lists the three embedding models. Vectors come
from the deterministic hash embedder, or from any ingestd ``Embedder`` (e.g. the local model, so
search through the mock means something); their length follows the model (1536 or 3072) unless
``dimensions`` asks otherwise. Latency, faults, budgets and counters come from
:mod:`ingestd.mocks.faults`.
"""

from __future__ import annotations

import base64
import importlib
import itertools
import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from numpy.typing import NDArray

from ingestd.mocks.faults import (
    TRANSPORT_FAULTS,
    Behaviour,
    FaultKind,
    MockState,
    RateDecision,
    load_behaviour,
    mount_admin,
    parse_fault_spec,
    serve_transport_fault,
)
from ingestd.ports import Embedder
from ingestd.tokens import get_encoding

DEFAULT_PORT = 8901
EMBEDDINGS_PATH = "/v1/embeddings"
RATE_LIMITS_URL = "https://platform.openai.com/account/rate-limits"
API_REFERENCE_URL = "https://platform.openai.com/docs/api-reference"
REQUEST_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


@dataclass(frozen=True, slots=True)
class ModelInfo:
    dimensions: int
    custom_dimensions: bool  # whether ``dimensions`` may be given
    created: int


MODELS = {
    "text-embedding-3-small": ModelInfo(1536, True, 1705948997),
    "text-embedding-3-large": ModelInfo(3072, True, 1705953180),
    "text-embedding-ada-002": ModelInfo(1536, False, 1671217299),
}


class OpenAIBehaviour(Behaviour):
    """The shared behaviour plus OpenAI's per-request ceilings (lower them to test splitting)."""

    max_inputs: int = 2048
    max_tokens_per_input: int = 8192
    max_tokens_per_request: int = 300_000
    organization: str = "org-mock"
    # Where vectors come from when no Embedder was given: "hash" is ingestd's HashEmbedder (the
    # same space as provider=hash); "token-hash" hashes cl100k token ids, ~3x cheaper, for
    # capacity runs where the mock must stay out of the way.
    vectors: Literal["hash", "token-hash"] = "hash"
    # Poison: a request with an input containing this text is refused (400, code
    # ``content_filter``), as a vendor refuses one bad input of a batch.
    reject_inputs_containing: str | None = None


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return {"error": error}


def _invalid_input() -> OpenAIError:
    return OpenAIError(
        400, f"'$.input' is invalid. Please check the API reference: {API_REFERENCE_URL}."
    )


def server_error_body(status: int) -> dict[str, Any]:
    message = "The server had an error while processing your request. Sorry about that!"
    return OpenAIError(status, message, "server_error").body()


# -- tokens and vectors ---------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """Go-style durations, as OpenAI's headers carry them: ``120ms``, ``2.812s``, ``6m0s``."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    head = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return f"{head}{secs}s"


class _TokenHash:
    """A tiny deterministic hash embedder over cl100k token ids: the fallback when
    ``embedders.hash`` is absent. Unit vectors; texts sharing tokens point the same way."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions

    def embed_sync(self, texts: Sequence[str]) -> NDArray[np.float32]:
        encoding = get_encoding()
        return self.embed_tokens([encoding.encode_ordinary(t) for t in texts])

    def embed_tokens(self, token_ids: Sequence[Sequence[int]]) -> NDArray[np.float32]:
        lengths = [len(ids) for ids in token_ids]
        flat = np.fromiter(itertools.chain.from_iterable(token_ids), np.uint64, sum(lengths))
        hashed = (flat + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)  # wraps: a mixing hash
        column = ((hashed >> np.uint64(32)) % np.uint64(self.dimensions)).astype(np.int64)
        sign = np.where(hashed >> np.uint64(63), 1.0, -1.0)
        row = np.repeat(np.arange(len(lengths)), lengths)
        cells = len(lengths) * self.dimensions
        counts = np.bincount(row * self.dimensions + column, weights=sign, minlength=cells)
        return _unit_rows(counts.reshape(len(lengths), self.dimensions).astype(np.float32))


def _unit_rows(matrix: NDArray[np.float32]) -> NDArray[np.float32]:
    """Scale each non-zero row to length 1, in place."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.where(norms > 0, norms, 1.0).astype(np.float32)
    return matrix


def _hash_embedder(dimensions: int) -> Embedder | _TokenHash:
    """``ingestd.embedders.hash.HashEmbedder`` when present and willing to take ``dimensions``
    (it refuses fewer than 8), else :class:`_TokenHash`."""
    try:
        module = importlib.import_module("ingestd.embedders.hash")
        embedder: Embedder = module.HashEmbedder(dimensions)
    except Exception:  # absent, or refuses this length: the fallback always works
        return _TokenHash(dimensions)
    return embedder


def fit_dimensions(vectors: NDArray[np.float32], dimensions: int) -> NDArray[np.float32]:
    """Shorten (then re-normalise, as OpenAI does) or zero-pad vectors to ``dimensions``."""
    have = vectors.shape[1]
    if have > dimensions:
        return _unit_rows(vectors[:, :dimensions].copy())
    if have < dimensions:
        return np.pad(vectors, ((0, 0), (0, dimensions - have)))
    return vectors


class VectorSource:
    """Texts -> float32 vectors of a requested length, from the hash embedder or an Embedder."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder
        self._hashers: dict[int, Embedder | _TokenHash] = {}

    async def vectors(
        self,
        texts: Sequence[str],
        dimensions: int,
        token_ids: Sequence[Sequence[int]] | None = None,
        kind: str = "hash",
    ) -> NDArray[np.float32]:
        """Vectors for ``texts`` (``kind``: see ``OpenAIBehaviour.vectors``); ``token_ids``
        (their cl100k tokens) spares the token hash from encoding them again."""
        if self.embedder is not None:
            result = await self.embedder.embed(list(texts))
            return fit_dimensions(np.asarray(result.vectors, dtype=np.float32), dimensions)
        if kind == "token-hash":
            fast = _TokenHash(dimensions)
            return fast.embed_tokens(token_ids) if token_ids is not None else fast.embed_sync(texts)
        hasher = self._hashers.get(dimensions)
        if hasher is None:
            hasher = self._hashers[dimensions] = _hash_embedder(dimensions)
        if isinstance(hasher, _TokenHash):
            return hasher.embed_tokens(token_ids) if token_ids else hasher.embed_sync(texts)
        hashed = await hasher.embed(list(texts))
        return np.asarray(hashed.vectors, dtype=np.float32)


# -- request parsing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    """A validated ``POST /v1/embeddings``: texts (token ids decoded) and their token counts."""

    model: str
    texts: list[str]
    token_ids: list[list[int]]
    dimensions: int
    encoding: str

    @property
    def total_tokens(self) -> int:
        return sum(map(len, self.token_ids))


def _is_token_ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


def _inputs(raw: Any, max_inputs: int) -> list[str | list[int]]:
    """The request's inputs as strings or token-id lists; 400 for every malformed shape."""
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif _is_token_ids(raw):
        items = [raw]
    elif isinstance(raw, list) and raw:
        items = raw
    else:
        raise _invalid_input()
    if len(items) > max_inputs:
        raise _invalid_input()
    strings = all(isinstance(i, str) and i for i in items)
    if not strings and not all(_is_token_ids(i) for i in items):
        raise _invalid_input()
    return items


def _decode(items: list[str | list[int]]) -> tuple[list[str], list[list[int]]]:
    """(texts, their token ids): strings are encoded, token ids decoded."""
    encoding = get_encoding()
    if isinstance(items[0], str):
        texts = [i for i in items if isinstance(i, str)]
        return texts, [encoding.encode_ordinary(t) for t in texts]
    token_lists = [i for i in items if isinstance(i, list)]
    if any(t >= encoding.n_vocab for ids in token_lists for t in ids):
        raise _invalid_input()
    return [encoding.decode(ids, errors="replace") for ids in token_lists], token_lists


def _dimensions(model: str, info: ModelInfo, raw: Any) -> int:
    if raw is None:
        return info.dimensions
    if not info.custom_dimensions:
        raise OpenAIError(400, "This model does not support specifying dimensions.")
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= info.dimensions:
        raise OpenAIError(
            400,
            f"Invalid value for 'dimensions' = {raw}. Must be between 1 and {info.dimensions} "
            f"for {model}.",
            param="dimensions",
        )
    return raw


def parse_embedding_call(payload: Any, behaviour: OpenAIBehaviour) -> EmbeddingCall:
    """Validate a request body as OpenAI does; raises :class:`OpenAIError`."""
    if not isinstance(payload, dict):
        raise OpenAIError(400, "We could not parse the JSON body of your request.")
    unknown = sorted(set(payload) - REQUEST_FIELDS)
    if unknown:
        raise OpenAIError(400, f"Unrecognized request argument supplied: {unknown[0]}")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "you must provide a model parameter", param="model")
    info = MODELS.get(model)
    if info is None:
        message = f"The model `{model}` does not exist or you do not have access to it."
        raise OpenAIError(404, message, code="model_not_found", param="model")
    if "input" not in payload:
        raise OpenAIError(400, "'input' is a required property", param="input")
    encoding = payload.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        message = f"'{encoding}' is not one of ['float', 'base64'] - 'encoding_format'"
        raise OpenAIError(400, message, param="encoding_format")
    dimensions = _dimensions(model, info, payload.get("dimensions"))
    texts, token_ids = _decode(_inputs(payload["input"], behaviour.max_inputs))
    _check_token_limits([len(ids) for ids in token_ids], behaviour)
    _check_poison(texts, behaviour.reject_inputs_containing)
    return EmbeddingCall(model, texts, token_ids, dimensions, encoding)


def _check_token_limits(counts: list[int], behaviour: OpenAIBehaviour) -> None:
    limit = behaviour.max_tokens_per_input
    longest = max(counts)
    if longest > limit:
        raise OpenAIError(
            400,
            f"This model's maximum context length is {limit} tokens, however you requested "
            f"{longest} tokens ({longest} in your prompt; 0 for the completion). "
            "Please reduce your prompt; or completion length.",
        )
    total, cap = sum(counts), behaviour.max_tokens_per_request
    if total > cap:
        message = f"Requested {total} tokens, max {cap} tokens per request"
        raise OpenAIError(400, message, "max_tokens_per_request", "max_tokens_per_request")


def _check_poison(texts: list[str], marker: str | None) -> None:
    for index, text in enumerate(texts):
        if marker and marker in text:
            message = f"Invalid 'input[{index}]': the input was rejected by the content filter."
            raise OpenAIError(400, message, code="content_filter", param=f"input[{index}]")


# -- responses ------------------------------------------------------------------------------------


def _encode_vector(vector: NDArray[np.float32], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    values: list[float] = vector.tolist()
    return values


def embedding_body(
    call: EmbeddingCall, vectors: NDArray[np.float32], fault: FaultKind | None
) -> dict[str, Any]:
    """The response document; ``wrong_vector_length`` / ``partial_success`` damage it."""
    if fault is FaultKind.WRONG_VECTOR_LENGTH:
        rows = [vectors[0][:-1], *vectors[1:]]
    elif fault is FaultKind.PARTIAL_SUCCESS:
        rows = list(vectors[: max(0, len(vectors) - 1)] if len(vectors) > 1 else [])
    else:
        rows = list(vectors)
    data = [
        {"object": "embedding", "index": i, "embedding": _encode_vector(v, call.encoding)}
        for i, v in enumerate(rows)
    ]
    tokens = call.total_tokens
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": call.model, "usage": usage}


def rate_limit_headers(decision: RateDecision) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, view in (("requests", decision.requests), ("tokens", decision.tokens)):
        if view is not None:
            headers[f"x-ratelimit-limit-{name}"] = str(view.limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(view.remaining)
            headers[f"x-ratelimit-reset-{name}"] = format_duration(view.reset_seconds)
    return headers


def rate_limit_error(
    decision: RateDecision, call: EmbeddingCall, behaviour: OpenAIBehaviour
) -> OpenAIError:
    kind = decision.limited_by or "requests"
    view = decision.tokens if kind == "tokens" else decision.requests
    label = "tokens per min (TPM)" if kind == "tokens" else "requests per min (RPM)"
    requested = call.total_tokens if kind == "tokens" else 1
    limit = view.limit if view else 0
    used = limit - (view.remaining if view else 0)
    message = (
        f"Rate limit reached for {call.model} in organization {behaviour.organization} on "
        f"{label}: Limit {limit}, Used {used}, Requested {requested}. Please try again in "
        f"{decision.retry_after:.3f}s. Visit {RATE_LIMITS_URL} to learn more."
    )
    headers = rate_limit_headers(decision) | {
        "retry-after": str(max(1, math.ceil(decision.retry_after))),
        "retry-after-ms": str(math.ceil(decision.retry_after * 1000)),
    }
    return OpenAIError(429, message, kind, "rate_limit_exceeded", headers=headers)


def insufficient_quota_error() -> OpenAIError:
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors."
    )
    return OpenAIError(429, message, "insufficient_quota", "insufficient_quota")


def auth_error(authorization: str | None) -> OpenAIError:
    if not authorization:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
            "field (with blank username) if you're accessing the API from your browser and are "
            "prompted for a username and password. You can obtain an API key from "
            "https://platform.openai.com/account/api-keys."
        )
    else:
        shown = authorization.removeprefix("Bearer ").strip()
        message = (
            f"Incorrect API key provided: {shown[:3]}***{shown[-4:]}. You can find your API key "
            "at https://platform.openai.com/account/api-keys."
        )
    return OpenAIError(401, message, code="invalid_api_key")


# -- the app --------------------------------------------------------------------------------------


class OpenAIMock:
    """The mock's request handling, around one :class:`MockState` and one :class:`VectorSource`."""

    def __init__(self, state: MockState[OpenAIBehaviour], source: VectorSource) -> None:
        self.state = state
        self.source = source

    async def embeddings(self, request: Request) -> Response:
        started = time.perf_counter()
        state = self.state
        state.counters.add("requests")
        fault = state.draw_fault(request.url.path)
        if fault in TRANSPORT_FAULTS and fault is not None:
            return await serve_transport_fault(fault, request, state, server_error_body)
        try:
            call, decision = await self._admit(request)
        except OpenAIError as error:
            return self._error(error, started)
        await state.sleep_latency(call.total_tokens)
        vectors = await self.source.vectors(
            call.texts, call.dimensions, call.token_ids, state.behaviour.vectors
        )
        headers = rate_limit_headers(decision) | _common_headers(started)
        if fault is FaultKind.MALFORMED_JSON:
            state.counters.add_error(fault.value)
            return Response('{"object": "list", "data": [{"obj', 200, headers, "application/json")
        if fault is not None:
            state.counters.add_error(fault.value)
        else:
            state.counters.add("tokens", call.total_tokens)
            state.counters.add("embeddings", len(call.texts))
        return JSONResponse(embedding_body(call, vectors, fault), headers=headers)

    async def _admit(self, request: Request) -> tuple[EmbeddingCall, RateDecision]:
        """Auth, validation, rate budget and quota, in the vendor's order; raises OpenAIError."""
        state = self.state
        authorization = request.headers.get("authorization")
        if not state.accepts_key(authorization):
            raise auth_error(authorization)
        try:
            payload = json.loads(await request.body())
        except ValueError as exc:
            message = (
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
            )
            raise OpenAIError(400, message) from exc
        call = parse_embedding_call(payload, state.behaviour)
        decision = state.take_rate_budget(requests=1, tokens=call.total_tokens)
        if not decision.allowed:
            state.counters.add("rate_limited")
            raise rate_limit_error(decision, call, state.behaviour)
        if not state.charge_quota(call.total_tokens):
            raise insufficient_quota_error()
        return call, decision

    def _error(self, error: OpenAIError, started: float) -> Response:
        self.state.counters.add_error(error.code or error.type)
        headers = error.headers | _common_headers(started)
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    async def models(self, request: Request) -> Response:
        refused = self._refuse_unauthorized(request)
        if refused is not None:
            return refused
        data = [_model_object(name, info) for name, info in MODELS.items()]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request, model: str) -> Response:
        refused = self._refuse_unauthorized(request)
        if refused is not None:
            return refused
        info = MODELS.get(model)
        if info is None:
            message = f"The model '{model}' does not exist"
            error = OpenAIError(404, message, code="model_not_found", param="model")
            return self._error(error, time.perf_counter())
        return JSONResponse(_model_object(model, info))

    def _refuse_unauthorized(self, request: Request) -> Response | None:
        self.state.counters.add("requests")
        authorization = request.headers.get("authorization")
        if self.state.accepts_key(authorization):
            return None
        return self._error(auth_error(authorization), time.perf_counter())


def _model_object(name: str, info: ModelInfo) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": info.created, "owned_by": "system"}


def _common_headers(started: float) -> dict[str, str]:
    return {
        "x-request-id": f"req_{uuid.uuid4().hex}",
        "openai-processing-ms": str(round((time.perf_counter() - started) * 1000)),
        "openai-version": "2020-10-01",
    }


def create_app(
    behaviour: OpenAIBehaviour | None = None, embedder: Embedder | None = None
) -> FastAPI:
    """The mock as an ASGI app. ``app.state.mock`` is its :class:`MockState` (counters, faults)."""
    state = MockState(behaviour or OpenAIBehaviour())
    mock = OpenAIMock(state, VectorSource(embedder))
    app = FastAPI(title="ingestd mock OpenAI", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.mock = state
    app.add_api_route(EMBEDDINGS_PATH, mock.embeddings, methods=["POST"])
    app.add_api_route("/v1/models", mock.models, methods=["GET"])
    app.add_api_route("/v1/models/{model}", mock.model, methods=["GET"])
    mount_admin(app, state)
    return app


def build_behaviour(
    behaviour: OpenAIBehaviour | str | Path | None = None,
    *,
    api_key: str | None = None,
    latency_ms: float | None = None,
    per_token_ms: float | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    quota_tokens: int | None = None,
    faults: Sequence[str] = (),
    seed: int | None = None,
    vectors: str | None = None,
) -> OpenAIBehaviour:
    """A behaviour from a model, a JSON file path or JSON text, with CLI-style overrides on top.

    ``faults`` are specs such as ``"http_503:0.1"`` or ``"timeout:count=2"``
    (:func:`ingestd.mocks.faults.parse_fault_spec`); given ones replace the file's list.
    """
    if isinstance(behaviour, OpenAIBehaviour):
        behaviour = behaviour.model_dump_json()
    overrides: dict[str, Any] = {
        "api_key": api_key,
        "seed": seed,
        "quota": quota_tokens,
        "vectors": vectors,
        "latency": {"fixed_ms": latency_ms, "per_unit_ms": per_token_ms},
        "rate_limits": {"requests_per_minute": rpm, "tokens_per_minute": tpm},
    }
    if faults:
        overrides["faults"] = [parse_fault_spec(f).model_dump(mode="json") for f in faults]
    return load_behaviour(OpenAIBehaviour, behaviour, overrides)


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    behaviour: OpenAIBehaviour | None = None,
    embedder: Embedder | None = None,
    log_level: str = "info",
) -> None:
    """Run the mock under uvicorn until interrupted (``ingestd mock openai``); build the
    behaviour from a file or CLI-style flags with :func:`build_behaviour`."""
    app = create_app(behaviour, embedder)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
