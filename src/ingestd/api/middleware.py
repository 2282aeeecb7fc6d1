"""ASGI middleware: a request id on every request and answer, and limits on headers and bodies.

Plain ASGI (not Starlette's ``BaseHTTPMiddleware``) so streamed uploads and server-sent events
pass through untouched. The body limit is enforced while the body streams in: a request that
announces a larger ``Content-Length`` is refused before it is read, and one that sends more than
it may is cut off at the limit.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingestd.api.errors import REQUEST_ID_HEADER, ApiError, error_body
from ingestd.config import ApiSettings

_GOOD_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HEADER_NAME = REQUEST_ID_HEADER.lower().encode()


def new_request_id(incoming: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh one."""
    if incoming and _GOOD_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Request id (``X-Request-ID`` in and out, bound into every log line), header and body
    limits. ``body_limit(scope)`` gives the largest body a route accepts (None: no limit here)."""

    def __init__(
        self, app: ASGIApp, settings: ApiSettings, body_limit: Callable[[Scope], int | None]
    ) -> None:
        self.app = app
        self.settings = settings
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_id = headers.get(_HEADER_NAME)
        request_id = new_request_id(raw_id.decode("latin-1") if raw_id else None)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER_NAME]
                out.append((_HEADER_NAME, request_id.encode()))
                message = {**message, "headers": out}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            refusal = self._refusal(scope)
            if refusal is not None:
                await _send_error(send_with_id, request_id, *refusal)
                return
            limit = self.body_limit(scope)
            if limit is not None:
                receive = _limited(receive, limit)
            await self.app(scope, receive, send_with_id)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if size > self.settings.max_header_bytes:
            return (
                431,
                "request.headers_too_large",
                f"the request's headers exceed {self.settings.max_header_bytes} bytes",
            )
        limit = self.body_limit(scope)
        length = dict(scope["headers"]).get(b"content-length")
        if limit is not None and length is not None and length.isdigit() and int(length) > limit:
            return 413, "request.too_large", f"the request body exceeds {limit} bytes"
        return None


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ApiError(413, "request.too_large", f"the request body exceeds {limit} bytes")
        return message

    return receive_limited


async def _send_error(send: Send, request_id: str, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message, request_id)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
