"""One error shape for every 4xx and 5xx: ``{"error": {"code", "message", "request_id"}}``.

Routes raise ``ApiError`` (or let an ``IngestdError`` through); FastAPI's validation errors,
unknown routes and unexpected exceptions are mapped here too, so a client parses one shape and
never sees a stack trace. Every answer carries ``X-Request-ID``.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingestd.errors import Conflict, IngestdError, NotFound, PermanentError, TransientError
from ingestd.redact import redact

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"

# Codes for the statuses Starlette raises on its own (unknown route, wrong method, ...).
_HTTP_CODES = {
    400: "request.bad",
    401: "auth.required",
    403: "auth.forbidden",
    404: "http.not_found",
    405: "http.method_not_allowed",
    413: "request.too_large",
    415: "request.unsupported_media_type",
    422: "request.invalid",
}


class ApiError(Exception):
    """An answer other than success: a status, a stable code and a message a person can act on."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    # Messages may quote a driver's or vendor's error: through the one redaction function.
    return {"error": {"code": code, "message": redact(message), "request_id": request_id}}


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    request_id = request_id_of(request)
    return JSONResponse(
        error_body(code, message, request_id),
        status_code=status,
        headers={**(headers or {}), REQUEST_ID_HEADER: request_id},
    )


def status_of(exc: IngestdError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, TransientError):
        return 503
    if isinstance(exc, PermanentError):
        return 422
    return 500


def _validation_message(exc: RequestValidationError) -> str:
    """The first problem, located; the offending input is not echoed (it may be a secret)."""
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    async def on_ingestd_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, IngestdError)
        return error_response(request, status_of(exc), exc.code, exc.message)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc.__cause__, ApiError):  # a body limit hit while FastAPI read the body
            return await on_api_error(request, exc.__cause__)
        code = _HTTP_CODES.get(exc.status_code, f"http.{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        return error_response(request, exc.status_code, code, message, dict(exc.headers or {}))

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, 422, "request.invalid", _validation_message(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.unexpected_error", exc_info=exc, path=request.url.path)
        return error_response(request, 500, "internal", "an unexpected error; see the server log")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(IngestdError, on_ingestd_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
