"""LlamaParse webhooks: the ``LC-Signature`` HMAC, and the shape of the event a webhook delivers.

LlamaParse signs a webhook body with the job's ``webhook_signing_secret``: the header
``LC-Signature: sha256=<hex of HMAC-SHA256(secret, raw body)>``. :func:`sign_llamaparse` computes it
(the mock server signs with it), :func:`verify_llamaparse_signature` checks it in constant time
(the ``ingestd serve`` webhook route verifies with it, over the raw bytes, before parsing anything).

The body only names the job (``{"event_id", "event_type", "timestamp", "data": {"id", "job_id"}}``);
the result is fetched afterwards. Webhooks may be duplicated, reordered, late or lost, so a receiver
dedupes on ``event_id``, never moves a job backwards, and keeps polling as a fallback. The
``timestamp`` is covered by the signature: :func:`check_timestamp` refuses an event signed too
long ago (or too far ahead), so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ingestd.errors import PermanentError

SIGNATURE_HEADER = "LC-Signature"
SIGNATURE_PREFIX = "sha256="
EVENT_ID_HEADER = "X-Webhook-Event-ID"
EVENT_TYPE_HEADER = "X-Webhook-Event-Type"
USER_AGENT = "llamaindex-webhook-service/1.0"

# Every event a parse job can send; the last four end the job.
PARSE_EVENTS = (
    "parse.pending",
    "parse.running",
    "parse.success",
    "parse.partial_success",
    "parse.error",
    "parse.cancelled",
)
TERMINAL_EVENTS = frozenset(PARSE_EVENTS[2:])

RemoteState = Literal["pending", "running", "completed", "failed", "cancelled"]

_EVENT_STATES: dict[str, RemoteState] = {
    "parse.pending": "pending",
    "parse.running": "running",
    "parse.success": "completed",
    "parse.partial_success": "completed",
    "parse.error": "failed",
    "parse.cancelled": "cancelled",
}


def sign_llamaparse(secret: str, body: bytes) -> str:
    """The ``LC-Signature`` value for ``body``: ``"sha256=" + hex(HMAC-SHA256(secret, body))``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_llamaparse_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the right ``LC-Signature`` for ``body``; constant time in the digest.

    A missing header, a missing ``sha256=`` prefix or an empty secret never verifies. The hex digest
    is compared case-insensitively (``hmac.compare_digest`` on the lower-cased ASCII bytes).
    """
    if not secret or not header:
        return False
    value = header.strip()
    if not value.lower().startswith(SIGNATURE_PREFIX):
        return False
    expected = sign_llamaparse(secret, body).encode("ascii")
    given = (SIGNATURE_PREFIX + value[len(SIGNATURE_PREFIX) :].lower()).encode("utf-8")
    return hmac.compare_digest(expected, given)


class LlamaParseWebhookData(BaseModel):
    """``data`` of a webhook event: the job it is about (``id`` and ``job_id`` hold the same)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = None
    job_id: str | None = None


class LlamaParseWebhookEvent(BaseModel):
    """One webhook delivery's body. Unknown fields are kept, unknown event types are allowed."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event_id: str
    event_type: str
    timestamp: float
    data: LlamaParseWebhookData

    @property
    def remote_job_id(self) -> str:
        """The LlamaParse job this event is about."""
        job_id = self.data.job_id or self.data.id
        if not job_id:  # ruled out by parse_llamaparse_webhook
            raise ValueError("webhook event names no job")
        return job_id

    @property
    def remote_state(self) -> RemoteState | None:
        """The job state this event reports, normalised; ``None`` for an unknown event type."""
        return _EVENT_STATES.get(self.event_type)

    @property
    def is_terminal(self) -> bool:
        return self.event_type in TERMINAL_EVENTS


def parse_llamaparse_webhook(body: bytes) -> LlamaParseWebhookEvent:
    """Parse a (verified) webhook body; ``PermanentError("webhook.invalid_body")`` when malformed.

    Accepts the event as a JSON object, and as a JSON string holding that object (the vendor's
    ``webhook_output_format: "string"`` may deliver it so). Messages name the fields at fault,
    never the parser's own text (which would echo the body back).
    """
    try:
        payload = json.loads(body)
        if isinstance(payload, str):
            payload = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise PermanentError("webhook.invalid_body", "the body is not valid JSON") from exc
    try:
        event = LlamaParseWebhookEvent.model_validate(payload)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
        raise PermanentError(
            "webhook.invalid_body",
            "not a LlamaParse webhook event: missing or invalid " + ", ".join(fields[:5]),
        ) from exc
    if not (event.data.job_id or event.data.id):
        raise PermanentError("webhook.invalid_body", "the webhook event names no job")
    return event


def check_timestamp(event: LlamaParseWebhookEvent, now: float, tolerance_seconds: float) -> None:
    """Raise ``webhook.stale`` unless the event was signed within ``tolerance_seconds`` of ``now``.

    Both ways: a clock a little ahead is fine, an event from the future is as suspect as an old one.
    """
    if not math.isfinite(event.timestamp) or abs(now - event.timestamp) > tolerance_seconds:
        raise PermanentError(
            "webhook.stale",
            f"the event's timestamp is not within {tolerance_seconds:g} s of this server's "
            "clock; replayed or delayed deliveries are refused (check both clocks)",
        )
