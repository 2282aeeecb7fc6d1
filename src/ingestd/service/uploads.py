"""Idempotent uploads: the first answer to an ``Idempotency-Key``, kept per owner with a
fingerprint of the request it answered.

The same key with the same request answers the stored answer again and changes nothing; the same
key with another request (other files, names or metadata) is refused with
``idempotency.mismatch`` rather than answering documents the caller did not send this time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from ingestd.db import QUERIES, Database
from ingestd.errors import PermanentError

MISMATCH = "idempotency.mismatch"


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


async def idempotent_answer(
    db: Database, owner: str, key: str, fingerprint: str
) -> StoredAnswer | None:
    """The answer first given for this key and request, or None if the key is new;
    ``IdempotencyMismatch`` if the key was used for another request."""
    rows = await db.fetch_all(QUERIES["get_idempotent_response"], {"owner": owner, "key": key})
    if not rows:
        return None
    stored = rows[0]["request_sha256"]
    if stored is not None and stored != fingerprint:  # None: a row from before fingerprints
        raise IdempotencyMismatch(key)
    return StoredAnswer(rows[0]["status"], rows[0]["response"])


async def remember_answer(
    db: Database, owner: str, key: str, fingerprint: str, answer: StoredAnswer
) -> StoredAnswer:
    """Keep ``answer`` for the key; if a concurrent request with the key answered first, its
    answer is the one to give (or ``IdempotencyMismatch`` if it was another request)."""
    params = {
        "owner": owner,
        "key": key,
        "status": answer.status,
        "response": Jsonb(answer.body),
        "request_sha256": fingerprint,
    }
    if await db.fetch_all(QUERIES["put_idempotent_response"], params):
        return answer
    first = await idempotent_answer(db, owner, key, fingerprint)
    return first or answer
