"""Jobs of the mock LlamaParse server, their pages, and how the vendor's responses show them.

Pure data and functions: a :class:`MockJob` and its :class:`MockPage` list, splitting a parsed
document into pages (:func:`parse_pages`, with ingestd's local parsers), page selection, the
JSON shapes of the v2 job and its ``?expand=`` fields and of the v1 status and results, and the
request models a job is created from (:class:`ParseConfiguration`).
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ingestd.parsers.detect import detect_media_type
from ingestd.parsers.local import LocalParser

Tier = Literal["fast", "cost_effective", "agentic", "agentic_plus"]
PROJECT_ID = "00000000-0000-4000-8000-00000000cafe"
V1_PAGE_SEPARATOR = "\n---\n"
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
_V1_STATUS = {"PENDING": "PENDING", "RUNNING": "PENDING", "FAILED": "ERROR"}


@dataclass
class WebhookTarget:
    url: str
    events: list[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    secret: str | None = None
    legacy: bool = False  # v1 ``webhook_url``: posts the results, unsigned


@dataclass
class MockPage:
    number: int
    markdown: str
    error: str | None = None


@dataclass
class MockJob:
    id: str
    api: Literal["v1", "v2"]
    tier: str
    version: str
    filename: str
    data: bytes
    project_id: str = PROJECT_ID
    status: str = "PENDING"
    error_message: str | None = None
    error_code: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    pages: list[MockPage] = field(default_factory=list)
    credits: float | None = None
    webhook: WebhookTarget | None = None
    max_pages: int | None = None
    target_pages: list[int] | None = None  # 1-based
    fail_a_page: bool = False
    user_metadata: dict[str, str] | None = None
    held_events: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def partial(self) -> bool:
        return any(p.error for p in self.pages)


@dataclass
class MockFile:
    id: str
    name: str
    data: bytes
    purpose: str
    external_file_id: str | None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


# -- parsing the upload -----------------------------------------------------------------------


def parse_pages(data: bytes, filename: str) -> list[str]:
    """The document's Markdown, page by page, as ingestd's local parsers produce it."""
    media_type = detect_media_type(data, filename)
    doc = LocalParser().parse(data, media_type, filename)
    bounds = [0, *doc.page_starts, len(doc.markdown)]
    pages = [doc.markdown[a:b].strip("\n") for a, b in itertools.pairwise(bounds)]
    return pages or [""]


def parse_target_pages(spec: str, one_based: bool) -> list[int]:
    """``"1,3,5-7"`` -> ``[1, 3, 5, 6, 7]`` (1-based out; v1 counts from 0). ValueError if bad."""
    pages: set[int] = set()
    shift = 0 if one_based else 1
    for part in filter(None, (p.strip() for p in spec.split(","))):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low < 1 - shift or high < low:
            raise ValueError(f"invalid page range {part!r}")
        pages.update(range(low + shift, high + shift + 1))
    return sorted(pages)


def select_pages(pages: list[str], job: MockJob) -> list[MockPage]:
    numbered = [MockPage(i, md) for i, md in enumerate(pages, start=1)]
    if job.target_pages is not None:
        wanted = set(job.target_pages)
        numbered = [p for p in numbered if p.number in wanted]
    return numbered[: job.max_pages] if job.max_pages else numbered


_MD_MARKUP = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"^\s{0,3}#{1,6}\s+", re.M), ""),
    (re.compile(r"(\*\*|__|`)"), ""),
    (re.compile(r"^\|?\s*:?-{3,}.*$", re.M), ""),
    (re.compile(r"\s*\|\s*"), " "),
]


def markdown_to_text(markdown: str) -> str:
    text = markdown
    for pattern, replacement in _MD_MARKUP:
        text = pattern.sub(replacement, text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def page_items(markdown: str, v1: bool) -> list[dict[str, Any]]:
    """Blocks of a page as the vendor's structured items (headings and text)."""
    items: list[dict[str, Any]] = []
    for block in filter(None, (b.strip() for b in markdown.split("\n\n"))):
        heading = re.match(r"(#{1,6})\s+(.*)", block)
        if heading:
            level = len(heading.group(1))
            items.append({"type": "heading", ("lvl" if v1 else "level"): level, "md": block})
            items[-1]["value"] = heading.group(2)
        else:
            items.append({"type": "text", "md": block, "value": markdown_to_text(block)})
    return items


# -- response shapes --------------------------------------------------------------------------


def iso_time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def v2_job(job: MockJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "project_id": job.project_id,
        "status": job.status,
        "created_at": iso_time(job.created_at),
        "updated_at": iso_time(job.updated_at),
        "error_message": job.error_message,
        "name": job.filename,
        "tier": job.tier,
        "usage": {"credits": job.credits},
        "user_metadata": job.user_metadata,
    }


def v1_status(job: MockJob) -> str:
    if job.status == "COMPLETED":
        return "PARTIAL_SUCCESS" if job.partial else "SUCCESS"
    return _V1_STATUS.get(job.status, job.status)


def v1_job(job: MockJob) -> dict[str, Any]:
    body: dict[str, Any] = {"id": job.id, "status": v1_status(job)}
    if job.status == "FAILED":
        body["error_code"] = job.error_code or "PARSE_ERROR"
        body["error_message"] = job.error_message
    return body


def job_metadata(job: MockJob) -> dict[str, Any]:
    return {
        "job_pages": len(job.pages),
        "job_auto_mode_triggered_pages": 0,
        "job_is_cache_hit": False,
        "credits_used": job.credits or 0,
        "tier": job.tier,
    }


def _v2_markdown_page(page: MockPage) -> dict[str, Any]:
    if page.error:
        return {"page_number": page.number, "error": page.error, "success": False}
    return {"page_number": page.number, "markdown": page.markdown, "success": True}


def _v2_items_page(page: MockPage) -> dict[str, Any]:
    if page.error:
        return {"page_number": page.number, "error": page.error, "success": False}
    items = page_items(page.markdown, v1=False)
    return {
        "page_number": page.number,
        "items": items,
        "page_width": 612.0,
        "page_height": 792.0,
        "success": True,
    }


def v2_expansions(job: MockJob, expand: set[str]) -> dict[str, Any]:
    """The ``?expand=`` fields of ``GET /api/v2/parse/{id}`` (empty until the job completes)."""
    if job.status != "COMPLETED":
        return {}
    ok = [p for p in job.pages if not p.error]
    builders: dict[str, Any] = {
        "markdown": lambda: {"pages": [_v2_markdown_page(p) for p in job.pages]},
        "text": lambda: {
            "pages": [{"page_number": p.number, "text": markdown_to_text(p.markdown)} for p in ok]
        },
        "markdown_full": lambda: "\n\n".join(p.markdown for p in ok),
        "text_full": lambda: "\n\n".join(markdown_to_text(p.markdown) for p in ok),
        "items": lambda: {"pages": [_v2_items_page(p) for p in job.pages]},
        "metadata": lambda: {
            "pages": [{"page_number": p.number, "confidence": 1.0} for p in job.pages],
            "document": {"confidence": 1.0},
        },
        "job_metadata": lambda: job_metadata(job),
        "usage": lambda: {"pages": len(job.pages), "credits": job.credits},
    }
    return {name: build() for name, build in builders.items() if name in expand}


def v1_json_page(page: MockPage) -> dict[str, Any]:
    return {
        "page": page.number,
        "text": markdown_to_text(page.markdown),
        "md": page.markdown,
        "images": [],
        "charts": [],
        "tables": [],
        "layout": [],
        "items": page_items(page.markdown, v1=True),
        "status": "ERROR" if page.error else "OK",
        "links": [],
        "width": 612.0,
        "height": 792.0,
    }


def v1_result(job: MockJob, kind: str) -> dict[str, Any]:
    ok = [p for p in job.pages if not p.error]
    meta = job_metadata(job)
    if kind == "markdown":
        return {"markdown": V1_PAGE_SEPARATOR.join(p.markdown for p in ok), "job_metadata": meta}
    if kind == "text":
        text = V1_PAGE_SEPARATOR.join(markdown_to_text(p.markdown) for p in ok)
        return {"text": text, "job_metadata": meta}
    return {"pages": [v1_json_page(p) for p in job.pages], "job_metadata": meta}


# -- requests ---------------------------------------------------------------------------


class PageRanges(BaseModel):
    max_pages: int | None = Field(None, ge=1)
    target_pages: str | None = None


class WebhookConfiguration(BaseModel):
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    webhook_headers: dict[str, Any] | None = None
    webhook_output_format: Literal["json", "string"] | None = None
    webhook_signing_secret: str | None = None


class ParseConfiguration(BaseModel):
    """The v2 configuration (``configuration`` form field, or the JSON body of POST /parse)."""

    model_config = ConfigDict(extra="allow")

    tier: Tier
    version: str = Field(pattern=r"^(latest|\d{4}-\d{2}-\d{2})$")
    page_ranges: PageRanges | None = None
    webhook_configurations: list[WebhookConfiguration] | None = None
    user_metadata: dict[str, str] | None = None
    file_id: str | None = None
    source_url: str | None = None


def webhook_target(configs: list[WebhookConfiguration] | None) -> WebhookTarget | None:
    """Where a job's webhooks go: the first configuration only, as the vendor does."""
    first = configs[0] if configs else None
    if first is None or not first.webhook_url:
        return None
    headers = {k: str(v) for k, v in (first.webhook_headers or {}).items()}
    return WebhookTarget(
        first.webhook_url, first.webhook_events, headers, first.webhook_signing_secret
    )
