"""Concurrent first uses of an Idempotency-Key (service/uploads.answer_once) on the real
database: one request records, the others wait for its answer; a failed request gives the key
back; a claim whose request died lapses and is taken over; a waiter gives up with 409."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ingestd.app import App
from ingestd.errors import Conflict
from ingestd.service.uploads import IN_PROGRESS, IdempotencyMismatch, StoredAnswer, answer_once

OWNER = "owner-claims"


def new_key() -> str:
    return f"k-{uuid.uuid4()}"


async def test_concurrent_requests_record_once_and_all_get_the_first_answer(app: App) -> None:
    key = new_key()
    recorded: list[int] = []
    release = asyncio.Event()

    async def record() -> StoredAnswer:
        recorded.append(1)
        await release.wait()  # the others arrive while the first is recording
        return StoredAnswer(201, {"n": len(recorded)})

    calls = [asyncio.create_task(answer_once(app.db, OWNER, key, "fp", record)) for _ in range(5)]
    await asyncio.sleep(0.3)
    assert len(recorded) == 1 and not any(c.done() for c in calls)
    release.set()
    answers = await asyncio.gather(*calls)
    assert answers == [StoredAnswer(201, {"n": 1})] * 5
    assert recorded == [1]


async def test_another_request_with_a_held_key_is_refused_at_once(app: App) -> None:
    key = new_key()
    release = asyncio.Event()

    async def slow() -> StoredAnswer:
        await release.wait()
        return StoredAnswer(201, {})

    first = asyncio.create_task(answer_once(app.db, OWNER, key, "fp-a", slow))
    await asyncio.sleep(0.2)
    with pytest.raises(IdempotencyMismatch):
        await answer_once(app.db, OWNER, key, "fp-b", slow)
    release.set()
    assert (await first).status == 201


async def test_a_failed_request_gives_the_key_back(app: App) -> None:
    key = new_key()

    async def broken() -> StoredAnswer:
        raise RuntimeError("the blob store fell over")

    with pytest.raises(RuntimeError):
        await answer_once(app.db, OWNER, key, "fp", broken)

    async def works() -> StoredAnswer:
        return StoredAnswer(201, {"ok": True})

    assert await answer_once(app.db, OWNER, key, "fp", works) == StoredAnswer(201, {"ok": True})
    # Answered now: the key keeps that answer, record() is not called again.
    assert await answer_once(app.db, OWNER, key, "fp", broken) == StoredAnswer(201, {"ok": True})


async def test_a_lapsed_claim_is_taken_over(app: App) -> None:
    key = new_key()
    # A request that claimed the key and died (its claim ran out a minute ago).
    await app.db.execute(
        "INSERT INTO idempotency_keys (owner, key, request_sha256, claim_token, claimed_until)"
        " VALUES (%s, %s, 'fp', gen_random_uuid(), now() - interval '1 minute')",
        (OWNER, key),
    )

    async def record() -> StoredAnswer:
        return StoredAnswer(201, {"taken": "over"})

    assert await answer_once(app.db, OWNER, key, "fp", record) == StoredAnswer(
        201, {"taken": "over"}
    )
    [row] = await app.db.fetch_all(
        "SELECT status, claim_token FROM idempotency_keys WHERE owner = %s AND key = %s",
        (OWNER, key),
    )
    assert row == {"status": 201, "claim_token": None}


async def test_a_waiter_gives_up_with_in_progress_while_a_live_claim_holds_the_key(
    app: App,
) -> None:
    key = new_key()
    await app.db.execute(
        "INSERT INTO idempotency_keys (owner, key, request_sha256, claim_token, claimed_until)"
        " VALUES (%s, %s, 'fp', gen_random_uuid(), now() + interval '5 minutes')",
        (OWNER, key),
    )

    async def record() -> StoredAnswer:
        raise AssertionError("the key is held: nothing may be recorded")

    with pytest.raises(Conflict) as raised:
        await answer_once(app.db, OWNER, key, "fp", record, wait_seconds=0.3)
    assert raised.value.code == IN_PROGRESS
