"""``/v1/jobs``: list, read, follow, retry and cancel jobs — the caller's own (all for admins)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ingestd.api.auth import CurrentPrincipal
from ingestd.api.openapi import NOT_FOUND, NOT_FOUND_OR_CONFLICT
from ingestd.api.routes.common import CursorQuery, LimitQuery, StateQuery, db_of
from ingestd.api.schemas import Job, JobEvents, JobPage, Retried, RetryFilter
from ingestd.service import jobs

router = APIRouter(prefix="/v1", tags=["jobs"])

CodeQuery = Annotated[
    list[str] | None,
    Query(alias="error_code", description="`last_error.code`; repeatable.", max_length=50),
]
SinceQuery = Annotated[
    datetime | None, Query(description="Entered its current state at or after this.")
]


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    request: Request,
    principal: CurrentPrincipal,
    states: StateQuery = None,
    error_codes: CodeQuery = None,
    since: SinceQuery = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Jobs, newest first, filtered by state, error code and time; cursor-paged."""
    page, next_cursor = await jobs.find_jobs(
        db_of(request),
        owner=principal.scope,
        states=states,
        error_codes=error_codes,
        since=since,
        limit=limit,
        cursor=cursor,
    )
    return {"jobs": page, "next_cursor": next_cursor}


@router.post("/jobs:retry", response_model=Retried)
async def retry_matching_jobs(
    request: Request, principal: CurrentPrincipal, body: RetryFilter
) -> dict[str, Any]:
    """Send every failed job matching all the filters given back to the stage that failed
    (`states` may also name `cancelled`; by default every failed state)."""
    moved = await jobs.retry_where(
        db_of(request),
        owner=principal.scope,
        states=body.states,
        error_codes=body.error_codes,
        since=body.since,
    )
    return {"retried": len(moved), "job_ids": moved}


@router.get("/jobs/{job_id}", response_model=Job, responses=NOT_FOUND)
async def get_job(request: Request, principal: CurrentPrincipal, job_id: uuid.UUID) -> Any:
    """One job: state, progress, error, usage and timings."""
    return await jobs.get_job(db_of(request), job_id, owner=principal.scope)


@router.get("/jobs/{job_id}/events", response_model=JobEvents, responses=NOT_FOUND)
async def get_job_events(
    request: Request, principal: CurrentPrincipal, job_id: uuid.UUID
) -> dict[str, Any]:
    """The job's history (transitions, retries, released leases), oldest first."""
    return {"events": await jobs.job_events(db_of(request), job_id, owner=principal.scope)}


@router.post("/jobs/{job_id}/retry", response_model=Job, responses=NOT_FOUND_OR_CONFLICT)
async def retry_job(request: Request, principal: CurrentPrincipal, job_id: uuid.UUID) -> Any:
    """Send a failed or cancelled job back to the start of the stage that failed."""
    return await jobs.retry_job(db_of(request), job_id, owner=principal.scope)


@router.post("/jobs/{job_id}/cancel", response_model=Job, responses=NOT_FOUND_OR_CONFLICT)
async def cancel_job(request: Request, principal: CurrentPrincipal, job_id: uuid.UUID) -> Any:
    """Stop a job that has not finished; the worker holding it drops it at its next write."""
    return await jobs.cancel_job(db_of(request), job_id, owner=principal.scope)
