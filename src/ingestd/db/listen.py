"""A LISTEN connection that outlives the database: reopened with backoff for as long as it runs.

Three things listen (a worker for new work, the API's event feed, the dashboard's watcher); each
hands ``listen_forever`` its channels and what to do on a wake-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
import structlog
from psycopg import sql

from ingestd.db.database import backoff_delay

log = structlog.get_logger(__name__)

Listener = psycopg.AsyncConnection[Any]
OnWake = Callable[[Listener], Awaitable[None]]


async def listen_forever(
    url: str,
    channels: Sequence[str],
    on_wake: OnWake,
    *,
    name: str,
    poll_seconds: float | None = None,
) -> None:
    """LISTEN on ``channels`` until cancelled.

    ``on_wake(conn)`` runs once the connection is (re)opened (notifications may have been missed
    while it was away), on every notification, and, with ``poll_seconds``, after that long without
    one. A lost connection, or a failed wake-up, is logged as ``<name>.listen_lost`` and the
    connection reopened after a jittered backoff.
    """
    attempt = 0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                for channel in channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                attempt = 0
                await on_wake(conn)
                if poll_seconds is None:
                    async for _ in conn.notifies():
                        await on_wake(conn)
                else:
                    while True:
                        async for _ in conn.notifies(timeout=poll_seconds, stop_after=1):
                            pass
                        await on_wake(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempt += 1
            log.warning(f"{name}.listen_lost", error=str(exc), attempt=attempt)
            await asyncio.sleep(backoff_delay(attempt, base=0.1, cap=5.0))
