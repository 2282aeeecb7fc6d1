"""Idempotent uploads: the first answer to an ``Idempotency-Key``, kept per owner with a
fingerprint of the request it answered.

The same key with the same request answers the stored answer again and changes nothing; the same
key with another request (other files, names or metadata) is refused with
``idempotency.mismatch`` rather than answering documents the caller did not send this time.

Concurrent first uses of a key are serialised by a claim: the first request inserts the key with
no answer yet and records the upload; the others wait for its answer (up to
``WAIT_SECONDS``, then 409 ``idempotency.in_progress``), so every caller gets the one first answer
and the upload is recorded once. A request that fails gives its claim back; a claim whose request
died lapses after ``CLAIM_SECONDS`` and the next request with the key takes it over.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from ingestd.db import QUERIES, Database
from ingestd.errors import Conflict, PermanentError

MISMATCH = "idempotency.mismatch"
IN_PROGRESS = "idempotency.in_progress"

# How long a claim holds the key without an answer: far longer than recording any upload takes
# (the body is already received when the key is claimed), short enough that a crashed request
# does not lock the key for long.
CLAIM_SECONDS = 300.0
# How long a concurrent request with the key waits for the first one's answer.
WAIT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    body: dict[str, Any]


class IdempotencyMismatch(PermanentError):
    def __init__(self, key: str) -> None:
        super().__init__(
            MISMATCH,
            f"the Idempotency-Key {key!r} was first used for a different request (other files, "
            "file names or metadata); send a new key for a new request",
        )


async def answer_once(
    db: Database,
    owner: str,
    key: str,
    fingerprint: str,
    record: Callable[[], Awaitable[StoredAnswer]],
    *,
    wait_seconds: float = WAIT_SECONDS,
) -> StoredAnswer:
    """The answer first given for ``key``: the stored one, the one a concurrent request with the
    key is producing (waited for), or ``record()``'s, kept for the key. ``IdempotencyMismatch``
    if the key was used for another request; ``Conflict`` (``idempotency.in_progress``) if a
    concurrent request holds the key longer than ``wait_seconds``."""
    keyed = {"owner": owner, "key": key}
    deadline = time.monotonic() + wait_seconds
    pause = 0.02
    while True:
        token = uuid.uuid4()
        claim = {**keyed, "request_sha256": fingerprint, "token": token}
        if await db.fetch_all(
            QUERIES["claim_idempotency_key"], {**claim, "hold_seconds": CLAIM_SECONDS}
        ):
            return await _record_claimed(db, claim, record)
        rows = await db.fetch_all(QUERIES["get_idempotent_response"], keyed)
        if rows:
            row = rows[0]
            stored = row["request_sha256"]
            if stored is not None and stored != fingerprint:  # None: a row from before fingerprints
                raise IdempotencyMismatch(key)
            if row["status"] is not None:
                return StoredAnswer(row["status"], row["response"])
        # Held by a live request (or given back just now: claim again at once).
        if time.monotonic() >= deadline:
            raise Conflict(
                IN_PROGRESS,
                f"a request with the Idempotency-Key {key!r} is still being recorded; "
                "send it again in a moment",
            )
        if rows:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)


async def _record_claimed(
    db: Database, claim: dict[str, Any], record: Callable[[], Awaitable[StoredAnswer]]
) -> StoredAnswer:
    try:
        answer = await record()
    except BaseException:
        await asyncio.shield(db.execute(QUERIES["release_idempotency_key"], claim))
        raise
    params = {**claim, "status": answer.status, "response": Jsonb(answer.body)}
    await db.fetch_all(QUERIES["answer_idempotency_key"], params)
    # Nothing updated: the claim lapsed and another request took the key over; this request's
    # own answer is still the true one for what it recorded.
    return answer
