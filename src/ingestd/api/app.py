"""The ``ingestd serve`` FastAPI app: the v1 API, health checks and webhook intake.

Thin: every route calls the service layer (``ingestd.service``). The database is opened once in
the lifespan. Every answer carries ``X-Request-ID``; every error has one JSON shape
(``ingestd.api.errors``); header and body sizes are limited before a route runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import Scope

from ingestd import __version__
from ingestd.api.dashboard import router as dashboard_router
from ingestd.api.errors import install_error_handlers
from ingestd.api.middleware import RequestContextMiddleware
from ingestd.api.observability import router as observability_router
from ingestd.api.openapi import API_DESCRIPTION, ERROR_RESPONSES, TAGS
from ingestd.api.routes import ROUTERS
from ingestd.api.webhooks import router as webhooks_router
from ingestd.app import build_embedder
from ingestd.blobs import open_blob_store
from ingestd.config import ApiSettings, Settings, read_settings
from ingestd.db import Database
from ingestd.service.events import EventNotifier

# Load balancers give up after a few seconds: answer well before that.
READY_TIMEOUT_SECONDS = 1.0

UPLOAD_PATH = "/v1/documents"


def body_limit_for(settings: ApiSettings) -> Any:
    """Uploads may be large, the webhook limits its own body, everything else is small JSON."""

    def limit(scope: Scope) -> int | None:
        path = scope.get("path", "")
        if path.startswith("/v1/webhooks/"):
            return None
        if path == UPLOAD_PATH and scope.get("method") == "POST":
            return settings.max_request_bytes
        return settings.max_json_bytes

    return limit


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    """The app. ``db``: an already opened database to share, when the app runs on the same event
    loop as its owner (a pool is bound to one loop); by default the app opens its own."""
    settings = settings or read_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = db or Database.from_settings(settings)
        if db is None:
            await opened.open()
        app.state.db = opened
        app.state.embedder = build_embedder(settings)
        app.state.events = EventNotifier(opened.url)
        try:
            with open_blob_store(settings, opened.url) as blobs:
                app.state.blobs = blobs
                yield
        finally:
            await app.state.events.close()
            close = getattr(app.state.embedder, "aclose", None)
            if close is not None:
                await close()
            if db is None:
                await opened.close()

    docs = settings.api.docs_enabled
    app = FastAPI(
        title="ingestd",
        version=__version__,
        description=API_DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, settings=settings.api, body_limit=body_limit_for(settings.api)
    )
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(webhooks_router, tags=["webhooks"])
    app.include_router(observability_router)
    app.include_router(dashboard_router, responses=ERROR_RESPONSES)

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get(
        "/health/ready",
        tags=["health"],
        responses={503: {"description": "The database does not answer."}},
    )
    async def ready(request: Request) -> Response:
        """The database answers within READY_TIMEOUT_SECONDS (else 503, with each check)."""
        checks = {"database": await request.app.state.db.ping(READY_TIMEOUT_SECONDS)}
        ok = all(check["status"] == "ok" for check in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    return app
