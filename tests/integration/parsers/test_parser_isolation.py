"""The parser pool contains hangs, crashes and memory blow-ups, and stays cheap per call."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from ingestd.errors import PermanentError, TransientError
from ingestd.parsers.isolation import (
    ParserPool,
    RemoteTraceback,
    parse_in_process,
    parse_isolated,
    shutdown_default_pool,
)
from ingestd.parsers.local import LocalParser
from ingestd.parsers.testing import (
    CrashingParser,
    EchoParser,
    HangingParser,
    MemoryHogParser,
    PidParser,
)

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def pool() -> Iterator[ParserPool]:
    pool = ParserPool(2)
    yield pool
    pool.close()


async def _pid(pool: ParserPool) -> int:
    return int((await pool.parse(PidParser(), b"", "text/plain", timeout=30)).markdown)


async def test_processes_are_reused(pool: ParserPool) -> None:
    pids = {await _pid(pool) for _ in range(10)}
    assert len(pids) <= pool.size


@pytest.mark.parametrize("busy", [False, True])
async def test_a_hanging_parse_is_killed_at_its_timeout(pool: ParserPool, busy: bool) -> None:
    started = time.monotonic()
    with pytest.raises(PermanentError) as caught:
        await pool.parse(HangingParser(busy=busy), b"x", "text/plain", timeout=0.5)
    assert caught.value.code == "parse.timeout"
    # Not before its timeout; and killed, not left to hang for the hour it sleeps (the bound is
    # far above the timeout: a loaded machine is slow to kill and to notice).
    assert 0.5 <= time.monotonic() - started < 60
    assert (await pool.parse(EchoParser(), b"still fine", "text/plain", timeout=30)).markdown == (
        "still fine"
    )


async def test_the_loop_keeps_running_during_a_parse(pool: ParserPool) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    with pytest.raises(PermanentError):
        await pool.parse(HangingParser(busy=True), b"x", "text/plain", timeout=0.5)
    task.cancel()
    assert ticks >= 3, "the loop kept running while the parse hung"


async def test_a_crashing_parser_is_contained(pool: ParserPool) -> None:
    with pytest.raises(TransientError) as caught:  # killed by a signal: one more try
        await pool.parse(CrashingParser(signal.SIGSEGV), b"x", "text/plain", timeout=30)
    assert caught.value.code == "parse.crashed"
    assert caught.value.details["max_retries"] == 1
    assert "SIGSEGV" in caught.value.message
    assert (await pool.parse(EchoParser(), b"ok", "text/plain", timeout=30)).markdown == "ok"


async def test_a_parse_killed_from_outside_gets_one_more_try() -> None:
    """What the OOM killer does: SIGKILL to the parser process. Transient, retried once."""
    pool = ParserPool(1)
    try:
        await pool.start()
        [pid] = pool.process_ids
        parse = asyncio.create_task(pool.parse(HangingParser(), b"x", "text/plain", timeout=60))
        await asyncio.sleep(0)  # the request is on its way; the process will not answer
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(TransientError) as caught:
            await parse
        assert caught.value.code == "parse.crashed"
        assert caught.value.details["max_retries"] == 1
        assert "SIGKILL" in caught.value.message
        assert (await pool.parse(EchoParser(), b"ok", "text/plain", timeout=30)).markdown == "ok"
    finally:
        pool.close()


async def test_memory_limit(pool: ParserPool) -> None:
    with pytest.raises(PermanentError) as caught:
        await pool.parse(
            MemoryHogParser(2048 * MIB), b"", "text/plain", timeout=30, max_memory_bytes=256 * MIB
        )
    assert caught.value.code == "parse.too_large"
    within = await pool.parse(
        MemoryHogParser(64 * MIB), b"", "text/plain", timeout=30, max_memory_bytes=256 * MIB
    )
    assert within.markdown.startswith("held")
    # The limit applied to that call only: the same processes take a larger job afterwards.
    await pool.parse(MemoryHogParser(320 * MIB), b"", "text/plain", timeout=30)


async def test_bloated_processes_retire_after_answering() -> None:
    pool = ParserPool(1, recycle_rss_bytes=200 * MIB)
    try:
        first = await _pid(pool)
        await pool.parse(MemoryHogParser(256 * MIB), b"", "text/plain", timeout=30)
        assert await _pid(pool) != first
    finally:
        pool.close()


async def test_a_big_parent_does_not_make_its_children_look_bloated() -> None:
    # Linux carries ru_maxrss over from the parent into a spawned child; recycling must not read it.
    ballast = b"x" * (400 * MIB)
    del ballast
    pool = ParserPool(1, recycle_rss_bytes=350 * MIB)
    try:
        assert len({await _pid(pool) for _ in range(5)}) == 1
    finally:
        pool.close()


async def test_errors_keep_their_code_and_the_remote_traceback(pool: ParserPool) -> None:
    with pytest.raises(PermanentError) as caught:
        await pool.parse(LocalParser(), b"", "text/plain", "empty.txt", timeout=30)
    assert caught.value.code == "parse.empty"
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "parse_text" in str(caught.value.__cause__) or "_check_size" in str(
        caught.value.__cause__
    )


async def test_concurrent_calls_beyond_the_pool_size_queue_up(pool: ParserPool) -> None:
    docs = [f"# Doc {i}\n\ntext {i}".encode() for i in range(40)]
    results = await asyncio.gather(
        *(pool.parse(LocalParser(), d, "text/markdown", "d.md", timeout=30) for d in docs)
    )
    assert [r.title for r in results] == [f"Doc {i}" for i in range(40)]


async def test_cancelling_a_call_frees_its_process(pool: ParserPool) -> None:
    task = asyncio.create_task(pool.parse(HangingParser(), b"", "text/plain", timeout=60))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    results = await asyncio.gather(*(_pid(pool) for _ in range(pool.size)))
    assert len(results) == pool.size


async def test_closing_the_pool_interrupts_calls_as_transient() -> None:
    pool = ParserPool(1)
    await pool.start()
    task = asyncio.create_task(pool.parse(HangingParser(), b"", "text/plain", timeout=60))
    await asyncio.sleep(0.3)
    pool.close()
    with pytest.raises(TransientError) as caught:
        await task
    assert caught.value.code == "parse.interrupted"


async def test_many_small_calls_reuse_the_same_processes(pool: ParserPool) -> None:
    """Calls do not start processes of their own (the per-call overhead this keeps small is a
    figure of benchmarks/bench_parsers.py, docs/benchmarks/parsers.md)."""
    await pool.start()
    before = sorted(pool.process_ids)
    for i in range(200):
        answer = await pool.parse(EchoParser(), f"small {i}".encode(), "text/plain", timeout=30)
        assert answer.markdown == f"small {i}"
    assert sorted(pool.process_ids) == before


async def test_default_pool_and_in_process_path() -> None:
    data = b"# Hello\n\nworld"
    try:
        isolated = await parse_isolated(LocalParser(), data, "text/markdown", "a.md", timeout=30)
    finally:
        shutdown_default_pool()
    assert isolated == parse_in_process(LocalParser(), data, "text/markdown", "a.md")
    with pytest.raises(PermanentError) as caught:
        parse_in_process(EchoParserThatFails(), b"", "text/plain")
    assert caught.value.code == "parse.corrupt"
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


class EchoParserThatFails:
    name = "fails"

    def parse(self, data: bytes, media_type: str, filename: str = "") -> object:
        return 1 / 0
