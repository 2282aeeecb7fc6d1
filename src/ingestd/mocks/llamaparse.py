"""Mock LlamaParse server: the v2 and v1 parse APIs, offline, with the vendor's failures on demand.

Serves the routes of shared/design/EXTERNAL_APIS.md so that ingestd's client and the vendor's own
SDKs (``llama-cloud`` v2, ``llama-cloud-services`` v1) work against it unchanged. A job goes
PENDING -> RUNNING -> COMPLETED | FAILED | CANCELLED (v1 reads PENDING | SUCCESS |
PARTIAL_SUCCESS | ERROR | CANCELLED); its pages come from parsing the uploaded bytes with ingestd's
local parsers in a worker thread, and it takes ``latency.fixed_ms + pages * latency.per_unit_ms``
(default 100 ms + 50 ms per page). Credits per page by tier, 401 for a wrong key, 402 once the
``quota`` of credits is spent, 422 in FastAPI's shape, 429 from an upload budget (50 per 10 s).
Webhooks go to the job's first ``webhook_configurations`` entry, signed with ``LC-Signature``,
delivered with up to 3 attempts and a 1/2/4 s backoff (``backoff_scale`` shrinks it for tests), and
can be delayed, dropped, duplicated, reordered or badly signed. Generic controls (request faults,
rate budgets, counters, ``/_admin`` routes) come from :mod:`ingestd.mocks.faults`; this module adds
``GET /_admin/jobs`` and ``GET /_admin/webhooks``. See docs/reference/mock-llamaparse.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile as FormFile

from ingestd.errors import IngestdError
from ingestd.mocks.faults import (
    TRANSPORT_FAULTS,
    FaultKind,
    deep_merge,
    load_behaviour,
    mount_admin,
    parse_fault_spec,
    serve_transport_fault,
)
from ingestd.mocks.llamaparse_behaviour import (
    TIER_CREDITS,
    Arm,
    LlamaParseBehaviour,
    LlamaParseState,
    WebhookDelivery,
    WebhookFaults,
)
from ingestd.mocks.llamaparse_jobs import (
    PROJECT_ID,
    TERMINAL_STATUSES,
    MockFile,
    MockJob,
    MockPage,
    PageRanges,
    ParseConfiguration,
    WebhookConfiguration,
    WebhookTarget,
    iso_time,
    parse_pages,
    parse_target_pages,
    select_pages,
    v1_job,
    v1_result,
    v1_status,
    v2_expansions,
    v2_job,
    webhook_target,
)
from ingestd.mocks.llamaparse_webhooks import WebhookSender

__all__ = [
    "TIER_CREDITS",
    "Arm",
    "LlamaParseBehaviour",
    "LlamaParseState",
    "MockLlamaParse",
    "WebhookDelivery",
    "WebhookFaults",
    "build_behaviour",
    "create_app",
    "serve",
]

LATEST_VERSIONS = {
    "fast": "2026-06-15",
    "cost_effective": "2026-09-28",
    "agentic": "2026-10-16",
    "agentic_plus": "2026-09-28",
}
DEFAULT_PORT = 8902


# -- errors in the vendor's shapes ------------------------------------------------------------


class Answer(Exception):
    """Raised by a dependency or handler to answer at once with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer(JSONResponse({"detail": detail}, status_code=status, headers=headers))


def _invalid(
    loc: Sequence[str | int], msg: str, kind: str = "value_error"
) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": tuple(loc), "msg": msg, "input": None}])


def _located(exc: ValidationError, prefix: Sequence[str]) -> RequestValidationError:
    errors = exc.errors(include_url=False, include_context=False)
    return RequestValidationError([{**e, "loc": (*prefix, *e["loc"])} for e in errors])


# -- the server -------------------------------------------------------------------------------


class MockLlamaParse:
    """Jobs, files, the job runner and the webhook sender behind the routes."""

    def __init__(self, state: LlamaParseState) -> None:
        self.state = state
        self.jobs: dict[str, MockJob] = {}
        self.files: dict[str, MockFile] = {}
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.webhooks = WebhookSender(state, self.spawn)

    # admission

    def admit_upload(self, request: Request) -> None:
        """429 when the upload budget is spent, 402 when the credits are."""
        decision = self.state.take_rate_budget(requests=1)
        if not decision.allowed:
            self.state.counters.add("rate_limited")
            self.state.counters.add_error("rate_limited")
            headers = {}
            if self.state.behaviour.retry_after_header:
                headers["Retry-After"] = str(max(1, round(decision.retry_after + 0.5)))
            raise _detail(429, "Rate limit exceeded: too many parse requests", headers)
        if self.state.credits_exhausted():
            self.state.counters.add_error("insufficient_credits")
            raise _detail(402, "Insufficient credits: your credit balance is exhausted")

    def new_job(self, job: MockJob, request: Request) -> MockJob:
        job.fail_a_page = bool(getattr(request.state, "partial_success", False))
        job.project_id = request.query_params.get("project_id") or PROJECT_ID
        with self._lock:
            self.jobs[job.id] = job
        self.state.counters.add("uploads")
        self.webhooks.emit(job, "parse.pending")
        job.task = self.spawn(self.run(job))
        return job

    def job(self, job_id: str) -> MockJob:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise _detail(404, f"Job {job_id} not found")
        return job

    # running a job

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self, job: MockJob) -> None:
        try:
            while self.state.behaviour.hold_jobs:
                await asyncio.sleep(0.02)
            await self._sleep(self.state.latency_seconds(0))
            self._move(job, "RUNNING")
            parsed = await asyncio.to_thread(parse_pages, job.data, job.filename)
            pages = select_pages(parsed, job)
            await self._sleep(self.state.behaviour.latency.per_unit_ms * len(pages) / 1000)
            if self.state.fires("fail_jobs", self.state.behaviour.fail_jobs):
                raise RuntimeError("injected failure: the document could not be parsed")
            self._complete(job, pages)
        except IngestdError as exc:
            self._fail(job, exc.message, exc.code.upper().replace(".", "_"))
        except Exception as exc:  # a parser bug or an injected failure: the job fails, not us
            self._fail(job, str(exc) or type(exc).__name__, "PARSE_ERROR")
        finally:
            job.data = b""  # the upload is not kept once the job is over

    @staticmethod
    async def _sleep(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def _move(self, job: MockJob, status: str) -> bool:
        with self._lock:
            if job.status in TERMINAL_STATUSES:
                return False
            job.status, job.updated_at = status, datetime.now(UTC)
        event = {
            "RUNNING": "parse.running",
            "FAILED": "parse.error",
            "CANCELLED": "parse.cancelled",
        }
        if status == "COMPLETED":
            self.webhooks.emit(job, "parse.partial_success" if job.partial else "parse.success")
        else:
            self.webhooks.emit(job, event[status])
        return True

    def _complete(self, job: MockJob, pages: list[MockPage]) -> None:
        if job.fail_a_page and pages:
            pages[0].error = "injected fault: this page could not be parsed"
        credits = len(pages) * self.state.behaviour.credits_per_page.get(job.tier, 1.0)
        job.pages, job.credits = pages, credits
        if self._move(job, "COMPLETED"):
            self.state.counters.add("pages", len(pages))
            self.state.counters.add("jobs_completed")
            self.state.spend_credits(credits)

    def _fail(self, job: MockJob, message: str, code: str) -> None:
        job.error_message, job.error_code = message, code
        if self._move(job, "FAILED"):
            self.state.counters.add("jobs_failed")

    def cancel(self, job: MockJob) -> None:
        if self._move(job, "CANCELLED"):
            self.state.counters.add("jobs_cancelled")
            if job.task is not None:
                job.task.cancel()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhooks.close()


# -- routes -----------------------------------------------------------------------------------


def _guard_dependency(mock: MockLlamaParse) -> Any:
    state = mock.state

    async def guard(request: Request) -> None:
        """Count, delay, inject request faults, check the key: before every vendor route."""
        state.counters.add("requests")
        await mock._sleep(state.request_delay())
        fault = state.draw_fault(request.url.path)
        if fault in TRANSPORT_FAULTS:
            raise Answer(await serve_transport_fault(fault, request, state, _fault_body))
        if fault is FaultKind.MALFORMED_JSON:
            state.counters.add_error(fault.value)
            raise Answer(Response(b'{"job": {"id": ', media_type="application/json"))
        request.state.partial_success = fault is FaultKind.PARTIAL_SUCCESS
        if not state.accepts_key(request.headers.get("authorization")):
            state.counters.add_error("invalid_api_key")
            raise _detail(401, "Invalid authentication token")
        project = request.query_params.get("project_id")
        if project and state.behaviour.project_id and project != state.behaviour.project_id:
            state.counters.add_error("forbidden_project")
            raise _detail(403, f"You do not have access to project {project}")

    return guard


def _fault_body(status: int) -> dict[str, Any]:
    return {"detail": f"injected fault: HTTP {status}"}


def _expand_values(values: list[str]) -> set[str]:
    return {part.strip() for value in values for part in value.split(",") if part.strip()}


def _v2_router(mock: MockLlamaParse) -> APIRouter:
    router = APIRouter(prefix="/api/v2/parse")

    @router.post("/upload")
    async def upload(
        request: Request, file: Annotated[UploadFile, File()], configuration: Annotated[str, Form()]
    ) -> dict[str, Any]:
        config = _configuration_from_form(configuration)
        mock.admit_upload(request)
        job = _v2_new_job(config, await file.read(), file.filename or "document")
        return v2_job(mock.new_job(job, request))

    @router.post("")
    async def create(request: Request) -> dict[str, Any]:
        config = _configuration_from_json(await request.body())
        if config.source_url:
            raise _detail(400, "source_url is not supported by the offline mock: upload the file")
        if not config.file_id:
            raise _invalid(("body", "file_id"), "Provide file_id or source_url", "missing")
        stored = mock.files.get(config.file_id)
        if stored is None:
            raise _detail(404, f"File {config.file_id} not found")
        mock.admit_upload(request)
        job = _v2_new_job(config, stored.data, stored.name)
        return v2_job(mock.new_job(job, request))

    @router.get("")
    async def list_jobs(
        status: str | None = None,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: str | None = None,
        job_ids: Annotated[list[str] | None, Query()] = None,
    ) -> dict[str, Any]:
        jobs = [j for j in list(mock.jobs.values()) if status is None or j.status == status]
        jobs = [j for j in jobs if not job_ids or j.id in job_ids]
        start = int(page_token) if page_token and page_token.isdigit() else 0
        page = jobs[start : start + page_size]
        more = start + page_size < len(jobs)
        return {
            "items": [v2_job(j) for j in page],
            "next_page_token": str(start + page_size) if more else None,
            "total_size": len(jobs),
        }

    @router.get("/versions")
    async def versions() -> dict[str, Any]:
        return {tier: [v] for tier, v in LATEST_VERSIONS.items()} | {"latest": LATEST_VERSIONS}

    @router.get("/{job_id}")
    async def get(
        job_id: str, expand: Annotated[list[str] | None, Query()] = None
    ) -> dict[str, Any]:
        job = mock.job(job_id)
        return {"job": v2_job(job), **v2_expansions(job, _expand_values(expand or []))}

    @router.post("/{job_id}/cancel")
    async def cancel(job_id: str) -> dict[str, Any]:
        job = mock.job(job_id)
        mock.cancel(job)
        return v2_job(job)

    @router.delete("/{job_id}")
    async def delete(job_id: str) -> dict[str, Any]:
        job = mock.job(job_id)
        mock.cancel(job)
        with mock._lock:
            mock.jobs.pop(job_id, None)
        return {"id": job.id, "project_id": job.project_id}

    return router


def _configuration_from_form(raw: str) -> ParseConfiguration:
    try:
        return ParseConfiguration.model_validate_json(raw)
    except ValidationError as exc:
        raise _located(exc, ("body", "configuration")) from exc


def _configuration_from_json(raw: bytes) -> ParseConfiguration:
    try:
        return ParseConfiguration.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise _located(exc, ("body",)) from exc


def _v2_new_job(config: ParseConfiguration, data: bytes, filename: str) -> MockJob:
    ranges = config.page_ranges or PageRanges()
    try:
        targets = parse_target_pages(ranges.target_pages, True) if ranges.target_pages else None
    except ValueError as exc:
        loc = ("body", "configuration", "page_ranges", "target_pages")
        raise _invalid(loc, str(exc)) from exc
    return MockJob(
        id=str(uuid.uuid4()),
        api="v2",
        tier=config.tier,
        version=config.version,
        filename=filename,
        data=data,
        webhook=webhook_target(config.webhook_configurations),
        max_pages=ranges.max_pages,
        target_pages=targets,
        user_metadata=config.user_metadata,
    )


def _files_router(mock: MockLlamaParse) -> APIRouter:
    router = APIRouter(prefix="/api/v1/beta/files")

    @router.post("")
    async def upload_file(
        file: Annotated[UploadFile, File()],
        purpose: Annotated[str, Form()],
        external_file_id: Annotated[str | None, Form()] = None,
    ) -> dict[str, Any]:
        name = file.filename or "document"
        stored = MockFile(str(uuid.uuid4()), name, await file.read(), purpose, external_file_id)
        mock.files[stored.id] = stored
        return {
            "id": stored.id,
            "name": name,
            "project_id": PROJECT_ID,
            "file_type": name.rsplit(".", 1)[-1].lower() if "." in name else None,
            "file_size": len(stored.data),
            "purpose": purpose,
            "external_file_id": external_file_id,
            "created_at": iso_time(stored.created_at),
            "last_modified_at": iso_time(stored.created_at),
            "expires_at": None,
        }

    return router


def _v1_router(mock: MockLlamaParse, prefix: str) -> APIRouter:
    router = APIRouter(prefix=prefix)

    @router.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        async with request.form() as form:
            upload = form.get("file")
            if form.get("input_url") or form.get("input_s3_path"):
                raise _detail(400, "input_url is not supported by the offline mock: upload a file")
            if not isinstance(upload, FormFile):
                raise _detail(400, "A file or an input_url must be provided")
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            job = _v1_new_job(fields, await upload.read(), upload.filename or "document")
        mock.admit_upload(request)
        return v1_job(mock.new_job(job, request))

    @router.get("/job/{job_id}")
    async def status(job_id: str) -> dict[str, Any]:
        return v1_job(mock.job(job_id))

    @router.get("/job/{job_id}/result/{kind}")
    async def result(job_id: str, kind: Literal["markdown", "text", "json"]) -> dict[str, Any]:
        job = mock.job(job_id)
        if job.status != "COMPLETED":
            raise _detail(404, f"Job {job_id} has no result (status {v1_status(job)})")
        return v1_result(job, kind)

    return router


def _v1_new_job(fields: dict[str, str], data: bytes, filename: str) -> MockJob:
    tier = fields.get("tier") or "cost_effective"
    if tier not in TIER_CREDITS:
        raise _invalid(("body", "tier"), f"Input should be one of {sorted(TIER_CREDITS)}")
    try:
        max_pages = int(fields["max_pages"]) if fields.get("max_pages") else None
        target = fields.get("target_pages")
        targets = parse_target_pages(target, one_based=False) if target else None
        hooks = json.loads(fields.get("webhook_configurations") or "[]")
        configs = [WebhookConfiguration.model_validate(h) for h in hooks]
    except (ValueError, TypeError) as exc:
        raise _invalid(("body",), f"invalid form field: {exc}") from exc
    webhook = webhook_target(configs)
    if webhook is None and fields.get("webhook_url"):
        webhook = WebhookTarget(fields["webhook_url"], legacy=True)
    return MockJob(
        id=str(uuid.uuid4()),
        api="v1",
        tier=tier,
        version=fields.get("version") or "latest",
        filename=filename,
        data=data,
        webhook=webhook,
        max_pages=max_pages,
        target_pages=targets,
    )


def _admin_router(mock: MockLlamaParse) -> APIRouter:
    router = APIRouter(prefix="/_admin", include_in_schema=False)

    @router.get("/jobs")
    async def jobs() -> list[dict[str, Any]]:
        return [
            {**v2_job(j), "api": j.api, "pages": len(j.pages), "v1_status": v1_status(j)}
            for j in list(mock.jobs.values())
        ]

    @router.get("/webhooks")
    async def webhooks() -> list[dict[str, Any]]:
        return list(mock.webhooks.deliveries)

    return router


def create_app(
    behaviour: LlamaParseBehaviour | None = None, *, state: LlamaParseState | None = None
) -> FastAPI:
    """The mock LlamaParse ASGI app. ``app.state.mock`` is its :class:`LlamaParseState` (counters,
    behaviour), ``app.state.llamaparse`` the :class:`MockLlamaParse` (jobs, webhooks)."""
    state = state or LlamaParseState(behaviour or LlamaParseBehaviour())
    mock = MockLlamaParse(state)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await mock.close()

    app = FastAPI(title="mock LlamaParse", lifespan=lifespan)
    app.state.mock = state
    app.state.llamaparse = mock

    async def answer(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Answer)
        return exc.response

    app.add_exception_handler(Answer, answer)
    guard = Depends(_guard_dependency(mock))
    for router in (
        _v2_router(mock),
        _files_router(mock),
        _v1_router(mock, "/api/parsing"),
        _v1_router(mock, "/api/v1/parsing"),
    ):
        app.include_router(router, dependencies=[guard])
    app.include_router(_admin_router(mock))
    mount_admin(app, state)
    return app


def build_behaviour(
    behaviour: LlamaParseBehaviour | str | Path | None = None,
    *,
    api_key: str | None = None,
    latency_ms: float | None = None,
    per_page_ms: float | None = None,
    uploads_per_window: int | None = None,
    window_seconds: float | None = None,
    retry_after: bool | None = None,
    quota_credits: float | None = None,
    faults: Sequence[str] = (),
    webhook_backoff_scale: float | None = None,
    seed: int | None = None,
) -> LlamaParseBehaviour:
    """A behaviour from a model, a JSON file path or JSON text, with CLI-style overrides on top.

    ``faults`` are request-fault specs such as ``"http_503:0.1"`` or ``"timeout:count=2"``
    (:func:`ingestd.mocks.faults.parse_fault_spec`); given ones replace the file's list.
    """
    base = LlamaParseBehaviour().model_dump(mode="json")  # partial nested settings keep defaults
    if isinstance(behaviour, LlamaParseBehaviour):
        base = behaviour.model_dump(mode="json")
    elif behaviour is not None:
        text = str(behaviour)
        is_json = text.lstrip().startswith("{")
        base = deep_merge(base, json.loads(text if is_json else Path(text).read_text("utf-8")))
    overrides: dict[str, Any] = {
        "api_key": api_key,
        "seed": seed,
        "quota": quota_credits,
        "retry_after_header": retry_after,
        "latency": {"fixed_ms": latency_ms, "per_unit_ms": per_page_ms},
        "rate_limits": {
            "requests_per_minute": uploads_per_window,
            "window_seconds": window_seconds,
        },
        "webhook_delivery": {"backoff_scale": webhook_backoff_scale},
    }
    if faults:
        overrides["faults"] = [parse_fault_spec(f).model_dump(mode="json") for f in faults]
    return load_behaviour(LlamaParseBehaviour, json.dumps(base), overrides)


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    behaviour: LlamaParseBehaviour | None = None,
    log_level: str = "info",
) -> None:
    """Run the mock under uvicorn until interrupted (``ingestd mock llamaparse``); build the
    behaviour from a file or CLI-style flags with :func:`build_behaviour`."""
    app = create_app(behaviour)
    uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="on")
