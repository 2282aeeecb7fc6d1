"""``POST /v1/webhooks/llamaparse``: verify, dedupe, wake the waiting job. Never moves a job back.

The signature (``LC-Signature``, HMAC-SHA256 of the raw body with the deployment's secret) is
checked in constant time before the body is even parsed; a bad or missing signature is answered
401 and changes nothing. A duplicate delivery (same ``event_id``) is a no-op answered 200, so the
vendor stops retrying.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ingestd.config import LlamaParseSettings, Settings
from ingestd.errors import PermanentError
from ingestd.remote_parse import receive_webhook
from ingestd.webhooks import (
    SIGNATURE_HEADER,
    parse_llamaparse_webhook,
    verify_llamaparse_signature,
)

log = structlog.get_logger(__name__)
router = APIRouter()


def webhook_secret(settings: Settings) -> str | None:
    parser = settings.parser
    if isinstance(parser, LlamaParseSettings) and parser.webhook_secret is not None:
        return parser.webhook_secret.get_secret_value()
    return None


@router.post("/v1/webhooks/llamaparse")
async def llamaparse_webhook(request: Request) -> JSONResponse:
    secret = webhook_secret(request.app.state.settings)
    if secret is None:
        return _answer(
            404, "webhook.not_configured", "this deployment has no LlamaParse webhook secret"
        )
    body = await request.body()
    if not verify_llamaparse_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
        log.warning("webhook.bad_signature", provider="llamaparse")
        return _answer(401, "webhook.bad_signature", "LC-Signature does not match the body")
    try:
        event = parse_llamaparse_webhook(body)
    except PermanentError as exc:
        return _answer(400, exc.code, exc.message)
    outcome = await receive_webhook(
        request.app.state.db,
        event_id=event.event_id,
        event_type=event.event_type,
        remote_job_id=event.remote_job_id,
        terminal=event.is_terminal,
    )
    log.info(
        "webhook.received",
        provider="llamaparse",
        event_id=event.event_id,
        event_type=event.event_type,
        remote_job_id=event.remote_job_id,
        outcome=outcome,
    )
    return JSONResponse({"outcome": outcome}, status_code=200)


def _answer(status: int, code: str, message: str) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status)
