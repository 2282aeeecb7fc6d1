"""Waiting on a condition with a deadline, never on a fixed sleep: ``wait_until`` for plain code
(subprocesses, servers), ``eventually`` inside the event loop. Both check at once, then every
``interval`` seconds, once more at the deadline, and fail with what they were waiting for."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    condition: Callable[[], Any],
    timeout: float = 60,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {value!r}")
        time.sleep(interval)


async def eventually(
    check: Callable[[], Any],
    timeout: float = 30,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Call ``check`` (plain, or returning an awaitable) until its result is truthy, and return
    that result; the loop keeps running in between."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {value!r}")
        await asyncio.sleep(interval)
