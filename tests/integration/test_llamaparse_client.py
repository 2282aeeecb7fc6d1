"""ingestd's LlamaParse client against the mock server over real HTTP: results, usage, and every
error class the vendor can answer, each translated into ingestd's classified errors."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from reportlab.pdfgen import canvas

from ingestd.errors import IngestdError, PermanentError, RateLimitedError, TransientError
from ingestd.mocks import BackgroundServer, free_port
from ingestd.mocks.faults import Latency, RateLimits
from ingestd.mocks.llamaparse import (
    TIER_CREDITS,
    LlamaParseBehaviour,
    LlamaParseState,
    create_app,
)
from ingestd.parsers.llamaparse import (
    LlamaParseClient,
    RemoteJobStatus,
    classify_http_error,
    join_pages,
    parse_retry_after,
)
from ingestd.parsers.local import LocalParser
from tests.waiting import eventually

KEY = "llx-client-test"
BASE = LlamaParseBehaviour(api_key=KEY, latency=Latency(), rate_limits=RateLimits())
VERSIONS = ["v2", "v1"]


def pdf_pages(*texts: str) -> bytes:
    """A PDF with one page per text (heading line, then the text)."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out)
    for number, text in enumerate(texts, start=1):
        pdf.drawString(72, 720, f"Page {number} heading")
        pdf.drawString(72, 700, text)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


THREE_PAGES = pdf_pages("alpha apples", "beta bananas", "gamma grapes")


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(BASE), lifespan="on") as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def make_client(
    server: BackgroundServer, state: LlamaParseState, http: httpx.AsyncClient
) -> Callable[..., LlamaParseClient]:
    def make(version: str = "v2", **options: Any) -> LlamaParseClient:
        settings: dict[str, Any] = {"api_key": KEY, "base_url": server.url} | options
        return LlamaParseClient(http, api_version=version, **settings)

    return make


async def wait_terminal(client: LlamaParseClient, job_id: str) -> RemoteJobStatus:
    async def terminal() -> RemoteJobStatus | None:
        status = await client.status(job_id)
        return status if status.is_terminal else None

    status: RemoteJobStatus = await eventually(terminal, what=f"job {job_id} to finish")
    return status


async def raised(call: Awaitable[Any]) -> IngestdError:
    with pytest.raises(IngestdError) as info:
        await call
    return info.value


# -- results and usage ----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_parse_a_pdf_pages_kept_and_usage_equals_mock_counters(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState, version: str
) -> None:
    client = make_client(version)
    job_id = await client.submit(THREE_PAGES, "three.pdf", tier="agentic")
    assert (await wait_terminal(client, job_id)).state == "completed"
    result = await client.fetch_result(job_id)

    local = LocalParser().parse(THREE_PAGES, "application/pdf", "three.pdf")
    assert result.document.page_count == 3 == local.page_count
    starts = (0, *result.document.page_starts, len(result.document.markdown))
    pages = [result.document.markdown[a:b] for a, b in itertools.pairwise(starts)]
    for number, word in enumerate(("alpha apples", "beta bananas", "gamma grapes"), start=1):
        assert word in pages[number - 1]
        assert f"Page {number} heading" in pages[number - 1]
    assert result.usage.pages == state.counters.get("pages") == 3
    assert result.usage.credits == state.counters.get("credits") == 3 * TIER_CREDITS["agentic"]
    assert result.usage.tier == "agentic"
    assert result.document.metadata["remote_job_id"] == job_id
    assert result.failed_pages == ()


async def test_usage_sums_over_many_jobs_and_tiers(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState
) -> None:
    client = make_client()
    pages = credits = 0.0
    for tier in TIER_CREDITS:
        job_id = await client.submit(pdf_pages("one", "two"), "two.pdf", tier=tier)
        await wait_terminal(client, job_id)
        usage = (await client.fetch_result(job_id)).usage
        pages += usage.pages
        credits += usage.credits or 0
    assert pages == state.counters.get("pages") == 8
    assert credits == state.counters.get("credits") == 2 * sum(TIER_CREDITS.values())


@pytest.mark.parametrize("version", VERSIONS)
async def test_partial_success_keeps_the_good_pages(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState, version: str
) -> None:
    state.patch_behaviour({"faults": [{"kind": "partial_success", "count": 1}]})
    client = make_client(version)
    job_id = await client.submit(THREE_PAGES, "three.pdf", tier="fast")
    status = await wait_terminal(client, job_id)
    assert status.state == "completed"
    assert status.vendor_status == ("COMPLETED" if version == "v2" else "PARTIAL_SUCCESS")
    result = await client.fetch_result(job_id)
    assert result.failed_pages == (1,)
    assert result.document.metadata["failed_pages"] == [1]
    assert "beta bananas" in result.document.markdown
    assert "alpha apples" not in result.document.markdown


# -- remote job outcomes ----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_corrupt_file_is_remote_failed_with_the_vendor_message(
    make_client: Callable[..., LlamaParseClient], version: str
) -> None:
    client = make_client(version)
    job_id = await client.submit(b"%PDF-1.7\nthis is not really a pdf", "bad.pdf", tier="fast")
    status = await wait_terminal(client, job_id)
    assert status.state == "failed"
    assert status.error_message
    error = await raised(client.fetch_result(job_id))
    assert isinstance(error, PermanentError)
    assert error.code == "parse.remote_failed"
    assert error.message == status.error_message
    assert error.details["remote_job_id"] == job_id


@pytest.mark.parametrize("version", VERSIONS)
async def test_injected_job_failure_and_pending_and_cancelled(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState, version: str
) -> None:
    client = make_client(version)
    state.patch_behaviour({"fail_jobs": {"probability": 1, "count": 1}})
    failed = await client.submit(b"# fine\n\ntext", "a.md", tier="fast")
    assert (await wait_terminal(client, failed)).error_message == (
        "injected failure: the document could not be parsed"
    )

    state.patch_behaviour({"hold_jobs": True})
    held = await client.submit(b"# held\n\ntext", "b.md", tier="fast")
    assert (await client.status(held)).state == "pending"
    error = await raised(client.fetch_result(held))
    assert (type(error), error.code) == (TransientError, "parse.remote_pending")

    assert await client.cancel(held) is (version == "v2")
    if version == "v1":  # no cancel route in v1: cancel through v2, as the same job
        assert await make_client("v2").cancel(held)
    assert (await client.status(held)).state == "cancelled"
    error = await raised(client.fetch_result(held))
    assert (type(error), error.code) == (PermanentError, "parse.remote_failed")


# -- HTTP errors ----------------------------------------------------------------------------


async def test_wrong_key_is_remote_auth(make_client: Callable[..., LlamaParseClient]) -> None:
    for version in VERSIONS:
        error = await raised(
            make_client(version, api_key="llx-wrong").submit(b"x", "a.txt", tier="fast")
        )
        assert (type(error), error.code) == (PermanentError, "parse.remote_auth")
        assert error.details["status_code"] == 401
        assert error.details["vendor_message"] == "Invalid authentication token"


async def test_wrong_project_is_remote_auth_403(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState
) -> None:
    state.patch_behaviour({"project_id": "mine"})
    error = await raised(make_client(project_id="theirs").status("any"))
    assert (error.code, error.details["status_code"]) == ("parse.remote_auth", 403)


async def test_out_of_credits_is_remote_quota_402(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState
) -> None:
    state.patch_behaviour({"quota": 2})
    client = make_client()
    job_id = await client.submit(pdf_pages("one", "two"), "two.pdf", tier="fast")
    await wait_terminal(client, job_id)  # spends the 2 credits
    for version in VERSIONS:
        error = await raised(make_client(version).submit(b"x", "a.txt", tier="fast"))
        assert (type(error), error.code) == (PermanentError, "parse.remote_quota")
        assert error.details["status_code"] == 402


async def test_validation_error_is_remote_invalid_with_the_vendor_detail(
    make_client: Callable[..., LlamaParseClient],
) -> None:
    error = await raised(make_client().submit(b"x", "a.txt", tier="premium"))
    assert (type(error), error.code) == (PermanentError, "parse.remote_invalid")
    assert error.details["status_code"] == 422
    assert "body.configuration.tier" in error.details["vendor_message"]
    error = await raised(make_client(tier_version="someday").submit(b"x", "a.txt", tier="fast"))
    assert "body.configuration.version" in error.details["vendor_message"]


async def test_unknown_job_is_remote_not_found(
    make_client: Callable[..., LlamaParseClient],
) -> None:
    for version in VERSIONS:
        error = await raised(make_client(version).status("no-such-job"))
        assert (type(error), error.code) == (PermanentError, "parse.remote_not_found")


@pytest.mark.parametrize("retry_after", [True, False])
async def test_rate_limited_with_and_without_retry_after(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState, retry_after: bool
) -> None:
    state.patch_behaviour(
        {
            "rate_limits": {"requests_per_minute": 2, "window_seconds": 10},
            "retry_after_header": retry_after,
        }
    )
    client = make_client()
    for _ in range(2):
        await client.submit(b"# ok", "a.md", tier="fast")
    error = await raised(client.submit(b"# ok", "a.md", tier="fast"))
    assert isinstance(error, RateLimitedError)
    assert error.code == "parse.rate_limited"
    assert error.details["status_code"] == 429
    if retry_after:
        assert error.retry_after is not None and 1 <= error.retry_after <= 10
    else:
        assert error.retry_after is None
    assert state.counters.get("rate_limited") == 1


@pytest.mark.parametrize("kind", ["http_500", "http_502", "http_503"])
async def test_server_errors_are_transient(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState, kind: str
) -> None:
    state.patch_behaviour({"faults": [{"kind": kind, "count": 1}]})
    client = make_client()
    error = await raised(client.status("whatever"))
    assert (type(error), error.code) == (TransientError, "parse.remote_unavailable")
    assert error.details["status_code"] == int(kind.removeprefix("http_"))
    assert error.details["vendor_message"] == f"injected fault: HTTP {kind[-3:]}"


async def test_timeout_and_connection_reset_and_refused_are_transient(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState
) -> None:
    state.patch_behaviour(
        {"faults": [{"kind": "timeout", "count": 1}, {"kind": "connection_reset", "count": 1}]}
    )
    client = make_client(timeout=0.3)
    for _ in range(2):  # the first call hangs past the timeout, the second is reset
        error = await raised(client.status("whatever"))
        assert (type(error), error.code) == (TransientError, "parse.remote_unavailable")
        assert isinstance(error.__cause__, httpx.TransportError)
    refused = make_client(base_url=f"http://127.0.0.1:{free_port()}")
    error = await raised(refused.submit(b"x", "a.txt", tier="fast"))
    assert (type(error), error.code) == (TransientError, "parse.remote_unavailable")


async def test_malformed_json_is_a_transient_bad_response(
    make_client: Callable[..., LlamaParseClient], state: LlamaParseState
) -> None:
    state.patch_behaviour({"faults": [{"kind": "malformed_json", "count": 1}]})
    error = await raised(make_client().status("whatever"))
    assert (type(error), error.code) == (TransientError, "parse.remote_bad_response")


# -- pure helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "code"),
    [
        (401, {}, {"detail": "bad key"}, PermanentError, "parse.remote_auth"),
        (403, {}, {"detail": "no"}, PermanentError, "parse.remote_auth"),
        (402, {}, {"detail": "pay"}, PermanentError, "parse.remote_quota"),
        (404, {}, {"detail": "gone"}, PermanentError, "parse.remote_not_found"),
        (400, {}, {"detail": "bad"}, PermanentError, "parse.remote_invalid"),
        (413, {}, "too big", PermanentError, "parse.remote_invalid"),
        (
            422,
            {},
            {"detail": [{"loc": ["body", "tier"], "msg": "m"}]},
            PermanentError,
            "parse.remote_invalid",
        ),
        (429, {"retry-after": "7"}, {"detail": "slow"}, RateLimitedError, "parse.rate_limited"),
        (408, {}, {}, TransientError, "parse.remote_unavailable"),
        (500, {}, "oops", TransientError, "parse.remote_unavailable"),
        (504, {}, {"error": {"message": "gw"}}, TransientError, "parse.remote_unavailable"),
    ],
)
def test_classify_http_error_table(
    status: int, headers: dict[str, str], body: Any, kind: type[IngestdError], code: str
) -> None:
    if isinstance(body, str):
        response = httpx.Response(status, headers=headers, text=body)
    else:
        response = httpx.Response(status, headers=headers, json=body)
    error = classify_http_error(response)
    assert (type(error), error.code, error.details["status_code"]) == (kind, code, status)
    if status == 422:
        assert error.details["vendor_message"] == "body.tier: m"
    if status == 429:
        assert isinstance(error, RateLimitedError) and error.retry_after == 7


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("1.5", 1.5),
        ("-2", 0.0),
        ("Thu, 01 Jan 1970 00:00:30 GMT", 20.0),
        ("not a date", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=10.0) == seconds


def test_join_pages_offsets() -> None:
    markdown, starts = join_pages(["# One\n", "two", "\nthree"])
    assert markdown == "# One\n\ntwo\n\nthree"
    assert starts == (7, 12)
    assert [markdown[s:] for s in starts] == ["two\n\nthree", "three"]
    assert join_pages([]) == ("", ())
