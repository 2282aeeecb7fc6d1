"""Token-budget batching: pack embedding inputs into as few requests as the vendor allows.

Pure functions over token counts. Inputs stay in order: each request is a contiguous slice of the
input list, so reassembling the vectors is concatenation. An input over the per-input limit is the
caller's error (``embed.input_too_long``; the chunker guarantees sizes) unless the caller truncated
it first; an empty input is ``embed.empty_input`` (the API rejects it). No input may exceed the
per-request token ceiling either, since it must travel in some request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ingestd.errors import PermanentError

MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
MAX_TOKENS_PER_INPUT = 8191


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """The vendor's ceilings for one embeddings request (OpenAI's defaults)."""

    max_inputs: int = MAX_INPUTS_PER_REQUEST
    max_tokens: int = MAX_TOKENS_PER_REQUEST
    max_tokens_per_input: int = MAX_TOKENS_PER_INPUT

    def __post_init__(self) -> None:
        if min(self.max_inputs, self.max_tokens, self.max_tokens_per_input) < 1:
            raise ValueError(f"batch limits must be positive: {self}")

    @property
    def input_ceiling(self) -> int:
        """The most tokens one input may have: it must also fit in a request alone."""
        return min(self.max_tokens_per_input, self.max_tokens)


@dataclass(frozen=True, slots=True)
class Batch:
    """One request: inputs ``start`` .. ``stop - 1`` of the original list, ``tokens`` in total."""

    start: int
    stop: int
    tokens: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def check_input_sizes(token_counts: Sequence[int], limits: BatchLimits) -> None:
    """Raise ``PermanentError`` for the first input that is empty or over the per-input limit."""
    for index, count in enumerate(token_counts):
        error = input_size_error(index, count, limits)
        if error is not None:
            raise error


def input_size_error(index: int, count: int, limits: BatchLimits) -> PermanentError | None:
    """The error of input ``index`` with ``count`` tokens, if no request could carry it."""
    limit = limits.input_ceiling
    if count <= 0:
        return PermanentError(
            "embed.empty_input", f"input {index} is empty; the API rejects it", index=index
        )
    if count > limit:
        return PermanentError(
            "embed.input_too_long",
            f"input {index} has {count} tokens, over the {limit}-token limit per input; "
            "chunk it smaller or enable truncation",
            index=index,
            tokens=count,
            limit=limit,
        )
    return None


def pack_batches(token_counts: Sequence[int], limits: BatchLimits | None = None) -> list[Batch]:
    """Greedy, order-preserving packing of inputs into requests within ``limits``.

    Every input fits alone (``check_input_sizes`` is applied first), so every batch holds at least
    one input; a new batch starts whenever the next input would break either ceiling.
    """
    limits = limits or BatchLimits()
    check_input_sizes(token_counts, limits)
    batches: list[Batch] = []
    start, tokens = 0, 0
    for index, count in enumerate(token_counts):
        full = index - start >= limits.max_inputs or tokens + count > limits.max_tokens
        if full and index > start:
            batches.append(Batch(start, index, tokens))
            start, tokens = index, 0
        tokens += count
    if len(token_counts) > start:
        batches.append(Batch(start, len(token_counts), tokens))
    return batches


def split_usage(total: int, weights: Sequence[int]) -> list[int]:
    """Share ``total`` (tokens, requests) among jobs or callers in proportion to ``weights``;
    the parts add up to ``total``."""
    weight_sum = sum(weights)
    if weight_sum == 0:
        return [0 for _ in weights]
    exact = [total * w / weight_sum for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts
