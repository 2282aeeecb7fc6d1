"""The dashboard: its page at ``/``, its reads under ``/v1/dashboard``, ``GET /v1/alerts``.

Admins only. A browser signs in once with an admin API key and gets a session cookie
(HttpOnly, SameSite=Strict; only a hash is stored, and revoking the key ends the session),
because ``EventSource`` cannot send an ``Authorization`` header; scripts send the key as a
Bearer token instead. The page is ``api/static/``: plain JS and SVG, no build. ``GET /`` sends
it as one response, with its stylesheet and script inlined and, for a signed-in browser, the
summary the first screen shows (so the first paint already has the counts, with no request
after the page's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from pydantic import BaseModel

from ingestd.api.auth import require_principal
from ingestd.api.errors import ApiError
from ingestd.api.openapi import error_answer
from ingestd.db import QUERIES, Database
from ingestd.observability import dashboard
from ingestd.observability.alerts import evaluate
from ingestd.observability.live import EventWatch
from ingestd.service.keys import verify_key

log = structlog.get_logger(__name__)

SESSION_COOKIE = "ingestd_session"
STREAM_HEARTBEAT_SECONDS = 15.0
STATIC = resources.files("ingestd.api").joinpath("static")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def require_dashboard_admin(request: Request) -> str:
    """The admin behind the session cookie or the Bearer key; 401/403 otherwise."""
    token = request.cookies.get(SESSION_COOKIE)
    if token and "authorization" not in request.headers:
        db: Database = request.app.state.db
        rows = await db.fetch_all(QUERIES["dashboard_session"], {"token_hash": _token_hash(token)})
        if not rows:
            raise ApiError(401, "auth.session_expired", "sign in again with an admin API key")
        return str(rows[0]["subject"])
    principal = await require_principal(request)
    if not principal.admin:
        raise ApiError(403, "auth.forbidden", "the dashboard needs an admin key")
    return str(principal.subject)


Admin = Annotated[str, Depends(require_dashboard_admin)]


# The first alert evaluation waits this long (at most), out of the way of start-up and health
# checks.
FIRST_EVALUATION_SECONDS = 5.0
STOP_GRACE_SECONDS = 5.0


@asynccontextmanager
async def _background(app: FastAPI) -> AsyncIterator[None]:
    """Alert evaluation on a timer, and (from the first dashboard stream on) the event watcher.

    Stopped by an event rather than by cancellation alone: a cancellation that lands inside a
    retried database call may be absorbed, and shutdown must not wait on it."""
    stop = asyncio.Event()
    app.state.background_stop = stop
    app.state.background_tasks = [
        asyncio.create_task(_evaluate_alerts(app, stop), name="alert-evaluation")
    ]
    try:
        yield
    finally:
        stop.set()
        tasks: list[asyncio.Task[None]] = app.state.background_tasks
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)


async def _evaluate_alerts(app: FastAPI, stop: asyncio.Event) -> None:
    settings = app.state.settings
    pause = min(FIRST_EVALUATION_SECONDS, settings.observability.alert_interval_seconds)
    while not await _stopped(stop, pause):
        try:
            await evaluate(app.state.db, settings)
        except Exception as exc:  # the database away: try again next round
            log.warning("alerts.evaluation_failed", error=str(exc))
        pause = settings.observability.alert_interval_seconds


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def _event_watch(app: FastAPI) -> EventWatch:
    """The process's one watcher, started by the first dashboard stream."""
    watch: EventWatch | None = getattr(app.state, "event_watch", None)
    if watch is None:
        watch = EventWatch(app.state.db.url)
        app.state.event_watch = watch
        app.state.background_tasks.append(asyncio.create_task(watch.run(), name="dashboard-watch"))
    return watch


router = APIRouter(
    lifespan=_background,
    responses={
        403: error_answer("The key is valid but not an admin key."),
        404: error_answer("No such job."),
    },
)


STYLESHEET_TAG = '<link rel="stylesheet" href="/static/dashboard.css">'
SCRIPT_TAG = '<script src="/static/dashboard.js" defer></script>'
INITIAL_ID = "initial-summary"


@functools.cache
def _page_parts() -> tuple[str, str]:
    """index.html with its stylesheet and script inlined, split where the initial data goes."""
    html = STATIC.joinpath("index.html").read_text()
    css = STATIC.joinpath("dashboard.css").read_text()
    script = STATIC.joinpath("dashboard.js").read_text()
    if STYLESHEET_TAG not in html or SCRIPT_TAG not in html or "</script" in script:
        raise RuntimeError("api/static/index.html: the stylesheet or script tag moved")
    html = html.replace(STYLESHEET_TAG, f"<style>\n{css}</style>").replace(SCRIPT_TAG + "\n", "")
    head, _, tail = html.rpartition("</body>")
    return head, f"<script>\n{script}</script>\n</body>{tail}"


def render_page(initial: dict[str, Any] | None) -> str:
    """The page; ``initial`` (the summary) is embedded as JSON for the script's first render."""
    head, tail = _page_parts()
    if initial is None:
        return head + tail
    # "<" escaped: no "</script>" can end the data block early (JSON reads \u003c back as "<").
    data = json.dumps(initial, default=str, separators=(",", ":")).replace("<", "\\u003c")
    return f'{head}<script id="{INITIAL_ID}" type="application/json">{data}</script>\n{tail}'


async def _initial_summary(request: Request) -> dict[str, Any] | None:
    """The summary for a browser with a valid session; None otherwise (the script signs in)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    db: Database = request.app.state.db
    try:
        if not await db.fetch_all(QUERIES["dashboard_session"], {"token_hash": _token_hash(token)}):
            return None
        return await dashboard.summary(db, request.app.state.settings)
    except Exception as exc:  # the page still loads; its script retries and says so
        log.warning("dashboard.initial_summary_failed", error=str(exc))
        return None


@router.get("/", include_in_schema=False)
async def page(request: Request) -> HTMLResponse:
    initial = await _initial_summary(request)
    return HTMLResponse(render_page(initial), headers={"Cache-Control": "no-store"})


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    if name not in ("dashboard.js", "dashboard.css"):
        raise ApiError(404, "http.not_found", f"no static file {name}")
    return FileResponse(str(STATIC.joinpath(name)), headers={"Cache-Control": "no-cache"})


class SessionRequest(BaseModel):
    key: str


@router.post("/v1/dashboard/session", status_code=204, tags=["dashboard"])
async def open_session(body: SessionRequest, request: Request, response: Response) -> None:
    """Exchange an admin API key for a dashboard session cookie."""
    db: Database = request.app.state.db
    key = await verify_key(db, body.key)
    if key is None or not key.admin:
        raise ApiError(401, "auth.invalid_key", "that is not a valid admin API key")
    token = secrets.token_urlsafe(32)
    seconds = request.app.state.settings.observability.session_hours * 3600
    await db.execute(
        QUERIES["open_dashboard_session"],
        {
            "token_hash": _token_hash(token),
            "key_id": key.id,
            "subject": key.owner,
            "seconds": seconds,
        },
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(seconds),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


@router.delete("/v1/dashboard/session", status_code=204, tags=["dashboard"])
async def close_session(request: Request, response: Response) -> None:
    """Sign out: the session is deleted, the cookie cleared."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await request.app.state.db.execute(
            QUERIES["close_dashboard_session"], {"token_hash": _token_hash(token)}
        )
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/v1/dashboard/summary", tags=["dashboard"])
async def summary(request: Request, _: Admin) -> dict[str, Any]:
    """States, queue, workers and what they hold, alerts, latest failures, usage."""
    return await dashboard.summary(request.app.state.db, request.app.state.settings)


@router.get("/v1/dashboard/series", tags=["dashboard"])
async def series(
    request: Request, _: Admin, minutes: Annotated[int, Query(ge=5, le=1440)] = 60
) -> dict[str, Any]:
    """Per-minute throughput, failures by code and stage latency (from the rollup)."""
    return await dashboard.series(request.app.state.db, minutes)


@router.get("/v1/dashboard/jobs", tags=["dashboard"])
async def jobs(
    request: Request,
    _: Admin,
    state: str | None = None,
    code: str | None = None,
    owner: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=dashboard.MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """Jobs of every owner, newest first, filtered; ``next`` pages on (``before=``)."""
    try:
        found = dashboard.JobFilter(state, code, owner, q, before, limit)
        return await dashboard.jobs(request.app.state.db, found)
    except ValueError as exc:
        raise ApiError(422, "request.invalid", "before: not a cursor from this API") from exc


@router.get("/v1/dashboard/jobs/{job_id}", tags=["dashboard"])
async def job(request: Request, _: Admin, job_id: uuid.UUID) -> dict[str, Any]:
    """One job with its timeline (events), error, usage and chunks."""
    found = await dashboard.job_detail(request.app.state.db, job_id)
    if found is None:
        raise ApiError(404, "job.not_found", f"no job {job_id}")
    return found


@router.get("/v1/dashboard/choices", tags=["dashboard"])
async def choices(request: Request, _: Admin) -> dict[str, list[str]]:
    """Values for the jobs table's filters: error codes and owners seen."""
    return await dashboard.filter_choices(request.app.state.db)


# Not in the OpenAPI schema: a stream that never ends is no request/response pair to test.
@router.get("/v1/dashboard/events", include_in_schema=False)
async def events(request: Request, _: Admin) -> StreamingResponse:
    """Server-sent events: ``change`` (with the newest job event id) whenever jobs move."""
    watch = _event_watch(request.app)

    async def stream() -> AsyncIterator[str]:
        seen = watch.latest
        yield f"event: change\ndata: {json.dumps({'latest': seen})}\n\n"
        while True:
            latest = await watch.wait_past(seen, STREAM_HEARTBEAT_SECONDS)
            if latest > seen:
                seen = latest
                yield f"event: change\ndata: {json.dumps({'latest': seen})}\n\n"
            else:
                yield ": keep-alive\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get("/v1/alerts", tags=["alerts"])
async def alerts(request: Request, _: Admin) -> dict[str, Any]:
    """Evaluate every alert rule now; transitions are recorded (and POSTed to the webhook)."""
    statuses = await evaluate(request.app.state.db, request.app.state.settings)
    return {
        "alerts": [s.to_json() for s in statuses],
        "firing": sum(s.firing for s in statuses),
    }
