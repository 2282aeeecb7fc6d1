"""``POST /v1/webhooks/llamaparse``: verify, dedupe, wake the waiting job. Never moves a job back.

In this order, each step before any work the next one costs:

1. the body is read up to ``webhook_max_body_bytes`` (a larger ``Content-Length`` is refused
   before reading, a body that streams past the cap is cut off there): 413 ``webhook.too_large``;
2. the signature (``LC-Signature``, HMAC-SHA256 of the *raw* body with the deployment's secret) is
   checked in constant time before the body is parsed: 401 ``webhook.bad_signature``;
3. the JSON is parsed (400 ``webhook.invalid_body``, naming fields, never echoing the parser) and
   its signed ``timestamp`` must be within ``webhook_tolerance_seconds``: 401 ``webhook.stale``;
4. a remote job that is not ours is 404 ``webhook.unknown_job`` and stores nothing. While one
   of our submits has not stored its remote id yet (the vendor can announce a job before the
   submit's answer reaches us), the webhook waits up to ``webhook_pending_wait_seconds`` for it,
   then answers 503 ``webhook.not_ready`` (``Retry-After: 1``; the vendor retries), storing
   nothing either way (docs/decisions/0005-input-limits.md);
5. a duplicate delivery (same ``event_id``) is a no-op answered 200, so the vendor stops retrying.

Errors have the API's one shape: ``{"error": {"code", "message", "request_id"}}``.
"""

from __future__ import annotations

import time

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingestd.api.errors import error_response
from ingestd.config import LlamaParseSettings, Settings
from ingestd.errors import PermanentError
from ingestd.remote_parse import receive_webhook
from ingestd.webhooks import (
    SIGNATURE_HEADER,
    check_timestamp,
    parse_llamaparse_webhook,
    verify_llamaparse_signature,
)

log = structlog.get_logger(__name__)
router = APIRouter()


class _TooLarge(Exception):
    pass


def webhook_settings(settings: Settings) -> LlamaParseSettings | None:
    """The LlamaParse settings, when they configure a webhook secret."""
    parser = settings.parser
    if isinstance(parser, LlamaParseSettings) and parser.webhook_secret is not None:
        return parser
    return None


@router.post("/v1/webhooks/llamaparse")
async def llamaparse_webhook(request: Request) -> JSONResponse:
    config = webhook_settings(request.app.state.settings)
    secret = config.webhook_secret.get_secret_value() if config and config.webhook_secret else ""
    if config is None or not secret:
        return error_response(
            request, 404, "webhook.not_configured", "this deployment has no LlamaParse webhook"
        )
    try:
        body = await read_capped(request, config.webhook_max_body_bytes)
    except _TooLarge:
        log.warning("webhook.too_large", provider="llamaparse")
        return error_response(
            request,
            413,
            "webhook.too_large",
            f"a webhook body may have at most {config.webhook_max_body_bytes} bytes",
        )
    if not verify_llamaparse_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
        log.warning("webhook.bad_signature", provider="llamaparse")
        return error_response(
            request, 401, "webhook.bad_signature", "LC-Signature does not match the body"
        )
    try:
        event = parse_llamaparse_webhook(body)
        check_timestamp(event, time.time(), config.webhook_tolerance_seconds)
    except PermanentError as exc:
        status = 401 if exc.code == "webhook.stale" else 400
        log.warning(exc.code, provider="llamaparse")
        return error_response(request, status, exc.code, exc.message)
    outcome = await receive_webhook(
        request.app.state.db,
        event_id=event.event_id,
        event_type=event.event_type,
        remote_job_id=event.remote_job_id,
        terminal=event.is_terminal,
        pending_wait_seconds=config.webhook_pending_wait_seconds,
    )
    log.info(
        "webhook.received",
        provider="llamaparse",
        event_id=event.event_id,
        event_type=event.event_type,
        remote_job_id=event.remote_job_id,
        outcome=outcome,
    )
    if outcome == "unknown_job":
        return error_response(
            request, 404, "webhook.unknown_job", "no job waits on that remote job"
        )
    if outcome == "not_ready":
        message = "that remote job is not recorded yet (a submit is in flight); send it again"
        return error_response(request, 503, "webhook.not_ready", message, {"Retry-After": "1"})
    return JSONResponse({"outcome": outcome}, status_code=200)


async def read_capped(request: Request, max_bytes: int) -> bytes:
    """The body, or ``_TooLarge`` as soon as it is announced or seen to pass ``max_bytes``."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _TooLarge
    return bytes(body)
