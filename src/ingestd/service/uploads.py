"""Idempotent uploads: the first answer to an ``Idempotency-Key``, kept per owner."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from ingestd.db import QUERIES, Database


async def idempotent_answer(
    db: Database, owner: str, key: str
) -> tuple[int, dict[str, Any]] | None:
    """``(status, body)`` first answered for this key, or None."""
    rows = await db.fetch_all(QUERIES["get_idempotent_response"], {"owner": owner, "key": key})
    return (rows[0]["status"], rows[0]["response"]) if rows else None


async def remember_answer(
    db: Database, owner: str, key: str, status: int, body: dict[str, Any]
) -> None:
    await db.execute(
        QUERIES["put_idempotent_response"],
        {"owner": owner, "key": key, "status": status, "response": Jsonb(body)},
    )
