"""LlamaParse (LlamaCloud) client: submit a document, read its job's status, fetch its Markdown.

Speaks the v2 API by default (``POST /api/v2/parse/upload``, ``GET /api/v2/parse/{id}?expand=...``)
and the older v1 API when asked (``POST /api/parsing/upload``, ``GET /api/parsing/job/{id}`` and its
``/result/json``); see shared/design/EXTERNAL_APIS.md. It never waits for a job: the parse stage
submits once, stores the remote id, and later learns the outcome from a webhook or by polling
:meth:`LlamaParseClient.status`, then calls :meth:`LlamaParseClient.fetch_result`.

Every vendor or transport failure leaves as an ``ingestd.errors`` class with the vendor's status and
message kept in ``details``: 401/403 ``parse.remote_auth``, 402 ``parse.remote_quota`` (permanent:
a person must add credits; retry the job after), 404 ``parse.remote_not_found``, other 4xx
``parse.remote_invalid``, 429 ``parse.rate_limited`` (with ``Retry-After`` when sent), 408/5xx,
timeouts and lost connections ``parse.remote_unavailable``, a 2xx that is not the expected JSON
``parse.remote_bad_response``, a job the vendor failed ``parse.remote_failed``.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import httpx

from ingestd.errors import (
    IngestdError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from ingestd.ports import ParsedDocument
from ingestd.traffic.governor import Answer, Governor
from ingestd.traffic.headers import parse_rate_limit_headers

DEFAULT_BASE_URL = "https://api.cloud.llamaindex.ai"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
PAGE_SEPARATOR = "\n\n"

RemoteState = Literal["pending", "running", "completed", "failed", "cancelled"]
ApiVersion = Literal["v2", "v1"]

_V2_STATES: dict[str, RemoteState] = {
    "PENDING": "pending",
    "RUNNING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
}
_V1_STATES: dict[str, RemoteState] = {
    "PENDING": "pending",
    "SUCCESS": "completed",
    "PARTIAL_SUCCESS": "completed",
    "ERROR": "failed",
    "CANCELLED": "cancelled",
    "CANCELED": "cancelled",
}


@dataclass(frozen=True, slots=True)
class RemoteJobStatus:
    """A remote parse job's state, normalised across API versions."""

    job_id: str
    state: RemoteState
    vendor_status: str
    error_message: str | None = None
    error_code: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state in ("completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class ParseUsage:
    """What a parse cost: pages parsed, credits billed (``None`` when the vendor did not say)."""

    pages: int
    credits: float | None = None
    tier: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteParseResult:
    """A finished job's document (Markdown pages joined, ``page_starts`` kept) and its usage."""

    job_id: str
    document: ParsedDocument
    usage: ParseUsage
    failed_pages: tuple[int, ...] = field(default=())


class LlamaParseClient:
    """LlamaParse over an injected ``httpx.AsyncClient``; every call has an explicit timeout."""

    name = "llamaparse"

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        api_version: ApiVersion = "v2",
        tier_version: str = "latest",
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        webhook_events: Sequence[str] | None = None,
        organization_id: str | None = None,
        project_id: str | None = None,
        governor: Governor | None = None,
    ) -> None:
        self._http = http
        # Every request goes through the traffic governor when given: the shared requests
        # limit of LlamaParse, its circuit breaker, and a 429 pausing every worker.
        self._governor = governor
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self.api_version: ApiVersion = api_version
        self._tier_version = tier_version
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._webhook_events = list(webhook_events) if webhook_events is not None else None
        self._scope = {
            k: v for k, v in (("organization_id", organization_id), ("project_id", project_id)) if v
        }

    # -- public API ---------------------------------------------------------------------------

    async def submit(
        self,
        data: bytes,
        filename: str,
        *,
        tier: str,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> str:
        """Upload ``data`` for parsing; returns the remote job id. Not idempotent: call once."""
        hooks = self._webhook_configurations(webhook_url, webhook_secret)
        files = {"file": (filename or "document", data)}
        if self.api_version == "v2":
            config: dict[str, Any] = {"tier": tier, "version": self._tier_version}
            if hooks:
                config["webhook_configurations"] = hooks
            form = {"configuration": json.dumps(config)}
            body = await self._request("POST", "/api/v2/parse/upload", files=files, data=form)
        else:
            form = {"tier": tier, "version": self._tier_version}
            if hooks:
                form["webhook_configurations"] = json.dumps(hooks)
            body = await self._request("POST", "/api/parsing/upload", files=files, data=form)
        return _require_str(body, "id")

    async def find_job_by_name(self, name: str, *, max_pages: int = 20) -> str | None:
        """The id of a job submitted under ``name`` (v2 lists jobs; v1 cannot: ``None``).

        Used to recover a submit whose answer was lost (the worker died, the connection dropped)
        without uploading — and paying for — the document again.
        """
        if self.api_version != "v2":
            return None
        token: str | None = None
        for _ in range(max_pages):
            params = [("page_size", "100")] + ([("page_token", token)] if token else [])
            body = await self._request("GET", "/api/v2/parse", params=params)
            for item in body.get("items") or []:
                if isinstance(item, Mapping) and item.get("name") == name and item.get("id"):
                    return str(item["id"])
            token = _str_or_none(body.get("next_page_token"))
            if not token:
                return None
        return None

    async def status(self, job_id: str) -> RemoteJobStatus:
        """The job's current state (one GET; never waits)."""
        if self.api_version == "v2":
            body = await self._request("GET", f"/api/v2/parse/{job_id}")
            return _v2_status(job_id, _require_mapping(body, "job"))
        body = await self._request("GET", f"/api/parsing/job/{job_id}")
        return _v1_status(job_id, body)

    async def fetch_result(self, job_id: str) -> RemoteParseResult:
        """The finished job's Markdown and usage.

        Raises ``PermanentError("parse.remote_failed")`` for a failed or cancelled job and
        ``TransientError("parse.remote_pending")`` for one that has not finished yet.
        """
        if self.api_version == "v2":
            return await self._fetch_v2(job_id)
        return await self._fetch_v1(job_id)

    async def cancel(self, job_id: str) -> bool:
        """Ask the vendor to stop a job (v2 only; v1 has no cancel route). True when it did."""
        if self.api_version != "v2":
            return False
        body = await self._request("POST", f"/api/v2/parse/{job_id}/cancel")
        return str(body.get("status", "")).upper() == "CANCELLED"

    # -- v2 / v1 results ----------------------------------------------------------------------

    async def _fetch_v2(self, job_id: str) -> RemoteParseResult:
        params = [("expand", "markdown"), ("expand", "job_metadata")]
        body = await self._request("GET", f"/api/v2/parse/{job_id}", params=params)
        job = _require_mapping(body, "job")
        _ensure_completed(_v2_status(job_id, job))
        pages = _v2_pages(_require_mapping(body, "markdown"))
        credits = _number(job.get("usage"), "credits")
        if credits is None:  # null until billing records it; job_metadata may know already
            credits = _number(body.get("job_metadata"), "credits_used")
        return _result(job_id, pages, credits, _str_or_none(job.get("tier")))

    async def _fetch_v1(self, job_id: str) -> RemoteParseResult:
        _ensure_completed(await self.status(job_id))
        body = await self._request("GET", f"/api/parsing/job/{job_id}/result/json")
        raw_pages = body.get("pages")
        if not isinstance(raw_pages, list):
            _bad_response("the v1 JSON result has no pages list", body)
        pages = [_v1_page(p) for p in raw_pages]
        meta = body.get("job_metadata")
        tier = _str_or_none(meta.get("tier")) if isinstance(meta, dict) else None
        return _result(job_id, pages, _number(meta, "credits_used"), tier)

    # -- HTTP and errors ----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        files: Mapping[str, tuple[str, bytes]] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        async def send() -> Answer[dict[str, Any]]:
            return await self._send(method, path, params=params, files=files, data=data)

        if self._governor is not None:
            return await self._governor.call(self.name, self.name, {"requests": 1}, send)
        answer = await send()
        if answer.error is not None:
            raise answer.error
        return answer.value or {}

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        files: Mapping[str, tuple[str, bytes]] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Answer[dict[str, Any]]:
        """One HTTP request: its JSON body or its classified error, with rate-limit headers."""
        query = httpx.QueryParams([*params, *self._scope.items()])
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        try:
            response = await self._http.request(
                method,
                self._base_url + path,
                params=query,
                files=files,
                data=data,
                headers=headers,
                timeout=self._timeout,
            )
        except httpx.TimeoutException as exc:
            error: IngestdError = TransientError(
                "parse.remote_unavailable", f"LlamaParse timed out: {method} {path}"
            )
            error.__cause__ = exc
            return Answer(error=error)
        except httpx.TransportError as exc:
            error = TransientError(
                "parse.remote_unavailable", f"LlamaParse unreachable: {type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            return Answer(error=error)
        limits = parse_rate_limit_headers(response.headers)
        if not response.is_success:
            return Answer(error=classify_http_error(response), limits=limits)
        try:
            return Answer(value=_json_object(response), limits=limits)
        except IngestdError as exc:
            return Answer(error=exc, limits=limits)

    def _webhook_configurations(self, url: str | None, secret: str | None) -> list[dict[str, Any]]:
        if not url:
            return []
        hook: dict[str, Any] = {"webhook_url": url, "webhook_output_format": "json"}
        if secret:
            hook["webhook_signing_secret"] = secret
        if self._webhook_events is not None:
            hook["webhook_events"] = self._webhook_events
        return [hook]


# -- error classification (pure) --------------------------------------------------------------


def classify_http_error(response: httpx.Response) -> IngestdError:
    """The ingestd error for a non-2xx LlamaParse answer, vendor status and message kept."""
    status = response.status_code
    message = vendor_message(response)
    details: dict[str, Any] = {"status_code": status, "vendor_message": message}
    text = f"LlamaParse answered HTTP {status}: {message}"
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitedError("parse.rate_limited", text, retry_after=retry_after, **details)
    if status == 408 or status >= 500:
        return TransientError("parse.remote_unavailable", text, **details)
    code = {
        401: "parse.remote_auth",
        403: "parse.remote_auth",
        402: "parse.remote_quota",
        404: "parse.remote_not_found",
    }.get(status, "parse.remote_invalid")
    return PermanentError(code, text, **details)


def vendor_message(response: httpx.Response) -> str:
    """The vendor's own words: ``detail`` (a string, or FastAPI's validation list) or the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        return str(detail["message"])
    if isinstance(detail, list):
        return "; ".join(_validation_item(item) for item in detail)
    return detail if isinstance(detail, str) else json.dumps(detail)[:500]


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = ".".join(str(part) for part in item.get("loc", ()))
    return f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", item))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date); ``None`` if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


# -- response shapes (pure) -------------------------------------------------------------------


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientError(
            "parse.remote_bad_response",
            f"LlamaParse answered HTTP {response.status_code} with a body that is not JSON",
            status_code=response.status_code,
            vendor_message=response.text[:200],
        ) from exc
    if not isinstance(body, dict):
        _bad_response("expected a JSON object", body)
    return body


def _bad_response(what: str, body: Any) -> NoReturn:
    raise TransientError(
        "parse.remote_bad_response",
        f"unexpected LlamaParse response: {what}",
        vendor_message=json.dumps(body)[:200],
    )


def _require_mapping(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        _bad_response(f"no {key!r} object", body)
    return value


def _require_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        _bad_response(f"no {key!r} string", body)
    return value


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(container: Any, key: str) -> float | None:
    if not isinstance(container, dict):
        return None
    value = container.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _v2_status(job_id: str, job: Mapping[str, Any]) -> RemoteJobStatus:
    vendor = str(job.get("status", ""))
    state = _V2_STATES.get(vendor.upper())
    if state is None:
        _bad_response(f"unknown v2 job status {vendor!r}", dict(job))
    return RemoteJobStatus(job_id, state, vendor, _str_or_none(job.get("error_message")))


def _v1_status(job_id: str, body: Mapping[str, Any]) -> RemoteJobStatus:
    vendor = str(body.get("status", ""))
    state = _V1_STATES.get(vendor.upper())
    if state is None:
        _bad_response(f"unknown v1 job status {vendor!r}", dict(body))
    return RemoteJobStatus(
        job_id,
        state,
        vendor,
        _str_or_none(body.get("error_message")),
        _str_or_none(body.get("error_code")),
    )


def _ensure_completed(status: RemoteJobStatus) -> None:
    if status.state == "completed":
        return
    if status.state in ("pending", "running"):
        raise TransientError(
            "parse.remote_pending",
            f"LlamaParse job {status.job_id} is not finished ({status.vendor_status})",
            remote_job_id=status.job_id,
        )
    raise PermanentError(
        "parse.remote_failed",
        status.error_message or f"LlamaParse job {status.job_id} ended {status.vendor_status}",
        remote_job_id=status.job_id,
        vendor_status=status.vendor_status,
        vendor_code=status.error_code,
    )


# A page as (page number, Markdown, whether the vendor parsed it).
_Page = tuple[int, str, bool]


def _v2_pages(markdown: Mapping[str, Any]) -> list[_Page]:
    raw = markdown.get("pages")
    if not isinstance(raw, list):
        _bad_response("the v2 markdown expansion has no pages list", dict(markdown))
    pages: list[_Page] = []
    for index, page in enumerate(raw, start=1):
        if not isinstance(page, dict):
            _bad_response("a markdown page is not an object", page)
        number = page.get("page_number", index)
        ok = page.get("success", True) is not False and isinstance(page.get("markdown"), str)
        pages.append((int(number), str(page.get("markdown", "")) if ok else "", ok))
    return pages


def _v1_page(page: Any) -> _Page:
    if not isinstance(page, dict):
        _bad_response("a v1 page is not an object", page)
    md = page.get("md")
    ok = isinstance(md, str) and page.get("status") not in ("ERROR", "FAILED")
    return (int(page.get("page", 0)), md if isinstance(md, str) and ok else "", ok)


def join_pages(pages: Sequence[str]) -> tuple[str, tuple[int, ...]]:
    """Pages' Markdown joined by a blank line, and where each page after the first starts."""
    parts: list[str] = []
    starts: list[int] = []
    offset = 0
    for index, page in enumerate(pages):
        text = page.strip("\n")
        if index:
            offset += len(PAGE_SEPARATOR)
            starts.append(offset)
        parts.append(text)
        offset += len(text)
    return PAGE_SEPARATOR.join(parts), tuple(starts)


def _result(
    job_id: str, pages: Sequence[_Page], credits: float | None, tier: str | None
) -> RemoteParseResult:
    ordered = sorted(pages, key=lambda p: p[0])
    markdown, starts = join_pages([text for _, text, _ in ordered])
    failed = tuple(number for number, _, ok in ordered if not ok)
    usage = ParseUsage(pages=len(ordered), credits=credits, tier=tier)
    meta: dict[str, Any] = {
        "parser": "llamaparse",
        "remote_job_id": job_id,
        "usage": {"pages": usage.pages, "credits": credits},
    }
    if failed:
        meta["failed_pages"] = list(failed)
    document = ParsedDocument(
        markdown=markdown, page_count=len(ordered), page_starts=starts, metadata=meta
    )
    return RemoteParseResult(job_id, document, usage, failed)
