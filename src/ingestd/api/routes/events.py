"""``GET /v1/events``: a server-sent-events stream of the caller's job events (admins: all).

Each event is ``id: <job_events.id>``, ``event: job``, ``data: <JSON>``. A client that
reconnects sends ``Last-Event-ID`` (browsers' EventSource does it by itself) and gets every
event after it, in order. A comment line is sent every ``keepalive`` seconds without events.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from ingestd.api.auth import CurrentPrincipal
from ingestd.api.openapi import NOT_FOUND
from ingestd.api.routes.common import db_of
from ingestd.api.schemas import JobEvent
from ingestd.service import jobs
from ingestd.service.events import EventNotifier, follow

router = APIRouter(prefix="/v1", tags=["events"])

STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An endless `text/event-stream`; each `data:` is a JSON job event.",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": 'id: 42\nevent: job\ndata: {"id": 42, "job_id": "...", '
                '"kind": "transition", "from_state": "uploaded", "to_state": "parse_queued"}\n\n',
            }
        },
    }
}


def sse(event: dict[str, Any]) -> str:
    data = JobEvent.model_validate(event).model_dump(mode="json")
    return f"id: {event['id']}\nevent: job\ndata: {json.dumps(data)}\n\n"


@router.get(
    "/events", response_class=StreamingResponse, responses={**STREAM_RESPONSES, **NOT_FOUND}
)
async def stream_events(
    request: Request,
    principal: CurrentPrincipal,
    last_event_id: Annotated[
        int | None, Header(ge=0, description="Resume after this event id.")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, description="Same as Last-Event-ID (for clients without it).")
    ] = None,
    job_id: Annotated[uuid.UUID | None, Query(description="Only this job's events.")] = None,
    keepalive: Annotated[float, Query(ge=0.5, le=300)] = 15.0,
) -> StreamingResponse:
    """Job transitions as they happen (server-sent events), resumable with `Last-Event-ID`;
    without it the stream starts now."""
    notifier: EventNotifier = request.app.state.events
    if job_id is not None:  # another owner's job answers 404, as on every other job route
        await jobs.get_job(db_of(request), job_id, owner=principal.scope)
    start = last_event_id if last_event_id is not None else after
    feed = follow(
        db_of(request),
        notifier,
        owner=principal.scope,
        after=start,
        job_id=job_id,
        idle_seconds=keepalive,
    )

    async def body() -> AsyncIterator[str]:
        yield ": connected\n\n"
        async for event in feed:
            yield ": keep-alive\n\n" if event is None else sse(event)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
