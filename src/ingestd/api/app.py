"""The ``ingestd serve`` FastAPI app: health checks and webhook intake.

Thin: every route calls the library. The database is opened once in the lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from ingestd import __version__
from ingestd.api.observability import router as observability_router
from ingestd.api.webhooks import router as webhooks_router
from ingestd.config import Settings, read_settings
from ingestd.db import Database

# Load balancers give up after a few seconds: answer well before that.
READY_TIMEOUT_SECONDS = 1.5


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
        try:
            yield
        finally:
            if db is None:
                await opened.close()

    docs = settings.api.docs_enabled
    app = FastAPI(
        title="ingestd",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.include_router(webhooks_router)
    app.include_router(observability_router)

    @app.get("/health/live")
    async def live() -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get("/health/ready")
    async def ready(request: Request) -> Response:
        """The database answers within READY_TIMEOUT_SECONDS (else 503, with each check)."""
        checks = {"database": await request.app.state.db.ping(READY_TIMEOUT_SECONDS)}
        ok = all(check["status"] == "ok" for check in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    return app
