"""``/metrics``: this process's metrics plus the fleet figures read from the database."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ingestd.observability.fleet import exposition, fleet_families, fleet_snapshot

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format; the fleet figures are computed now, from the database."""
    snapshot = await fleet_snapshot(
        request.app.state.db, request.app.state.settings, recent_events=False
    )
    body = exposition(fleet_families(snapshot))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
