"""One watcher per ``ingestd serve`` process that notices new job events and wakes every open
dashboard stream.

It LISTENs for the notifications that job-event inserts send (and the job inserts' own), with a
short poll as the fallback, and compares ``max(job_events.id)``: an index lookup, so a thousand
open dashboards still cost one connection and one cheap query per wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib

from ingestd.db.listen import Listener, listen_forever

CHANNELS = ("ingestd_events", "ingestd_jobs")
POLL_SECONDS = 1.0


class EventWatch:
    """``latest``: the newest job event id seen; ``wait_past(n)`` returns once it exceeds n."""

    def __init__(self, url: str, poll_seconds: float = POLL_SECONDS) -> None:
        self.url = url
        self.poll_seconds = poll_seconds
        self.latest = 0
        self._changed = asyncio.Condition()

    async def wait_past(self, seen: int, timeout: float) -> int:
        """The newest event id, once it is past ``seen`` (or at ``timeout``, whatever it is)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.latest > seen), timeout)
            return self.latest

    async def run(self) -> None:
        await listen_forever(
            self.url, CHANNELS, self._check, name="dashboard", poll_seconds=self.poll_seconds
        )

    async def _check(self, conn: Listener) -> None:
        cur = await conn.execute("SELECT coalesce(max(id), 0) FROM job_events")
        row = await cur.fetchone()
        newest = int(row[0]) if row else 0
        if newest != self.latest:
            async with self._changed:
                self.latest = newest
                self._changed.notify_all()
