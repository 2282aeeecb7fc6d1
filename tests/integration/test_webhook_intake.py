"""The LlamaParse webhook route over real HTTP (issue 7, finding 6): body cap before any work,
signed timestamps, unknown jobs stored nowhere, one error shape with stable codes."""

from __future__ import annotations

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
from ingestd.mocks import BackgroundServer
from ingestd.webhooks import SIGNATURE_HEADER, sign_llamaparse

SECRET = "whsec-intake-test"
CAP = 4096


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[App]:
    parser = LlamaParseSettings(
        api_key="llx-test", webhook_secret=SECRET, webhook_max_body_bytes=CAP
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
