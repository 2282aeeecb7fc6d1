"""Webhook delivery of the mock LlamaParse server, with the vendor's retries and injectable faults.

Each job event (``parse.pending`` ... ``parse.cancelled``) goes to the job's first webhook
configuration, if it asked for that event: a JSON body ``{event_id, event_type, timestamp,
data: {id, job_id}}`` with the vendor's headers and, given a secret, ``LC-Signature``. A delivery
makes up to ``attempts`` tries, waiting ``backoff_seconds[i-1] * backoff_scale`` before try i; any
2xx ends it. Faults, drawn once per event: ``drop`` (never sent), ``duplicate`` (sent twice, same
event id), ``reorder`` (a non-terminal event held back and sent after the job's terminal one),
``bad_signature`` (signed with a wrong secret), and ``delay_ms`` before every delivery. v1's legacy
``webhook_url`` gets the result itself (``{txt, md, json, images}``), unsigned. Every try is logged
(``deliveries``, served at ``GET /_admin/webhooks``) and counted.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from ingestd.mocks.llamaparse_behaviour import LlamaParseState
from ingestd.mocks.llamaparse_jobs import (
    V1_PAGE_SEPARATOR,
    MockJob,
    WebhookTarget,
    markdown_to_text,
    v1_json_page,
)
from ingestd.webhooks import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    TERMINAL_EVENTS,
    USER_AGENT,
    sign_llamaparse,
)

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
RESULT_EVENTS = frozenset({"parse.success", "parse.partial_success"})


class WebhookSender:
    """Turns job events into webhook deliveries (as tasks started by ``spawn``)."""

    def __init__(self, state: LlamaParseState, spawn: Spawn) -> None:
        self.state = state
        self.spawn = spawn
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=1000)
        self._http: httpx.AsyncClient | None = None

    def emit(self, job: MockJob, event_type: str) -> None:
        """Queue ``event_type`` for the job's webhook, applying drop and reorder faults."""
        target = job.webhook
        if target is None or (target.events and event_type not in target.events):
            return
        if target.legacy:
            if event_type in RESULT_EVENTS:
                self.spawn(self._send_legacy(job, target))
            return
        event = new_event(job.id, event_type)
        faults = self.state.behaviour.webhook_faults
        if self.state.fires("webhook.drop", faults.drop):
            self.state.counters.add("webhooks_dropped")
            self._log(event, target, attempt=0, outcome="dropped")
            return
        terminal = event_type in TERMINAL_EVENTS
        if not terminal and self.state.fires("webhook.reorder", faults.reorder):
            job.held_events.append(event)
            return
        batch = [event, *reversed(job.held_events)] if terminal else [event]
        if terminal:
            job.held_events = []
        self.spawn(self._send_in_order(target, batch))

    async def _send_in_order(self, target: WebhookTarget, events: list[dict[str, Any]]) -> None:
        for event in events:
            faults = self.state.behaviour.webhook_faults
            copies = 2 if self.state.fires("webhook.duplicate", faults.duplicate) else 1
            bad = self.state.fires("webhook.bad_signature", faults.bad_signature)
            if copies == 2:
                self.state.counters.add("webhooks_duplicated")
            if bad:
                self.state.counters.add("webhooks_bad_signature")
            body = json.dumps(event, separators=(",", ":")).encode()
            headers = signed_headers(target, event, body, bad_signature=bad)
            for _ in range(copies):
                await self._post_with_retries(target, event, body, headers)

    async def _send_legacy(self, job: MockJob, target: WebhookTarget) -> None:
        ok = [p for p in job.pages if not p.error]
        payload = {
            "txt": V1_PAGE_SEPARATOR.join(markdown_to_text(p.markdown) for p in ok),
            "md": V1_PAGE_SEPARATOR.join(p.markdown for p in ok),
            "json": [v1_json_page(p) for p in job.pages],
            "images": [],
        }
        event = {"event_id": str(uuid.uuid4()), "event_type": "legacy.result", "data": {}}
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        await self._post_with_retries(target, event, body, headers)

    async def _post_with_retries(
        self, target: WebhookTarget, event: dict[str, Any], body: bytes, headers: dict[str, str]
    ) -> None:
        plan = self.state.behaviour.webhook_delivery
        await _sleep(self.state.behaviour.webhook_faults.delay_ms / 1000)
        for attempt in range(1, plan.attempts + 1):
            if attempt > 1:
                backoff = plan.backoff_seconds[min(attempt - 2, len(plan.backoff_seconds) - 1)]
                await _sleep(backoff * plan.backoff_scale)
            self.state.counters.add("webhook_attempts")
            outcome = await self._post(target.url, body, headers, plan.timeout_seconds)
            self._log(event, target, attempt, outcome)
            if outcome.startswith("2"):
                self.state.counters.add("webhooks_sent")
                return
        self.state.counters.add("webhooks_failed")

    async def _post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> str:
        if self._http is None:
            self._http = httpx.AsyncClient()
        try:
            response = await self._http.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return f"error: {type(exc).__name__}"
        return str(response.status_code)

    def _log(
        self, event: dict[str, Any], target: WebhookTarget, attempt: int, outcome: str
    ) -> None:
        self.deliveries.append(
            {
                "event_id": event["event_id"],
                "event_type": event["event_type"],
                "job_id": event["data"].get("job_id"),
                "url": target.url,
                "attempt": attempt,
                "outcome": outcome,
                "at": time.time(),
            }
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def new_event(job_id: str, event_type: str) -> dict[str, Any]:
    """A webhook body as the vendor sends it."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "timestamp": time.time(),
        "data": {"id": job_id, "job_id": job_id},
    }


def signed_headers(
    target: WebhookTarget, event: dict[str, Any], body: bytes, *, bad_signature: bool = False
) -> dict[str, str]:
    """The vendor's webhook headers, the job's custom ones, and ``LC-Signature`` when it has a
    secret (or a wrong one, for the bad-signature fault)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event["event_id"],
        EVENT_TYPE_HEADER: event["event_type"],
        **target.headers,
    }
    if target.secret or bad_signature:
        secret = (target.secret or "") + ("-wrong" if bad_signature else "")
        headers[SIGNATURE_HEADER] = sign_llamaparse(secret, body)
    return headers


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)
