"""The mock LlamaParse server over real HTTP: the vendor's own SDKs unchanged (``llama-cloud`` v2,
``llama-cloud-services`` v1), the job lifecycle and response shapes, the vendor's errors, and
signed webhooks with their faults, seen by a small receiver on loopback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from reportlab.pdfgen import canvas
from tests.waiting import eventually

from ingestd.mocks import BackgroundServer
from ingestd.mocks.faults import Latency, RateLimits
from ingestd.mocks.llamaparse import (
    LlamaParseBehaviour,
    LlamaParseState,
    WebhookDelivery,
    build_behaviour,
    create_app,
)
from ingestd.parsers.llamaparse import LlamaParseClient
from ingestd.webhooks import parse_llamaparse_webhook, verify_llamaparse_signature

KEY = "llx-mock-test"
SECRET = "whsec-mock-test"
BASE = LlamaParseBehaviour(
    api_key=KEY,
    latency=Latency(),
    rate_limits=RateLimits(),
    webhook_delivery=WebhookDelivery(backoff_scale=0.01, timeout_seconds=5),
)
# llama-cloud 2.x cannot share a virtualenv with llama-cloud-services (it pins llama-cloud 0.1.x),
# so the v2 SDK lives in its own --target folder and runs in a subprocess.
# `make setup` puts it beside the virtualenv that runs the tests (sys.prefix).
LLAMA_CLOUD_V2 = Path(os.environ.get("INGESTD_LLAMA_CLOUD_V2", Path(sys.prefix) / "llama-cloud-v2"))


def pdf_pages(*texts: str) -> bytes:
    out = io.BytesIO()
    pdf = canvas.Canvas(out)
    for number, text in enumerate(texts, start=1):
        pdf.drawString(72, 720, f"Section {number}")
        pdf.drawString(72, 700, text)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


TWO_PAGES = pdf_pages("first page words", "second page words")
MARKDOWN = b"# Notes\n\nSome **bold** text and a [link](http://x).\n\n## Part\n\nMore text.\n"


class Receiver:
    """A webhook endpoint that records every delivery and answers with queued status codes."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.statuses: deque[int] = deque()
        self.app = FastAPI()
        self.app.add_api_route("/hook", self.hook, methods=["POST"])

    async def hook(self, request: Request) -> Response:
        self.calls.append((dict(request.headers), await request.body()))
        return Response(status_code=self.statuses.popleft() if self.statuses else 204)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.calls]


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(BASE), lifespan="on") as running:
        yield running


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with BackgroundServer(receiver.app) as running:
        yield receiver, f"{running.url}/hook"


@pytest.fixture
def receiver(receiver_server: tuple[Receiver, str]) -> Receiver:
    receiver_server[0].calls.clear()
    receiver_server[0].statuses.clear()
    return receiver_server[0]


@pytest.fixture
def hook_url(receiver_server: tuple[Receiver, str]) -> str:
    return receiver_server[1]


@pytest.fixture
async def http(
    server: BackgroundServer, state: LlamaParseState
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        yield client


async def upload_v2(
    http: httpx.AsyncClient, data: bytes, name: str, **config: Any
) -> dict[str, Any]:
    configuration = {"tier": "fast", "version": "latest"} | config
    files = {"file": (name, data)}
    answer = await http.post(
        "/api/v2/parse/upload", files=files, data={"configuration": json.dumps(configuration)}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def finished_v2(http: httpx.AsyncClient, job_id: str, *expand: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (
            await http.get(f"/api/v2/parse/{job_id}", params=[("expand", e) for e in expand])
        ).json()
        return body if body["job"]["status"] not in ("PENDING", "RUNNING") else None

    result: dict[str, Any] = await eventually(done)
    return result


# -- the vendors' SDKs, unchanged -----------------------------------------------------------


async def test_llama_cloud_services_v1_sdk_parses_a_pdf(
    server: BackgroundServer, state: LlamaParseState
) -> None:
    with warnings.catch_warnings():  # the package announces its own deprecation on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from llama_cloud_services import LlamaParse

    async with httpx.AsyncClient() as own:  # the SDK never closes a client it makes itself
        parser = LlamaParse(
            api_key=KEY,
            base_url=server.url,
            check_interval=0,
            backoff_pattern="constant",
            verbose=False,
            result_type="markdown",
            custom_client=own,
        )
        result = await parser.aparse(TWO_PAGES, extra_info={"file_name": "two.pdf"})
        documents = await parser.aload_data(MARKDOWN, extra_info={"file_name": "notes.md"})
    assert not isinstance(result, list)
    assert [page.page for page in result.pages] == [1, 2]
    assert "first page words" in (result.pages[0].md or "")
    assert "second page words" in (result.pages[1].md or "")
    assert result.job_metadata.job_pages == 2
    assert "Some **bold** text" in documents[0].text
    assert state.counters.get("uploads") == 2
    assert state.counters.get("pages") == 3


async def test_llama_cloud_v2_resources_parse_by_file_id(
    server: BackgroundServer, state: LlamaParseState
) -> None:
    from llama_cloud.client import AsyncLlamaCloud

    async with httpx.AsyncClient() as own:
        await parse_by_file_id(AsyncLlamaCloud(token=KEY, base_url=server.url, httpx_client=own))
    assert state.counters.get("credits") == 20


async def parse_by_file_id(sdk: Any) -> None:
    stored = await sdk.beta.upload_file(file=io.BytesIO(TWO_PAGES), purpose="parse")
    job = await sdk.v_2.parse_file(file_id=stored.id, tier="agentic", version="latest")
    assert job.status == "PENDING"
    expand = ["markdown", "text", "items", "metadata"]

    async def completed() -> Any:
        result = await sdk.v_2.get_parse_job(job.id, expand=expand)
        return result if result.job.status == "COMPLETED" else None

    result = await eventually(completed)
    assert result.markdown is not None and result.text is not None and result.items is not None
    assert [p.page_number for p in result.markdown.pages] == [1, 2]
    assert "second page words" in result.markdown.pages[1].markdown
    assert "second page words" in result.text.pages[1].text
    listed = await sdk.v_2.list_parse_jobs()
    assert job.id in [item.id for item in listed.items]


V2_SDK_SCRIPT = """
import io, json, sys
import llama_cloud
from llama_cloud import LlamaCloud, AuthenticationError
url, key, data = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read()
client = LlamaCloud(api_key=key, base_url=url, max_retries=0)
result = client.parsing.parse(
    tier="cost_effective", version="latest", upload_file=("two.pdf", io.BytesIO(data)),
    expand=["markdown", "text_full", "job_metadata"], polling_interval=0.05,
)
stored = client.files.create(file=("notes.md", io.BytesIO(b"# Hi")), purpose="parse")
job = client.parsing.create(tier="fast", version="latest", file_id=stored.id)
try:
    LlamaCloud(api_key="llx-wrong", base_url=url, max_retries=0).parsing.get(job.id)
    auth = "accepted"
except AuthenticationError as exc:
    auth = exc.status_code
print(json.dumps({
    "version": llama_cloud.__version__,
    "status": result.job.status,
    "credits": result.job.usage.credits,
    "pages": [p.markdown for p in result.markdown.pages],
    "text_full": result.text_full,
    "job_pages": result.job_metadata["job_pages"],
    "listed": [j.id for j in client.parsing.list()],
    "job": job.id,
    "cancelled": client.parsing.cancel(job.id).status,
    "deleted": client.parsing.delete(job.id).id,
    "latest": client.parsing.list_versions().latest.fast,
    "auth": auth,
}))
"""


def test_llama_cloud_2x_sdk_parses_end_to_end(
    server: BackgroundServer, state: LlamaParseState, tmp_path: Path
) -> None:
    assert (LLAMA_CLOUD_V2 / "llama_cloud").is_dir(), (
        f"llama-cloud 2.x is not installed at {LLAMA_CLOUD_V2}: run "
        f".venv/bin/pip install --no-deps --target {LLAMA_CLOUD_V2} llama-cloud==2.19.0 distro"
    )
    pdf = tmp_path / "two.pdf"
    pdf.write_bytes(TWO_PAGES)
    env = {**os.environ, "PYTHONPATH": str(LLAMA_CLOUD_V2)}
    command = [sys.executable, "-W", "error", "-c", V2_SDK_SCRIPT, server.url, KEY, str(pdf)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["version"].startswith("2.")
    assert out["status"] == "COMPLETED"
    assert out["credits"] == 6
    assert "first page words" in out["pages"][0] and "second page words" in out["pages"][1]
    assert "second page words" in out["text_full"]
    assert out["job_pages"] == 2
    assert out["job"] in out["listed"]
    assert out["cancelled"] in ("CANCELLED", "COMPLETED")
    assert out["deleted"] == out["job"]
    assert out["latest"] == "2026-06-15"
    assert out["auth"] == 401


# -- lifecycle and shapes -------------------------------------------------------------------


async def test_lifecycle_pending_running_completed(
    http: httpx.AsyncClient, state: LlamaParseState
) -> None:
    state.patch_behaviour({"hold_jobs": True, "latency": {"per_unit_ms": 400}})
    job = await upload_v2(http, MARKDOWN, "notes.md")
    assert job["status"] == "PENDING" and job["usage"] == {"credits": None}
    assert (await http.get(f"/api/v2/parse/{job['id']}")).json()["job"]["status"] == "PENDING"
    state.patch_behaviour({"hold_jobs": False})

    async def running() -> bool:
        body = (await http.get(f"/api/v2/parse/{job['id']}", params={"expand": "markdown"})).json()
        return body["job"]["status"] == "RUNNING" and "markdown" not in body

    await eventually(running)
    body = await finished_v2(http, job["id"])
    assert body["job"]["status"] == "COMPLETED"
    assert body["job"]["usage"] == {"credits": 1}


async def test_v2_expansions(http: httpx.AsyncClient) -> None:
    job = await upload_v2(http, TWO_PAGES, "two.pdf", tier="cost_effective")
    await finished_v2(http, job["id"])
    params = [("expand", "markdown,text"), ("expand", "markdown_full"), ("expand", "text_full")]
    params += [("expand", e) for e in ("metadata", "job_metadata", "usage", "items")]
    body = (await http.get(f"/api/v2/parse/{job['id']}", params=params)).json()
    pages = body["markdown"]["pages"]
    assert [(p["page_number"], p["success"]) for p in pages] == [(1, True), (2, True)]
    assert body["markdown_full"] == pages[0]["markdown"] + "\n\n" + pages[1]["markdown"]
    assert [p["page_number"] for p in body["text"]["pages"]] == [1, 2]
    assert "second page words" in body["text_full"]
    assert body["metadata"]["pages"][1]["page_number"] == 2
    assert body["job_metadata"]["job_pages"] == 2
    assert body["usage"] == {"pages": 2, "credits": 6}
    assert body["items"]["pages"][0]["items"][0]["type"] in ("heading", "text")
    assert set(body["job"]) >= {"id", "project_id", "status", "created_at", "updated_at", "tier"}
    plain = (await http.get(f"/api/v2/parse/{job['id']}")).json()
    assert set(plain) == {"job"}


async def test_markdown_items_and_text(http: httpx.AsyncClient) -> None:
    job = await upload_v2(http, MARKDOWN, "notes.md")
    body = await finished_v2(http, job["id"], "items", "text")
    items = body["items"]["pages"][0]["items"]
    assert items[0] == {"type": "heading", "level": 1, "md": "# Notes", "value": "Notes"}
    assert {"type": "text", "md": "More text.", "value": "More text."} in items
    assert "Some bold text and a link." in body["text"]["pages"][0]["text"]


@pytest.mark.parametrize("prefix", ["/api/parsing", "/api/v1/parsing"])
async def test_v1_routes(http: httpx.AsyncClient, prefix: str) -> None:
    answer = await http.post(
        f"{prefix}/upload", files={"file": ("two.pdf", TWO_PAGES)}, data={"tier": "agentic"}
    )
    assert answer.status_code == 200
    job = answer.json()
    assert job["status"] == "PENDING" and set(job) == {"id", "status"}

    async def success() -> bool:
        status = (await http.get(f"{prefix}/job/{job['id']}")).json()
        return bool(status["status"] == "SUCCESS")

    await eventually(success)
    markdown = (await http.get(f"{prefix}/job/{job['id']}/result/markdown")).json()
    text = (await http.get(f"{prefix}/job/{job['id']}/result/text")).json()
    as_json = (await http.get(f"{prefix}/job/{job['id']}/result/json")).json()
    assert markdown["markdown"].count("\n---\n") == 1
    assert "second page words" in text["text"]
    assert markdown["job_metadata"]["job_pages"] == 2
    assert markdown["job_metadata"]["job_is_cache_hit"] is False
    page = as_json["pages"][1]
    assert page["page"] == 2 and "second page words" in page["md"]
    assert set(page) >= {"page", "text", "md", "images", "items", "width", "height"}


async def test_page_ranges_v2_and_v1(http: httpx.AsyncClient) -> None:
    three = pdf_pages("one", "two", "three")
    by_target = await upload_v2(http, three, "3.pdf", page_ranges={"target_pages": "2-3"})
    by_max = await upload_v2(http, three, "3.pdf", page_ranges={"max_pages": 1})
    target = await finished_v2(http, by_target["id"], "markdown")
    first = await finished_v2(http, by_max["id"], "markdown")
    assert [p["page_number"] for p in target["markdown"]["pages"]] == [2, 3]
    assert [p["page_number"] for p in first["markdown"]["pages"]] == [1]
    assert target["job"]["usage"]["credits"] == 2
    v1 = await http.post(
        "/api/parsing/upload", files={"file": ("3.pdf", three)}, data={"target_pages": "0,2"}
    )
    job_id = v1.json()["id"]

    async def pages() -> list[int] | None:
        answer = await http.get(f"/api/parsing/job/{job_id}/result/json")
        return [p["page"] for p in answer.json()["pages"]] if answer.status_code == 200 else None

    assert await eventually(pages) == [1, 3]


@pytest.mark.parametrize("tier", ["fast", "cost_effective", "agentic", "agentic_plus"])
async def test_credits_per_page_by_tier(
    http: httpx.AsyncClient, state: LlamaParseState, tier: str
) -> None:
    job = await upload_v2(http, TWO_PAGES, "two.pdf", tier=tier)
    body = await finished_v2(http, job["id"])
    credits = {"fast": 1, "cost_effective": 3, "agentic": 10, "agentic_plus": 45}[tier] * 2
    assert body["job"]["usage"]["credits"] == credits == state.counters.get("credits")
    assert state.counters.get("pages") == 2


@pytest.mark.parametrize(
    ("data", "name"),
    [(b"%PDF-1.4\ngarbage without objects", "broken.pdf"), (bytes(range(256)) * 8, "blob.bin")],
)
async def test_corrupt_or_unsupported_files_fail(
    http: httpx.AsyncClient, state: LlamaParseState, data: bytes, name: str
) -> None:
    job = await upload_v2(http, data, name)
    body = await finished_v2(http, job["id"], "markdown")
    assert body["job"]["status"] == "FAILED"
    assert body["job"]["error_message"]
    assert "markdown" not in body
    v1 = (await http.post("/api/parsing/upload", files={"file": (name, data)})).json()

    async def errored() -> dict[str, Any] | None:
        status: dict[str, Any] = (await http.get(f"/api/parsing/job/{v1['id']}")).json()
        return status if status["status"] == "ERROR" else None

    status = await eventually(errored)
    assert status["error_message"] == body["job"]["error_message"]
    assert status["error_code"].startswith("PARSE_")
    assert state.counters.get("jobs_failed") == 2 and state.counters.get("credits") == 0


async def test_cancel_delete_and_list(http: httpx.AsyncClient, state: LlamaParseState) -> None:
    state.patch_behaviour({"hold_jobs": True})
    jobs = [await upload_v2(http, MARKDOWN, f"{i}.md") for i in range(3)]
    cancelled = (await http.post(f"/api/v2/parse/{jobs[0]['id']}/cancel")).json()
    assert cancelled["status"] == "CANCELLED"
    assert (await http.delete(f"/api/v2/parse/{jobs[1]['id']}")).json() == {
        "id": jobs[1]["id"],
        "project_id": jobs[1]["project_id"],
    }
    assert (await http.get(f"/api/v2/parse/{jobs[1]['id']}")).status_code == 404
    page = (await http.get("/api/v2/parse", params={"status": "CANCELLED"})).json()
    assert jobs[0]["id"] in [j["id"] for j in page["items"]]
    first = (await http.get("/api/v2/parse", params={"page_size": 1})).json()
    second = (
        await http.get(
            "/api/v2/parse", params={"page_size": 1, "page_token": first["next_page_token"]}
        )
    ).json()
    assert first["items"][0]["id"] != second["items"][0]["id"]
    assert first["total_size"] >= 2
    state.patch_behaviour({"hold_jobs": False})
    await finished_v2(http, jobs[2]["id"])


async def test_file_id_and_source_url(http: httpx.AsyncClient) -> None:
    stored = (
        await http.post(
            "/api/v1/beta/files", files={"file": ("n.md", MARKDOWN)}, data={"purpose": "parse"}
        )
    ).json()
    assert stored["name"] == "n.md" and stored["purpose"] == "parse"
    job = await http.post(
        "/api/v2/parse", json={"tier": "fast", "version": "latest", "file_id": stored["id"]}
    )
    assert (await finished_v2(http, job.json()["id"]))["job"]["status"] == "COMPLETED"
    by_url = await http.post(
        "/api/v2/parse", json={"tier": "fast", "version": "latest", "source_url": "https://x/y.pdf"}
    )
    assert by_url.status_code == 400 and "source_url" in by_url.json()["detail"]
    missing = await http.post(
        "/api/v2/parse", json={"tier": "fast", "version": "latest", "file_id": "nope"}
    )
    assert missing.status_code == 404


# -- the vendor's errors --------------------------------------------------------------------


async def test_auth_errors(http: httpx.AsyncClient, state: LlamaParseState) -> None:
    for headers in ({"Authorization": "Bearer llx-wrong"}, {"Authorization": ""}):
        for method, path in (("POST", "/api/v2/parse/upload"), ("GET", "/api/parsing/job/x")):
            answer = await http.request(method, path, headers=headers)
            assert answer.status_code == 401
            assert answer.json() == {"detail": "Invalid authentication token"}
    assert state.counters.errors()["invalid_api_key"] == 4
    assert (await http.get("/_admin/counters", headers={"Authorization": ""})).status_code == 200
    state.patch_behaviour({"project_id": "p1"})
    assert (await http.get("/api/v2/parse", params={"project_id": "p2"})).status_code == 403
    assert (await http.get("/api/v2/parse", params={"project_id": "p1"})).status_code == 200


async def test_validation_errors_in_fastapi_shape(http: httpx.AsyncClient) -> None:
    async def upload(**form: str) -> list[dict[str, Any]]:
        answer = await http.post("/api/v2/parse/upload", files={"file": ("a.md", b"x")}, data=form)
        assert answer.status_code == 422
        detail: list[dict[str, Any]] = answer.json()["detail"]
        return detail

    missing = await upload()
    assert missing[0]["loc"] == ["body", "configuration"] and missing[0]["type"] == "missing"
    no_tier = await upload(configuration=json.dumps({"version": "latest"}))
    assert no_tier[0]["loc"] == ["body", "configuration", "tier"]
    bad = await upload(configuration=json.dumps({"tier": "gold", "version": "yesterday"}))
    assert {tuple(e["loc"][-1:]) for e in bad} == {("tier",), ("version",)}
    assert all({"type", "loc", "msg"} <= set(e) for e in bad)
    not_json = await upload(configuration="{tier")
    assert not_json[0]["type"] == "json_invalid"
    v1 = await http.post(
        "/api/parsing/upload", files={"file": ("a.md", b"x")}, data={"tier": "gold"}
    )
    assert v1.status_code == 422 and v1.json()["detail"][0]["loc"] == ["body", "tier"]
    no_file = await http.post("/api/parsing/upload", data={"tier": "fast"})
    assert no_file.status_code == 400


async def test_upload_rate_limit_and_credit_budget(
    http: httpx.AsyncClient, state: LlamaParseState
) -> None:
    state.patch_behaviour({"rate_limits": {"requests_per_minute": 3, "window_seconds": 30}})
    for _ in range(3):
        await upload_v2(http, MARKDOWN, "a.md")
    limited = await http.post("/api/parsing/upload", files={"file": ("a.md", MARKDOWN)})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 30
    assert (await http.get("/api/v2/parse")).status_code == 200  # polls are not limited

    state.patch_behaviour({"rate_limits": {"requests_per_minute": None}, "quota": 1})
    job = await upload_v2(http, MARKDOWN, "a.md")
    await finished_v2(http, job["id"])
    broke = await http.post("/api/parsing/upload", files={"file": ("a.md", MARKDOWN)})
    assert broke.status_code == 402 and "credit" in broke.json()["detail"].lower()
    assert state.counters.errors()["insufficient_credits"] == 1


async def test_generic_request_faults(http: httpx.AsyncClient, state: LlamaParseState) -> None:
    state.patch_behaviour(
        {
            "faults": [
                {"kind": "http_503", "count": 1, "routes": ["/api/v2/parse/upload"]},
                {"kind": "partial_success", "count": 1},
            ]
        }
    )
    files = {"file": ("two.pdf", TWO_PAGES)}
    config = {"configuration": json.dumps({"tier": "fast", "version": "latest"})}
    assert (await http.post("/api/v2/parse/upload", files=files, data=config)).status_code == 503
    job = await upload_v2(http, TWO_PAGES, "two.pdf")
    body = await finished_v2(http, job["id"], "markdown")
    assert [p["success"] for p in body["markdown"]["pages"]] == [False, True]
    assert "error" in body["markdown"]["pages"][0]
    v1_view = (await http.get(f"/api/parsing/job/{job['id']}")).json()
    assert v1_view["status"] == "PARTIAL_SUCCESS"


def test_build_behaviour_from_cli_style_options() -> None:
    behaviour = build_behaviour(
        '{"api_key": "k", "latency": {"fixed_ms": 5}}',
        per_page_ms=7,
        uploads_per_window=9,
        quota_credits=100,
        retry_after=False,
        faults=["http_503:0.5"],
        webhook_backoff_scale=0.1,
    )
    assert behaviour.api_key == "k"
    assert (behaviour.latency.fixed_ms, behaviour.latency.per_unit_ms) == (5, 7)
    assert behaviour.rate_limits.requests_per_minute == 9
    assert behaviour.rate_limits.window_seconds == 10
    assert behaviour.quota == 100 and behaviour.retry_after_header is False
    assert behaviour.faults[0].probability == 0.5
    assert behaviour.webhook_delivery.backoff_scale == 0.1
    defaults = build_behaviour()
    assert (defaults.latency.fixed_ms, defaults.latency.per_unit_ms) == (100, 50)


# -- webhooks -------------------------------------------------------------------------------


def hook_config(url: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"webhook_url": url, "webhook_signing_secret": SECRET, **extra}]


async def delivered(state: LlamaParseState, sent: int) -> None:
    """Wait until the mock has counted ``sent`` deliveries: the receiver records a call before
    the mock counts it, and a count landing after the next test's reset would be read there."""
    await eventually(lambda: state.counters.get("webhooks_sent") == sent)


async def test_signed_webhooks_verify_and_name_the_job(
    http: httpx.AsyncClient, state: LlamaParseState, receiver: Receiver, hook_url: str
) -> None:
    hooks = hook_config(hook_url, webhook_headers={"X-Tenant": "t1"})
    job = await upload_v2(http, MARKDOWN, "a.md", webhook_configurations=hooks)
    await eventually(lambda: len(receiver.calls) == 3)
    types = [parse_llamaparse_webhook(body).event_type for _, body in receiver.calls]
    assert types == ["parse.pending", "parse.running", "parse.success"]
    for headers, body in receiver.calls:
        assert verify_llamaparse_signature(SECRET, body, headers["lc-signature"])
        event = parse_llamaparse_webhook(body)
        assert event.remote_job_id == job["id"] == event.data.id
        assert headers["x-webhook-event-id"] == event.event_id
        assert headers["x-webhook-event-type"] == event.event_type
        assert headers["user-agent"] == "llamaindex-webhook-service/1.0"
        assert headers["content-type"] == "application/json"
        assert headers["x-tenant"] == "t1"
        assert abs(event.timestamp - time.time()) < 60
    await delivered(state, 3)


async def test_client_configured_webhooks_only_terminal_events(
    server: BackgroundServer, state: LlamaParseState, receiver: Receiver, hook_url: str
) -> None:
    async with httpx.AsyncClient() as raw:
        for version in ("v2", "v1"):
            client = LlamaParseClient(
                raw,
                api_key=KEY,
                base_url=server.url,
                api_version=version,  # type: ignore[arg-type]
                webhook_events=["parse.success", "parse.error"],
            )
            job_id = await client.submit(
                MARKDOWN, "a.md", tier="fast", webhook_url=hook_url, webhook_secret=SECRET
            )
            await eventually(lambda j=job_id: any(j in body.decode() for _, body in receiver.calls))
    events = [parse_llamaparse_webhook(body) for _, body in receiver.calls]
    assert [e.event_type for e in events] == ["parse.success", "parse.success"]
    assert all(verify_llamaparse_signature(SECRET, b, h["lc-signature"]) for h, b in receiver.calls)
    await delivered(state, 2)


async def test_webhook_retries_with_backoff_then_gives_up(
    http: httpx.AsyncClient, state: LlamaParseState, receiver: Receiver, hook_url: str
) -> None:
    receiver.statuses.extend([500, 503])  # the third attempt succeeds
    hooks = hook_config(hook_url, webhook_events=["parse.success"])
    await upload_v2(http, MARKDOWN, "a.md", webhook_configurations=hooks)
    await eventually(lambda: len(receiver.calls) == 3)
    await delivered(state, 1)
    assert state.counters.get("webhook_attempts") == 3
    assert len({h["x-webhook-event-id"] for h, _ in receiver.calls}) == 1

    receiver.calls.clear()
    receiver.statuses.extend([500, 500, 500])
    job = await upload_v2(http, MARKDOWN, "a.md", webhook_configurations=hooks)
    await eventually(lambda: state.counters.get("webhooks_failed") == 1)
    assert len(receiver.calls) == 3
    log = (await http.get("/_admin/webhooks")).json()
    outcomes = [d["outcome"] for d in log if d["job_id"] == job["id"]]
    assert outcomes == ["500", "500", "500"]


async def test_webhook_faults_drop_duplicate_bad_signature(
    http: httpx.AsyncClient, state: LlamaParseState, receiver: Receiver, hook_url: str
) -> None:
    hooks = hook_config(hook_url, webhook_events=["parse.success"])
    state.patch_behaviour({"webhook_faults": {"drop": {"probability": 1, "count": 1}}})
    dropped = await upload_v2(http, MARKDOWN, "a.md", webhook_configurations=hooks)
    await finished_v2(http, dropped["id"])
    await eventually(lambda: state.counters.get("webhooks_dropped") == 1)

    state.reset(restore_behaviour=True)  # a patch merges: the drop arm would be armed again
    state.patch_behaviour({"webhook_faults": {"duplicate": {"probability": 1, "count": 1}}})
    duplicated = await upload_v2(http, MARKDOWN, "a.md", webhook_configurations=hooks)
    await eventually(lambda: len(receiver.calls) == 2)
    (h1, b1), (h2, b2) = receiver.calls
    assert b1 == b2 and h1["x-webhook-event-id"] == h2["x-webhook-event-id"]
    assert parse_llamaparse_webhook(b1).remote_job_id == duplicated["id"]
    await delivered(state, 2)

    receiver.calls.clear()
    state.reset(restore_behaviour=True)
    state.patch_behaviour({"webhook_faults": {"bad_signature": {"probability": 1, "count": 1}}})
    await upload_v2(http, MARKDOWN, "a.md", webhook_configurations=hooks)
    await eventually(lambda: len(receiver.calls) == 1)
    headers, body = receiver.calls[0]
    assert headers["lc-signature"].startswith("sha256=")
    assert not verify_llamaparse_signature(SECRET, body, headers["lc-signature"])
    assert dropped["id"] not in b"".join(b for _, b in receiver.calls).decode()
    await delivered(state, 1)


async def test_webhook_reorder_and_delay(
    http: httpx.AsyncClient, state: LlamaParseState, receiver: Receiver, hook_url: str
) -> None:
    state.patch_behaviour({"webhook_faults": {"reorder": {"probability": 1}, "delay_ms": 150}})
    started = time.monotonic()
    await upload_v2(http, MARKDOWN, "a.md", webhook_configurations=hook_config(hook_url))
    await eventually(lambda: len(receiver.calls) == 3)
    assert time.monotonic() - started >= 0.15
    types = [parse_llamaparse_webhook(body).event_type for _, body in receiver.calls]
    assert types == ["parse.success", "parse.running", "parse.pending"]
    await delivered(state, 3)


async def test_legacy_v1_webhook_url_gets_the_result(
    http: httpx.AsyncClient, state: LlamaParseState, receiver: Receiver, hook_url: str
) -> None:
    await http.post(
        "/api/parsing/upload", files={"file": ("a.md", MARKDOWN)}, data={"webhook_url": hook_url}
    )
    await eventually(lambda: len(receiver.calls) == 1)
    headers, body = receiver.calls[0]
    payload = json.loads(body)
    assert set(payload) == {"txt", "md", "json", "images"}
    assert "# Notes" in payload["md"]
    assert "lc-signature" not in headers
    await delivered(state, 1)


async def test_admin_jobs_and_counters(http: httpx.AsyncClient, state: LlamaParseState) -> None:
    job = await upload_v2(http, TWO_PAGES, "two.pdf")
    await finished_v2(http, job["id"])
    jobs = (await http.get("/_admin/jobs")).json()
    mine = next(j for j in jobs if j["id"] == job["id"])
    assert (mine["pages"], mine["v1_status"], mine["api"]) == (2, "SUCCESS", "v2")
    counters = (await http.get("/_admin/counters")).json()
    assert counters["uploads"] == 1 and counters["pages"] == 2 and counters["credits"] == 2
    assert counters["jobs_completed"] == 1 and counters["requests"] >= 2
    patched = await http.patch("/_admin/behaviour", json={"latency": {"per_unit_ms": 1}})
    assert patched.json()["latency"]["per_unit_ms"] == 1
    assert (await http.post("/_admin/reset")).json()["reset"] is True
    assert (await http.get("/_admin/counters")).json()["uploads"] == 0
