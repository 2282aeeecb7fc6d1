"""The live feed of job events for one caller, in ``job_events.id`` order, missing nothing.

Every statement that appends events sends one ``NOTIFY ingestd_events`` (migration 0006). A
process keeps **one** LISTEN connection (``EventNotifier``); each follower (an SSE stream, a
Python client) wakes on it and reads the new rows through the pool.

Ids come from a sequence, and sequences are not transactional: event 101 can commit while 100
is still in flight. A follower that moved its cursor to 101 would never see 100. So a follower
delivers ids only up to the first gap, and waits for the gap: when every transaction that was
running when the gap was first seen has ended (a later snapshot's ``xmin`` passed the earlier
``xmax``) and the gap is still there, it was a rollback and is skipped. Delivery is therefore in
id order, gap-free, and resumable from any delivered id (SSE ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.db.listen import Listener, listen_forever

CHANNEL = "ingestd_events"
# Without a notification, followers look anyway this often (a lost connection, a rollback gap).
POLL_SECONDS = 5.0
GAP_RECHECK_SECONDS = 0.2
BATCH = 500


class EventNotifier:
    """One LISTEN connection per process; ``wait`` returns when events may have arrived."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="ingestd-events-listen")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait(self, timeout: float) -> None:
        self.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _wake(self) -> None:
        # Wake every waiter, then re-arm for the next notification.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _listen(self) -> None:
        async def wake(_: Listener) -> None:
            self._wake()  # on a reconnection too: events may have come meanwhile

        await listen_forever(self.url, [CHANNEL], wake, name="events")


@dataclass
class _Gap:
    start: int
    horizon: int  # xmax of the snapshot that first saw the gap


@dataclass
class EventFollower:
    """Follows the events an owner may see (``owner=None``: all), optionally of one job."""

    db: Database
    owner: str | None
    cursor: int
    job_id: uuid.UUID | None = None
    _gap: _Gap | None = None

    async def next_batch(self) -> list[dict[str, Any]]:
        """The caller's events after the cursor, up to the first unresolved gap."""

        async def work(conn: Conn) -> list[dict[str, Any]]:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(QUERIES["event_ids_after"], {"after": self.cursor, "limit": BATCH})
            rows = await cur.fetchall()
            if not rows:
                return []
            safe = self._safe_upto([r["id"] for r in rows], rows[0]["xmin"], rows[0]["xmax"])
            if safe == self.cursor:
                return []
            params = {
                "after": self.cursor,
                "upto": safe,
                "owner": self.owner,
                "job_id": self.job_id,
            }
            await cur.execute(QUERIES["events_between"], params)
            found = await cur.fetchall()
            self.cursor = safe
            return found

        return await self.db.transaction(work, deadline=30)

    def _safe_upto(self, ids: list[int], xmin: int, xmax: int) -> int:
        safe = self.cursor
        for event_id in ids:
            if event_id == safe + 1:
                safe = event_id
                continue
            gap_start = safe + 1
            if self._gap is None or self._gap.start != gap_start:
                self._gap = _Gap(gap_start, xmax)
                break
            if xmin < self._gap.horizon:
                break  # a transaction that may fill the gap is still running
            self._gap = None  # everyone who could have filled it has finished: a rollback
            safe = event_id
        if self._gap is not None and safe >= self._gap.start:
            self._gap = None  # filled meanwhile
        return safe

    @property
    def waiting_on_gap(self) -> bool:
        return self._gap is not None


async def latest_event_id(db: Database) -> int:
    rows = await db.fetch_all(QUERIES["latest_event_id"])
    return int(rows[0]["id"])


async def follow(
    db: Database,
    notifier: EventNotifier,
    *,
    owner: str | None,
    after: int | None = None,
    job_id: uuid.UUID | None = None,
    idle_seconds: float = POLL_SECONDS,
) -> AsyncIterator[dict[str, Any] | None]:
    """Events the owner may see, after id ``after`` (None: from now on), forever. Yields None
    after ``idle_seconds`` without events, so a caller can send a keep-alive."""
    start = await latest_event_id(db) if after is None else after
    follower = EventFollower(db, owner, start, job_id)
    while True:
        before = follower.cursor
        batch = await follower.next_batch()
        for event in batch:
            yield event
        if follower.cursor != before:
            continue  # more may be waiting beyond this batch (other owners' events included)
        if follower.waiting_on_gap:
            await asyncio.sleep(GAP_RECHECK_SECONDS)
            continue
        yield None
        await notifier.wait(idle_seconds)
