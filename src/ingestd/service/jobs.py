"""Jobs as an application sees them: find, follow, retry, cancel — always within an owner scope.

``owner=None`` means every owner (the CLI's ``--all-owners``, an admin key). Another owner's job
is reported exactly like a missing one (``JobNotFound``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.errors import Conflict, PermanentError
from ingestd.reports import JobNotFound, progress, retry_jobs
from ingestd.service.paging import (
    cut_page,
    fetch_limit,
    newest_first_after,
    newest_first_key,
    query_params,
)
from ingestd.states import FAILED_STATES, RETRY_FROM, State


def job_view(row: dict[str, Any]) -> dict[str, Any]:
    """A job row as the API and the Python client show it."""
    return {
        "id": row["id"],
        "document_id": row["document_id"],
        "owner": row["owner"],
        "filename": row["filename"],
        "state": row["state"],
        "progress": progress(
            row["state"], row["chunk_count"], row["chunks_buffered"], row["vectors_buffered"]
        ),
        "error": row["last_error"],
        "usage": row["usage"] or {},
        "attempt": row["attempt"],
        "retry_count": row["retry_count"],
        "max_attempts": row["max_attempts"],
        "chunk_count": row["chunk_count"],
        "embedding_model": row["embedding_model"],
        "waiting_on": row["waiting_on"],
        "timings": {
            k: row[k]
            for k in (
                "created_at",
                "updated_at",
                "state_changed_at",
                "processing_started_at",
                "completed_at",
                "next_attempt_at",
            )
        },
    }


def check_states(states: Sequence[str] | None) -> list[str] | None:
    if not states:
        return None
    known = {s.value for s in State}
    unknown = [str(s) for s in states if s not in known]
    if unknown:
        raise PermanentError("request.bad_state", f"unknown state(s): {', '.join(unknown)}")
    return [State(s).value for s in states]  # plain strings, also for State members


FILTERS = ("job_id", "states", "codes", "since", "before_created", "before_id")


def _params(owner: str | None, **filters: Any) -> dict[str, Any]:
    """The ``find_jobs`` parameters: no filter but the owner scope, unless given."""
    return query_params(FILTERS, owner, **filters)


async def find_jobs(
    db: Database,
    *,
    owner: str | None,
    states: Sequence[str] | None = None,
    error_codes: Sequence[str] | None = None,
    since: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of jobs, newest first, and the cursor of the next page (None at the end)."""
    params = _params(
        owner,
        states=check_states(states),
        codes=list(error_codes) if error_codes else None,
        since=since,
        limit=fetch_limit(limit),
        **newest_first_after(cursor),
    )
    rows, next_cursor = cut_page(
        await db.fetch_all(QUERIES["find_jobs"], params), limit, newest_first_key
    )
    return [job_view(r) for r in rows], next_cursor


async def get_job(db: Database, job_id: uuid.UUID, *, owner: str | None) -> dict[str, Any]:
    """One job of the owner scope; ``JobNotFound`` for a missing one and another owner's alike."""
    rows = await db.fetch_all(QUERIES["find_jobs"], _params(owner, job_id=job_id))
    if not rows:
        raise JobNotFound(f"no job {job_id}")
    return job_view(rows[0])


async def job_events(db: Database, job_id: uuid.UUID, *, owner: str | None) -> list[dict[str, Any]]:
    """The job's history, oldest first."""
    await get_job(db, job_id, owner=owner)
    rows = await db.fetch_all(QUERIES["job_events"], {"job_id": job_id})
    return [{**row, "job_id": job_id} for row in rows]


async def retry_job(db: Database, job_id: uuid.UUID, *, owner: str | None) -> dict[str, Any]:
    """Send one failed or cancelled job back to the start of the stage that failed."""
    job = await get_job(db, job_id, owner=owner)
    if State(job["state"]) not in RETRY_FROM:
        raise Conflict(
            "job.not_retryable",
            f"the job is {job['state']}; only failed or cancelled jobs can be retried",
        )
    await retry_jobs(db, [job_id], owner=owner)
    return await get_job(db, job_id, owner=owner)


async def retry_where(
    db: Database,
    *,
    owner: str | None,
    states: Sequence[str] | None = None,
    error_codes: Sequence[str] | None = None,
    since: datetime | None = None,
) -> list[uuid.UUID]:
    """Retry every failed (or cancelled) job matching all the filters given."""
    chosen = check_states(states)
    if chosen and not set(chosen) <= {s.value for s in RETRY_FROM}:
        retryable = ", ".join(sorted(s.value for s in RETRY_FROM))
        raise PermanentError("request.bad_state", f"only these states can be retried: {retryable}")
    return await retry_jobs(
        db,
        owner=owner,
        states=chosen or [s.value for s in FAILED_STATES],
        codes=error_codes,
        since=since,
    )


async def cancel_jobs(
    db: Database, job_ids: Sequence[uuid.UUID], *, owner: str | None
) -> list[uuid.UUID]:
    """Cancel unfinished jobs: state ``cancelled``, lease taken away and the fencing token
    bumped (the worker holding the job finds its next write matching nothing and drops it),
    buffers cleared. Terminal jobs are left alone."""

    async def work(conn: Conn) -> list[uuid.UUID]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["cancel_jobs"], {"ids": list(job_ids), "owner": owner})
        moved = [row["id"] for row in await cur.fetchall()]
        if moved:
            await conn.execute(QUERIES["clear_buffers"], {"ids": moved})
        return moved

    return await db.transaction(work)


async def cancel_job(db: Database, job_id: uuid.UUID, *, owner: str | None) -> dict[str, Any]:
    job = await get_job(db, job_id, owner=owner)
    if not await cancel_jobs(db, [job_id], owner=owner):
        current = await get_job(db, job_id, owner=owner)
        raise Conflict("job.not_cancellable", f"the job is already {current['state']}")
    return await get_job(db, job["id"], owner=owner)
