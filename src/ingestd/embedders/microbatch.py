"""Cross-document micro-batching: one worker's concurrent ``embed`` calls share full requests.

Each claimed batch embeds its own chunks; alone, a batch of small documents fills a fraction of
what one embeddings request may carry (2,048 inputs or 300,000 tokens at OpenAI). ``MicroBatcher``
wraps a remote embedder for the whole worker process: every call's inputs join one queue, and a
request leaves as soon as the queue holds a full one, or when the oldest queued input has waited
``linger`` seconds. A call's inputs may travel in several requests, and one request carries inputs
of several calls; each caller gets back exactly its own vectors, its own rejected inputs (by its
own indices, in ``failures``), and its share of the usage. A request that fails as a whole fails
every call with inputs in it, as a call of its own would have. An input no request could carry
(empty, or over the per-input limit) fails alone at once. A single input while nothing is queued
or in flight (a search query) goes straight to the embedder, without the linger.

Fullness (inputs and tokens as fractions of the request limits) is logged per request
(``embed.request``, debug) and summed in ``stats``; ``aclose`` logs the summary
(``embed.batching``, info), which the drain benchmark reads.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from ingestd.embedders.batching import BatchLimits, input_size_error, split_usage
from ingestd.errors import IngestdError, TransientError
from ingestd.ports import Embedder, EmbeddingResult, EmbeddingUsage
from ingestd.tokens import count_tokens

log = structlog.get_logger(__name__)

# Above this many characters, a call's token counting moves off the event loop.
_INLINE_COUNT_CHARS = 100_000
# A request at least this full (inputs or tokens) counts as full in the stats.
FULL_FRACTION = 0.9


@dataclass
class BatchingStats:
    """Requests sent and how full they were, since the batcher started."""

    requests: int = 0
    inputs: int = 0
    tokens: int = 0
    fullness_sum: float = 0.0  # per request: max(inputs fraction, tokens fraction)
    full_requests: int = 0  # requests at least FULL_FRACTION full
    by_linger: int = 0  # requests sent because the linger expired, not because they were full
    by_idle: int = 0  # partial requests sent because the worker could add nothing more

    @property
    def mean_fullness(self) -> float:
        return self.fullness_sum / self.requests if self.requests else 0.0

    def as_log(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "inputs": self.inputs,
            "tokens": self.tokens,
            "mean_fullness": round(self.mean_fullness, 4),
            "full_requests": self.full_requests,
            "by_linger": self.by_linger,
            "by_idle": self.by_idle,
        }


@dataclass
class _Call:
    """One ``embed`` call waiting for its inputs' vectors."""

    size: int
    future: asyncio.Future[EmbeddingResult]
    vectors: list[list[float]]
    failures: dict[int, IngestdError] = field(default_factory=dict)
    pending: int = 0
    prompt_tokens: int = 0
    requests: int = 0
    cancelled: bool = False

    def finish(self) -> None:
        if self.future.done():
            return
        if self.failures and len(self.failures) == self.size:
            self.future.set_exception(self.failures[min(self.failures)])
            return
        usage = EmbeddingUsage(prompt_tokens=self.prompt_tokens, requests=self.requests)
        self.future.set_result(EmbeddingResult(self.vectors, usage, self.failures))


@dataclass(frozen=True, slots=True)
class _Input:
    call: _Call
    index: int
    text: str
    tokens: int


class MicroBatcher:
    """An ``Embedder`` that merges concurrent calls into requests filled towards ``limits``."""

    def __init__(
        self,
        inner: Embedder,
        limits: BatchLimits,
        *,
        linger_seconds: float,
        truncate: bool = False,
        count: Callable[[str], int] = count_tokens,
        fill_wait_seconds: float | None = None,
        max_in_flight: int = 4,
    ) -> None:
        self.inner = inner
        self.model = inner.model
        self.dimensions = inner.dimensions
        self.max_input_tokens = inner.max_input_tokens
        self.limits = limits
        self.linger_seconds = linger_seconds
        self.truncate = truncate
        self.stats = BatchingStats()
        self._count = count
        self._queue: deque[_Input] = deque()
        self._queued_tokens = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.fill_wait_seconds = linger_seconds if fill_wait_seconds is None else fill_wait_seconds
        self.max_in_flight = max(1, max_in_flight)
        self._waiting = 0  # embed calls waiting for their vectors
        self._wake: Callable[[], None] | None = None

    def __getattr__(self, name: str) -> Any:
        # Anything else the inner embedder offers (its rate-limit snapshot, say).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        if not texts:
            return EmbeddingResult([], EmbeddingUsage())
        if len(texts) == 1 and not self._queue and not self._sending:
            return await self.inner.embed(texts)  # a search query, on an idle worker: no linger
        counts = await self._counts(list(texts))
        loop = asyncio.get_running_loop()
        call = _Call(len(texts), loop.create_future(), [[] for _ in texts])
        for index, (text, tokens) in enumerate(zip(texts, counts, strict=True)):
            error = self._size_error(index, tokens)
            if error is not None:
                call.failures[index] = error
                continue
            self._queue.append(_Input(call, index, text, tokens))
            self._queued_tokens += tokens
            call.pending += 1
        if call.pending == 0:
            call.finish()
        self._dispatch(loop)
        self._waiting += 1
        self._signal()
        try:
            return await call.future
        except asyncio.CancelledError:
            call.cancelled = True  # its queued inputs are dropped, not sent
            raise
        finally:
            self._waiting -= 1

    async def aclose(self) -> None:
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        log.info("embed.batching", **self.stats.as_log())
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    # -- the fill rule, driven by a worker ----------------------------------------------------

    def drive(self, wake: Callable[[], None] | None) -> None:
        """A worker fills the requests: ``wake`` is called whenever a call starts waiting or a
        request is answered, and partial requests wait up to ``fill_wait_seconds``; ``None``:
        nobody drives any more (the worker stops), the short linger applies again."""
        self._wake = wake

    @property
    def waiting_calls(self) -> int:
        """Embed calls waiting for their vectors (queued or in a request)."""
        return self._waiting

    @property
    def hungry(self) -> bool:
        """Whether more input would go out soon: the next request has room and fewer than
        ``max_in_flight`` requests are unanswered."""
        return not self._full() and len(self._sending) < self.max_in_flight

    def flush(self) -> None:
        """The worker can add nothing more: send what is queued now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            self._send(self._take(), by_linger=False, by_idle=True)

    def _signal(self) -> None:
        if self._wake is not None:
            self._wake()

    # -- queue --------------------------------------------------------------------------------

    async def _counts(self, texts: list[str]) -> list[int]:
        if sum(map(len, texts)) <= _INLINE_COUNT_CHARS:
            return [self._count(t) for t in texts]
        return await asyncio.to_thread(lambda: [self._count(t) for t in texts])

    def _size_error(self, index: int, tokens: int) -> IngestdError | None:
        """An input no request could carry fails alone, before it can fail a shared request
        (one the inner embedder will truncate is fine)."""
        if self.truncate and tokens > 0:
            return None
        return input_size_error(index, tokens, self.limits)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send every full request the queue holds; start the linger clock for the rest."""
        while self._full():
            self._send(self._take(), by_linger=False)
        if self._queue and self._timer is None:
            linger = self.linger_seconds if self._wake is None else self.fill_wait_seconds
            self._timer = loop.call_later(linger, self._flush)

    def _flush(self) -> None:
        """The linger expired (or we close): send everything queued."""
        self._timer = None
        while self._queue:
            self._send(self._take(), by_linger=True)

    def _full(self) -> bool:
        return len(self._queue) >= self.limits.max_inputs or (
            self._queued_tokens >= self.limits.max_tokens
        )

    def _take(self) -> list[_Input]:
        """The next request from the head of the queue, within both limits."""
        taken: list[_Input] = []
        tokens = 0
        while self._queue and len(taken) < self.limits.max_inputs:
            head = self._queue[0]
            if head.call.cancelled or head.call.future.done():
                self._queued_tokens -= self._queue.popleft().tokens
                continue
            if taken and tokens + min(head.tokens, self.limits.max_tokens) > self.limits.max_tokens:
                break
            taken.append(self._queue.popleft())
            self._queued_tokens -= head.tokens
            tokens += head.tokens
        if not self._queue and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return taken

    # -- requests -----------------------------------------------------------------------------

    def _send(self, request: list[_Input], *, by_linger: bool, by_idle: bool = False) -> None:
        if not request:
            return
        self._note(request, by_linger, by_idle)
        task = asyncio.get_running_loop().create_task(self._request(request))
        self._sending.add(task)
        task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._signal()

    async def _request(self, request: list[_Input]) -> None:
        try:
            result = await self.inner.embed([item.text for item in request])
            if len(result.vectors) != len(request):
                raise TransientError(
                    "embed.bad_response",
                    f"asked for {len(request)} vectors, got {len(result.vectors)}",
                )
        except asyncio.CancelledError:
            for call in _calls(request):
                call.future.cancel()
            raise
        except Exception as exc:
            for call in _calls(request):
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        self._deliver(request, result)

    def _deliver(self, request: list[_Input], result: EmbeddingResult) -> None:
        calls: dict[int, _Call] = {}
        weights: dict[int, int] = {}
        for position, item in enumerate(request):
            call = item.call
            calls[id(call)] = call
            weights[id(call)] = weights.get(id(call), 0) + item.tokens
            if position in result.failures:
                call.failures[item.index] = result.failures[position]
            else:
                call.vectors[item.index] = result.vectors[position]
            call.pending -= 1
        keys = list(calls)
        token_shares = split_usage(result.usage.prompt_tokens, [weights[k] for k in keys])
        request_shares = split_usage(result.usage.requests, [weights[k] for k in keys])
        for key, tokens, requests in zip(keys, token_shares, request_shares, strict=True):
            calls[key].prompt_tokens += tokens
            calls[key].requests += requests
            if calls[key].pending == 0:
                calls[key].finish()

    def _note(self, request: list[_Input], by_linger: bool, by_idle: bool) -> None:
        tokens = sum(item.tokens for item in request)
        inputs_fraction = len(request) / self.limits.max_inputs
        tokens_fraction = tokens / self.limits.max_tokens
        fullness = max(inputs_fraction, tokens_fraction)
        stats = self.stats
        stats.requests += 1
        stats.inputs += len(request)
        stats.tokens += tokens
        stats.fullness_sum += fullness
        stats.full_requests += fullness >= FULL_FRACTION
        stats.by_linger += by_linger
        stats.by_idle += by_idle
        log.debug(
            "embed.request",
            inputs=len(request),
            tokens=tokens,
            inputs_fraction=round(inputs_fraction, 4),
            tokens_fraction=round(tokens_fraction, 4),
            by_linger=by_linger,
            by_idle=by_idle,
        )


def _calls(request: list[_Input]) -> list[_Call]:
    return list({id(item.call): item.call for item in request}.values())
