"""The LlamaParse webhook route over real HTTP (issue 7, finding 6): body cap before any work,
signed timestamps, unknown jobs stored nowhere (also while a submit is in flight), one error
shape with stable codes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from ingestd.api.app import create_app as create_api
from ingestd.app import App, open_app
from ingestd.config import LlamaParseSettings, Settings
from ingestd.ingest import Upload, ingest_uploads
from ingestd.mocks import BackgroundServer
from ingestd.webhooks import SIGNATURE_HEADER, sign_llamaparse

SECRET = "whsec-intake-test"
CAP = 4096
PENDING_WAIT = 2.0


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[App]:
    parser = LlamaParseSettings(
        api_key="llx-test",
        webhook_secret=SECRET,
        webhook_max_body_bytes=CAP,
        webhook_pending_wait_seconds=PENDING_WAIT,
    )
    async with open_app(make_settings(parser=parser)) as opened:
        yield opened


@pytest.fixture
def hook(app: App) -> Iterator[str]:
    with BackgroundServer(create_api(app.settings), lifespan="on") as server:
        yield server.url + "/v1/webhooks/llamaparse"


def body(job: str = "remote-1", **fields: Any) -> bytes:
    event = {"event_id": uuid.uuid4().hex, "event_type": "parse.success", "timestamp": time.time()}
    return json.dumps({**event, "data": {"id": job, "job_id": job}, **fields}).encode()


def post(url: str, content: Any, signed: bytes | None = None, **headers: str) -> httpx.Response:
    if signed is not None:
        headers[SIGNATURE_HEADER] = sign_llamaparse(SECRET, signed)
    return httpx.post(url, content=content, headers=headers, timeout=30)


def error_of(response: httpx.Response) -> str:
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id"} and error["request_id"]
    return str(error["code"])


async def receipt_count(app: App) -> int:
    rows = await app.db.fetch_all("SELECT count(*) AS n FROM webhook_receipts")
    return int(rows[0]["n"])


def test_a_body_past_the_cap_is_refused_before_it_is_read(hook: str) -> None:
    announced = post(hook, b"x" * (CAP + 1))
    assert (announced.status_code, error_of(announced)) == (413, "webhook.too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
        for _ in range(64):
            yield b"x" * 1024

    streamed = post(hook, chunks())
    assert (streamed.status_code, error_of(streamed)) == (413, "webhook.too_large")


def test_the_signature_is_checked_over_the_raw_body(hook: str) -> None:
    raw = body()
    reformatted = json.dumps(json.loads(raw), indent=2).encode()  # same JSON, other bytes
    response = post(hook, reformatted, signed=raw)
    assert (response.status_code, error_of(response)) == (401, "webhook.bad_signature")


async def test_a_stale_or_unknown_event_stores_nothing(app: App, hook: str) -> None:
    old = body(timestamp=946_684_800.0)  # 2000-01-01, correctly signed
    stale = post(hook, old, signed=old)
    assert (stale.status_code, error_of(stale)) == (401, "webhook.stale")
    unknown = body(job="not-ours")
    response = post(hook, unknown, signed=unknown)
    assert (response.status_code, error_of(response)) == (404, "webhook.unknown_job")
    assert await receipt_count(app) == 0


def test_malformed_json_gets_a_code_and_no_parser_text(hook: str) -> None:
    broken = b'{"event_id": "e1", "timestamp": '
    response = post(hook, broken, signed=broken)
    assert (response.status_code, error_of(response)) == (400, "webhook.invalid_body")
    assert "Expecting" not in response.text and "char" not in response.text


async def submitting_job(app: App) -> uuid.UUID:
    """A job whose worker has begun its LlamaParse submit but not stored the remote id yet."""
    [result] = await ingest_uploads(
        app.db, app.blobs, [Upload("a.md", b"# A\n\nText.\n")], owner="o"
    )
    await app.db.execute(
        "UPDATE jobs SET state = 'parse_queued',"
        ' parse_metadata = parse_metadata || \'{"remote_submit": "x"}\' WHERE id = %s',
        (result.job_id,),
    )
    assert result.job_id is not None
    return result.job_id


async def test_an_unknown_job_while_a_submit_is_in_flight_is_503_and_stores_nothing(
    app: App, hook: str
) -> None:
    await submitting_job(app)
    unknown = body(job="not-ours-either")
    response = await asyncio.to_thread(post, hook, unknown, unknown)
    assert (response.status_code, error_of(response)) == (503, "webhook.not_ready")
    assert response.headers["retry-after"] == "1"  # the vendor retries; nothing was kept
    assert await receipt_count(app) == 0


async def test_a_webhook_that_beats_the_stored_remote_id_waits_for_it_and_wakes_the_job(
    app: App, hook: str
) -> None:
    job_id = await submitting_job(app)
    early = body(job="remote-early")
    answer = asyncio.create_task(asyncio.to_thread(post, hook, early, early))
    await asyncio.sleep(PENDING_WAIT / 4)  # the webhook is waiting; now the worker stores the id
    await app.db.execute(
        "UPDATE jobs SET remote_job_id = 'remote-early', next_attempt_at = now() + interval '1 h'"
        " WHERE id = %s",
        (job_id,),
    )
    response = await answer
    assert (response.status_code, response.json()) == (200, {"outcome": "woken"})
    rows = await app.db.fetch_all(
        "SELECT r.job_id, r.outcome, j.next_attempt_at <= now() AS runnable"
        " FROM webhook_receipts r JOIN jobs j ON j.id = r.job_id"
    )
    assert rows == [{"job_id": job_id, "outcome": "woken", "runnable": True}]
