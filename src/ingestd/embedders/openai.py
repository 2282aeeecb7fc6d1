"""The OpenAI embedder: any OpenAI-compatible ``/embeddings`` endpoint, through the official SDK.

``embed(texts)`` counts tokens with cl100k_base, packs the texts into as few requests as the
vendor's limits allow (:mod:`ingestd.embedders.batching`), sends them with bounded concurrency,
checks every answer (one vector per input, each of the expected length) and returns the vectors in
order with the usage the API reported. The SDK's own retries are off by default (``max_retries=0``)
because ingestd owns retries: every failure is translated into a classified ingestd error that keeps
the vendor's status, code, type, message and request id in ``details``.

Each request goes through the traffic governor when one is given (shared rate limits reserved by
the request's token count, the service's circuit breaker, corrections from the ``x-ratelimit-*``
headers). A request rejected because of one input is bisected (:mod:`ingestd.embedders.poison`):
the good inputs are embedded, the bad ones come back in ``EmbeddingResult.failures``.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar, cast

import httpx
import numpy as np
import openai
import pydantic

from ingestd.embedders.batching import BatchLimits, pack_batches
from ingestd.embedders.poison import isolate
from ingestd.errors import (
    ConfigurationError,
    IngestdError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from ingestd.ports import EmbeddingResult, EmbeddingUsage
from ingestd.tokens import get_encoding, truncate_to_tokens
from ingestd.traffic.governor import Answer, Governor
from ingestd.traffic.headers import (
    RateLimitSnapshot,
    parse_duration,
    parse_rate_limit_headers,
    retry_after_from_headers,
)

# Native vector length of OpenAI's embedding models; ``dimensions`` may shorten the first two.
MODEL_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
FIXED_DIMENSION_MODELS = frozenset({"text-embedding-ada-002"})
# Above this many characters, token counting moves off the event loop.
_INLINE_COUNT_CHARS = 100_000

T = TypeVar("T")
SERVICE = "openai"
Vectors = tuple[list[list[float]], int]  # one request's vectors, and the tokens it was billed


# -- rate-limit headers (parsed by ingestd.traffic.headers) ---------------------------------------

_TRY_AGAIN = re.compile(r"try again in ((?:\d+(?:\.\d+)?(?:h|ms|m|s|us|µs|ns))+)")


def retry_after_from_message(message: str) -> float | None:
    """The wait in "... Please try again in 2.812s." (also ``20ms``, ``1m30s``)."""
    match = _TRY_AGAIN.search(message)
    return parse_duration(match.group(1)) if match else None


# -- error classification -------------------------------------------------------------------------


def classify_status(
    status: int,
    vendor: Mapping[str, Any],
    headers: Mapping[str, str],
) -> IngestdError:
    """An HTTP error answer -> the ingestd error to raise (pure; ``vendor`` is the body's
    ``error`` object: message, type, code, param)."""
    message = str(vendor.get("message") or f"HTTP {status}")
    code, type_ = vendor.get("code"), vendor.get("type")
    details: dict[str, Any] = {
        "status": status,
        "vendor_code": code,
        "vendor_type": type_,
        "vendor_message": message,
        "request_id": headers.get("x-request-id"),
    }
    if status == 429 and "insufficient_quota" in (code, type_):
        return PermanentError(
            "embed.insufficient_quota", f"OpenAI quota exhausted: {message}", **details
        )
    if status == 429:
        retry_after = retry_after_from_headers(headers) or retry_after_from_message(message)
        return RateLimitedError("embed.rate_limited", message, retry_after=retry_after, **details)
    if status in (401, 403):
        return PermanentError("embed.auth", f"OpenAI refused the credentials: {message}", **details)
    if status == 408:
        return TransientError("embed.timeout", message, **details)
    if status == 409 or status >= 500:
        return TransientError(
            "embed.unavailable", f"OpenAI answered {status}: {message}", **details
        )
    return PermanentError("embed.invalid_request", message, **details)


def _vendor_error(exc: openai.APIStatusError) -> Mapping[str, Any]:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            return inner
    return {"message": body if isinstance(body, str) and body else str(exc)}


def translate_sdk_error(exc: Exception) -> IngestdError:
    """An exception from the SDK (or from reading its answer) -> a classified ingestd error."""
    if isinstance(exc, openai.APIStatusError):
        headers = cast(Mapping[str, str], exc.response.headers)
        return classify_status(exc.status_code, _vendor_error(exc), headers)
    if isinstance(exc, openai.APITimeoutError):
        return TransientError("embed.timeout", "the embeddings request timed out")
    if isinstance(exc, openai.APIConnectionError):
        reason = exc.__cause__ or exc
        return TransientError("embed.unavailable", f"cannot reach the embeddings API: {reason!r}")
    return TransientError("embed.bad_response", f"unreadable embeddings answer: {exc!r}")


# -- the embedder ---------------------------------------------------------------------------------


def _model_dimensions(model: str, dimensions: int | None) -> tuple[int, bool]:
    """(vector length, whether to send ``dimensions``) for this model and configuration."""
    native = MODEL_DIMENSIONS.get(model)
    if native is None:
        if dimensions is None:
            raise ConfigurationError(
                f"unknown embedding model {model!r}: set its dimensions", model=model
            )
        return dimensions, False  # an OpenAI-compatible server: declared length, not a request
    if dimensions is None or dimensions == native:
        return native, False
    if model in FIXED_DIMENSION_MODELS or not 1 <= dimensions <= native:
        raise ConfigurationError(
            f"{model} cannot return {dimensions}-dimensional vectors", model=model
        )
    return dimensions, True


def _decode_vector(raw: Any) -> list[float]:
    if isinstance(raw, str):
        values: list[float] = np.frombuffer(base64.b64decode(raw), dtype="<f4").tolist()
        return values
    return [float(v) for v in raw]


class OpenAIEmbedder:
    """:class:`ingestd.ports.Embedder` over ``openai.AsyncOpenAI`` (any compatible base URL)."""

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str,
        dimensions: int | None = None,
        timeout: float = 60.0,
        max_inputs_per_request: int = 2048,
        max_tokens_per_request: int = 300_000,
        max_tokens_per_input: int = 8191,
        concurrency: int = 4,
        http_client: httpx.AsyncClient | None = None,
        *,
        max_retries: int = 0,
        truncate: bool = False,
        governor: Governor | None = None,
    ) -> None:
        self.model = model
        self.dimensions, self._send_dimensions = _model_dimensions(model, dimensions)
        self.max_input_tokens = max_tokens_per_input
        self.truncate = truncate
        self.limits = BatchLimits(
            max_inputs=max_inputs_per_request,
            max_tokens=max_tokens_per_request,
            max_tokens_per_input=max_tokens_per_input,
        )
        self._semaphore = asyncio.Semaphore(max(1, concurrency))
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=cast(Any, http_client),
        )
        self._owns_http_client = http_client is None
        self._governor = governor
        self._scope = f"{SERVICE}:{model}"
        self.last_rate_limits: RateLimitSnapshot | None = None

    async def aclose(self) -> None:
        """Close the SDK's own HTTP client; an injected one stays open for its owner to close."""
        if self._owns_http_client:
            await self._client.close()

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """One vector per text, in order; raises classified ingestd errors (``embed.*``).

        Inputs the vendor rejected get an empty vector and their error in ``failures``; when it
        rejected every input, the first rejection is raised instead (nothing to return).
        """
        if not texts:
            return EmbeddingResult([], EmbeddingUsage())
        prepared, counts = await self._count_tokens(list(texts))
        batches = pack_batches(counts, self.limits)

        async def send(start: int, stop: int) -> Vectors:
            return await self._embed_request(prepared[start:stop], sum(counts[start:stop]))

        found = await _all_or_cancel([isolate(b.start, b.stop, send) for b in batches])
        vectors: list[list[float]] = [[] for _ in prepared]
        tokens = requests = 0
        failures: dict[int, IngestdError] = {}
        for isolated in found:
            for start, (part, billed) in isolated.parts.items():
                vectors[start : start + len(part)] = part
                tokens += billed
            failures.update(isolated.failures)
            requests += isolated.requests
        if len(failures) == len(prepared):
            raise failures[0]
        usage = EmbeddingUsage(prompt_tokens=tokens, requests=requests)
        return EmbeddingResult(vectors, usage, failures)

    async def _count_tokens(self, texts: list[str]) -> tuple[list[str], list[int]]:
        if sum(map(len, texts)) <= _INLINE_COUNT_CHARS:
            return self._prepare(texts)
        return await asyncio.to_thread(self._prepare, texts)

    def _prepare(self, texts: list[str]) -> tuple[list[str], list[int]]:
        """Texts (truncated to the per-input limit when enabled) and their token counts."""
        encoding = get_encoding()
        counts = [len(encoding.encode_ordinary(text)) for text in texts]
        if self.truncate:
            limit = self.limits.input_ceiling
            for index, count in enumerate(counts):
                if count > limit:
                    texts[index] = truncate_to_tokens(texts[index], limit)
                    counts[index] = len(encoding.encode_ordinary(texts[index]))
        return texts, counts

    async def _embed_request(self, texts: list[str], tokens: int) -> Vectors:
        """One API request: (vectors in input order, prompt tokens the API reported)."""
        async with self._semaphore:
            if self._governor is None:
                answer = await self._send(texts, tokens)
                if answer.error is not None:
                    raise answer.error
                assert answer.value is not None
                return answer.value
            costs = {"requests": 1, "tokens": tokens}
            return await self._governor.call(
                SERVICE, self._scope, costs, lambda: self._send(texts, tokens)
            )

    async def _send(self, texts: list[str], tokens: int) -> Answer[Vectors]:
        """Send one request; its answer or classified error, with its rate-limit headers."""
        extra: dict[str, Any] = {"dimensions": self.dimensions} if self._send_dimensions else {}
        limits = None
        try:
            raw = await self._client.embeddings.with_raw_response.create(
                model=self.model, input=texts, encoding_format="base64", **extra
            )
            limits = self._note_rate_limits(cast(Mapping[str, str], raw.headers))
            response = raw.parse()
            vectors = self._check_vectors(response, len(texts))
        except openai.APIStatusError as exc:
            limits = self._note_rate_limits(cast(Mapping[str, str], exc.response.headers))
            return Answer(error=_caused(translate_sdk_error(exc), exc), limits=limits)
        except (openai.OpenAIError, ValueError, pydantic.ValidationError) as exc:
            return Answer(error=_caused(translate_sdk_error(exc), exc), limits=limits)
        except IngestdError as exc:
            return Answer(error=exc, limits=limits)
        usage = getattr(response, "usage", None)
        reported = getattr(usage, "prompt_tokens", None)
        billed = reported if isinstance(reported, int) else tokens
        return Answer(value=(vectors, billed), limits=limits)

    def _check_vectors(self, response: Any, expected: int) -> list[list[float]]:
        data = sorted(getattr(response, "data", None) or [], key=lambda item: item.index)
        if [item.index for item in data] != list(range(expected)):
            raise TransientError(
                "embed.bad_response",
                f"expected {expected} embeddings, got {len(data)}",
                expected=expected,
                received=len(data),
            )
        vectors = [_decode_vector(item.embedding) for item in data]
        for index, vector in enumerate(vectors):
            if len(vector) != self.dimensions:
                raise TransientError(
                    "embed.bad_response",
                    f"embedding {index} has {len(vector)} dimensions, expected {self.dimensions}",
                    index=index,
                    expected=self.dimensions,
                    received=len(vector),
                )
        return vectors

    def _note_rate_limits(self, headers: Mapping[str, str]) -> RateLimitSnapshot | None:
        snapshot = parse_rate_limit_headers(headers)
        if snapshot is not None:
            self.last_rate_limits = snapshot
        return snapshot


def _caused(error: IngestdError, cause: BaseException) -> IngestdError:
    """``error`` with ``cause`` as its ``__cause__`` (as ``raise ... from`` would set it)."""
    error.__cause__ = cause
    return error


async def _all_or_cancel(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Await every call concurrently, in order; on the first failure cancel the rest, re-raise."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise cast(BaseException, task.exception())
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
