"""What the pipeline is doing: state counts, jobs with their progress and history, retries.

Progress is derived from the buffers (chunks written, vectors written), never stored, so it is
always true.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.errors import NotFound
from ingestd.states import HAPPY_PATH, RETRY_FROM, TERMINAL_STATES, State
from ingestd.traffic.report import snapshot as traffic_snapshot


def progress(
    state: str, chunk_count: int | None, chunks_buffered: int, vectors_buffered: int
) -> dict[str, Any]:
    """Stage, units done/total and percent of the whole pipeline, from the buffer counts."""
    current = State(state)
    if current == State.COMPLETE:
        return {"stage": state, "done": chunk_count, "total": chunk_count, "percent": 100.0}
    if current in TERMINAL_STATES:
        return {"stage": state, "done": None, "total": None, "percent": None}
    steps = len(HAPPY_PATH) - 1
    index = HAPPY_PATH.index(current)
    done: int | None = None
    total: int | None = chunk_count
    fraction = 0.0
    if current == State.CHUNKS_STORED or current == State.CHUNKING:
        done = chunks_buffered
    elif current in (State.EMBEDDING_QUEUED, State.EMBEDDING_IN_PROGRESS, State.EMBEDDINGS_STORED):
        done = vectors_buffered
        if current == State.EMBEDDING_IN_PROGRESS and chunk_count:
            fraction = min(1.0, vectors_buffered / chunk_count)
    percent = round(100.0 * (index + fraction) / steps, 1)
    return {"stage": state, "done": done, "total": total, "percent": percent}


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


async def status(
    db: Database, owner: str | None = None, stale_seconds: float = 60
) -> dict[str, Any]:
    """``{"counts": {state: n}, "total": n, "documents": n, "chunks": n, "workers": [...]}``."""

    async def work(conn: Conn) -> dict[str, Any]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["state_counts"], {"owner": owner})
        counts = {s.value: 0 for s in State}
        for row in await cur.fetchall():
            counts[row["state"]] = row["n"]
        await cur.execute(QUERIES["overview"], {"owner": owner})
        overview = await cur.fetchone() or {}
        await cur.execute(QUERIES["live_workers"], {"stale": stale_seconds})
        workers = await cur.fetchall()
        return {
            "counts": counts,
            "total": sum(counts.values()),
            "terminal": sum(n for s, n in counts.items() if State(s) in TERMINAL_STATES),
            "documents": overview.get("documents", 0),
            "chunks": overview.get("chunks", 0),
            "leased": overview.get("leased", 0),
            "waiting_retry": overview.get("waiting", 0),
            "oldest_pending": overview.get("oldest_pending"),
            "usage": {
                "embedding_tokens": int(overview.get("embedding_tokens") or 0),
                "parse_pages": int(overview.get("parse_pages") or 0),
                "parse_credits": float(overview.get("parse_credits") or 0),
                "cost_usd": float(overview.get("cost_usd") or 0),
            },
            "workers": workers,
        }

    found = await db.transaction(work)
    found["traffic"] = await traffic_snapshot(db, events=5)
    return _jsonable(found)  # type: ignore[no-any-return]


async def list_jobs(
    db: Database, *, owner: str | None = None, states: Sequence[str] | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    params = {"owner": owner, "states": list(states) if states else None, "limit": limit}
    rows = await db.fetch_all(QUERIES["list_jobs"], params)
    for row in rows:
        row["progress"] = progress(
            row["state"],
            row["chunk_count"],
            row.pop("chunks_buffered"),
            row.pop("vectors_buffered"),
        )
    return _jsonable(rows)  # type: ignore[no-any-return]


class JobNotFound(NotFound, LookupError):
    def __init__(self, message: str) -> None:
        super().__init__("job.not_found", message)


def like_prefix(text: str) -> str:
    """``text`` as a literal LIKE prefix: its ``\\``, ``%`` and ``_`` escaped, ``%`` appended."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def get_job(db: Database, job_id: str, *, owner: str | None = None) -> dict[str, Any]:
    """One job by id (a unique prefix is enough), with its progress and event history."""
    prefix = like_prefix(job_id.lower())
    rows = await db.fetch_all(QUERIES["get_job"], {"prefix": prefix, "owner": owner})
    if len(rows) != 1:
        raise JobNotFound(f"{'no' if not rows else 'more than one'} job matches {job_id!r}")
    job = rows[0]
    job["progress"] = progress(
        job["state"], job["chunk_count"], job["chunks_buffered"], job["vectors_buffered"]
    )
    job["events"] = await db.fetch_all(QUERIES["job_events"], {"job_id": job["id"]})
    return _jsonable(job)  # type: ignore[no-any-return]


async def retry_jobs(
    db: Database,
    job_ids: Sequence[uuid.UUID] | None = None,
    *,
    owner: str | None = None,
    states: Sequence[str] | None = None,
    codes: Sequence[str] | None = None,
    since: datetime | None = None,
) -> list[uuid.UUID]:
    """Send failed (or cancelled) jobs back to the start of the stage that failed.

    Filters (all optional, combined): ``states`` (``failed_embedding``), error ``codes``
    (``embed.rate_limited``), ``since`` (entered that state at or after). When ids, states or
    codes are given, parked jobs that match (waiting on a limit, breaker or budget, e.g.
    ``budget.exhausted`` after the budget was raised) are made due now as well.
    Returns the ids requeued or woken.
    """
    params = {
        "ids": list(job_ids) if job_ids is not None else None,
        "owner": owner,
        "states": list(states) if states else None,
        "codes": list(codes) if codes else None,
        "since": since,
        "from_states": [s.value for s in RETRY_FROM],
        "to_states": [s.value for s in RETRY_FROM.values()],
    }
    moved = await _requeue(db, "retry_jobs", params)
    if job_ids is not None or states or codes:
        moved += await _requeue(db, "wake_parked_jobs", params)
    return moved


async def reindex_jobs(
    db: Database,
    *,
    chunker_version: str,
    embedding_model: str,
    owner: str | None = None,
    document_ids: Sequence[uuid.UUID] | None = None,
    force: bool = False,
) -> list[uuid.UUID]:
    """Re-chunk and re-embed complete documents made with other settings (all with ``force``).

    Search keeps answering from the old chunks until each document's new chunks replace them
    in one transaction (the finalise stage).
    """
    params = {
        "owner": owner,
        "document_ids": list(document_ids) if document_ids is not None else None,
        "force": force,
        "chunker_version": chunker_version,
        "embedding_model": embedding_model,
    }

    return await _requeue(db, "reindex_jobs", params)


async def _requeue(db: Database, query: str, params: dict[str, Any]) -> list[uuid.UUID]:
    """Run a query that makes jobs runnable again; wake the workers if it moved any."""

    async def work(conn: Conn) -> list[uuid.UUID]:
        cur = await conn.execute(QUERIES[query], params)
        moved = [row[0] for row in await cur.fetchall()]
        if moved:
            await conn.execute(QUERIES["notify_jobs"])
        return moved

    return await db.transaction(work)
