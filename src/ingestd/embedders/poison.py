"""Poison isolation: find the inputs that a batch request was rejected for, by bisection.

An embedding request fails whole when one of its inputs is bad (a 400 on one item, a content
refusal, an input over the model's limit). Splitting the failing range in halves, and the
failing halves again, embeds every good input and pins the error on the bad ones in about
``2 * bad * log2(n)`` extra requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ingestd.errors import IngestdError, PermanentError

R = TypeVar("R")

# Vendor answers that can be the fault of one input rather than of the request as a whole.
INPUT_ERROR_STATUSES = frozenset({400, 413, 422})


def is_input_error(error: BaseException) -> bool:
    """A permanent rejection that one bad input can cause (not auth, model or quota)."""
    return isinstance(error, PermanentError) and error.details.get("status") in INPUT_ERROR_STATUSES


@dataclass
class Isolated(Generic[R]):
    """Results of the good ranges (by start index), errors of the bad inputs, requests made."""

    parts: dict[int, R] = field(default_factory=dict)
    failures: dict[int, IngestdError] = field(default_factory=dict)
    requests: int = 0


async def isolate(
    start: int,
    stop: int,
    send: Callable[[int, int], Awaitable[R]],
    culprit: Callable[[BaseException], bool] = is_input_error,
) -> Isolated[R]:
    """``send(start, stop)``; when it fails because of an input, bisect down to the inputs.

    Other errors propagate unchanged.
    """
    found: Isolated[R] = Isolated()

    async def run(a: int, z: int) -> None:
        found.requests += 1
        try:
            found.parts[a] = await send(a, z)
        except IngestdError as exc:
            if not culprit(exc):
                raise
            if z - a == 1:
                found.failures[a] = exc
                return
            middle = (a + z) // 2
            await asyncio.gather(run(a, middle), run(middle, z))

    await run(start, stop)
    return found
