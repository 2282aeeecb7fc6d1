"""``POST /v1/search``: semantic search over the caller's chunks (every owner's for admins)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ingestd.api.auth import CurrentPrincipal
from ingestd.api.errors import ApiError
from ingestd.api.routes.common import db_of
from ingestd.api.schemas import SearchRequest, SearchResults
from ingestd.api.uploads import json_depth
from ingestd.config import Settings
from ingestd.search import search

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchResults)
async def search_chunks(
    request: Request, principal: CurrentPrincipal, body: SearchRequest
) -> dict[str, Any]:
    """The `k` chunks nearest the query, best first; optionally only in some documents or in
    documents whose metadata contains an object."""
    settings: Settings = request.app.state.settings
    if body.metadata is not None and json_depth(body.metadata) > settings.api.max_json_depth:
        raise ApiError(
            422, "request.too_deep", f"metadata nests deeper than {settings.api.max_json_depth}"
        )
    hits = await search(
        db_of(request),
        request.app.state.embedder,
        body.query,
        owner=principal.scope,
        limit=body.k,
        document_ids=body.document_ids,
        metadata=body.metadata,
    )
    return {"results": [h.to_json() for h in hits]}
