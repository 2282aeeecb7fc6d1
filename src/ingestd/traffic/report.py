"""What traffic control is doing, for ``ingestd limits``, ``ingestd costs``, status and metrics.

``snapshot(db)`` is the one read: every limit (rate, burst, units available now, pause), every
breaker, the latest breaker transitions, and how many jobs wait on what.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from psycopg.rows import dict_row

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value.__class__.__name__ == "Decimal":
        return float(value)
    return value


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


async def snapshot(db: Database, events: int = 20) -> dict[str, Any]:
    """``{"limits": [...], "breakers": [...], "events": [...], "waiting": [...]}``."""

    async def work(conn: Conn) -> dict[str, Any]:
        cur = conn.cursor(row_factory=dict_row)
        found: dict[str, Any] = {}
        for key, query, params in (
            ("limits", "list_limits", None),
            ("breakers", "list_breakers", None),
            ("events", "recent_breaker_events", {"limit": events}),
            ("waiting", "waiting_counts", None),
        ):
            await cur.execute(QUERIES[query], params)
            found[key] = _rows(await cur.fetchall())
        for limit in found["limits"]:
            limit["per_minute"] = round(limit["rate"] * 60, 3)
        return found

    return await db.transaction(work)


async def costs(db: Database, *, days: int = 31, owner: str | None = None) -> list[dict[str, Any]]:
    """Spend by UTC day, service and owner (newest first) from the usage ledger."""
    since = date.today() - timedelta(days=days - 1)
    rows = await db.fetch_all(QUERIES["costs_by_day"], {"since": since, "owner": owner})
    return _rows(rows)
