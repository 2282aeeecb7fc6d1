"""The shapes of the v1 API's requests and answers (they make the OpenAPI schema)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(examples=["document.not_found"], description="Stable, `<area>.<reason>`.")
    message: str = Field(examples=["no document 6f1c..."], description="For a person.")
    request_id: str = Field(description="Also in the X-Request-ID header and the server log.")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer."""

    error: ErrorDetail


class Progress(BaseModel):
    stage: str
    done: int | None = None
    total: int | None = None
    percent: float | None = None


class JobError(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str
    kind: str | None = None


class Timings(BaseModel):
    created_at: datetime
    updated_at: datetime
    state_changed_at: datetime | None = None
    processing_started_at: datetime | None = None
    completed_at: datetime | None = None
    next_attempt_at: datetime | None = Field(
        None, description="When a worker may take the job up next (retries, parked jobs)."
    )


class Job(BaseModel):
    id: uuid.UUID
    document_id: uuid.UUID
    owner: str
    filename: str
    state: str = Field(examples=["embedding_in_progress"])
    progress: Progress
    error: JobError | None = None
    usage: dict[str, float] = Field(default_factory=dict)
    attempt: int
    retry_count: int
    max_attempts: int | None = None
    chunk_count: int | None = None
    embedding_model: str | None = None
    waiting_on: str | None = Field(
        None,
        description="What a parked job waits for (a rate limit, a circuit breaker, a budget); "
        "waiting is not failing.",
        examples=["breaker:openai"],
    )
    timings: Timings


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class JobEvent(BaseModel):
    id: int = Field(description="Increasing; the SSE stream's event id (Last-Event-ID).")
    job_id: uuid.UUID
    document_id: uuid.UUID | None = None
    kind: str = Field(examples=["transition"])
    from_state: str
    to_state: str
    attempt: int
    duration_ms: int | None = None
    error: dict[str, Any] | None = None
    created_at: datetime


class JobEvents(BaseModel):
    events: list[JobEvent]


# The states a job can be retried from (states.RETRY_FROM; a unit test keeps them equal).
RetryableState = Literal["failed_parse", "failed_chunking", "failed_embedding", "cancelled"]


class RetryFilter(BaseModel):
    """Which jobs to send back: failed (or cancelled) jobs matching every filter given."""

    model_config = ConfigDict(extra="forbid")
    states: list[RetryableState] | None = Field(
        None, examples=[["failed_embedding"]], max_length=20
    )
    error_codes: list[str] | None = Field(None, examples=[["embed.rate_limited"]], max_length=50)
    since: datetime | None = Field(None, description="Only jobs that failed at or after this.")


class Retried(BaseModel):
    retried: int
    job_ids: list[uuid.UUID]


class Document(BaseModel):
    id: uuid.UUID
    owner: str
    filename: str = Field(
        description="A display name; the name as sent is in metadata when it had to be cleaned."
    )
    media_type: str = Field(examples=["application/pdf"])
    size_bytes: int
    sha256: str
    metadata: dict[str, Any]
    created_at: datetime
    job_id: uuid.UUID | None = None
    state: str | None = Field(None, description="The state of the document's job.")
    error_code: str | None = None
    chunk_count: int | None = None


class DocumentPage(BaseModel):
    documents: list[Document]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class Uploaded(BaseModel):
    document_id: uuid.UUID
    job_id: uuid.UUID | None
    filename: str
    duplicate: bool = Field(
        description="The owner already had this content: the existing "
        "document is answered and nothing new is queued."
    )


class UploadResult(BaseModel):
    documents: list[Uploaded]


class Chunk(BaseModel):
    id: str
    ordinal: int
    text: str
    token_count: int
    heading_path: list[str]
    page: int | None = None


class ChunkPage(BaseModel):
    chunks: list[Chunk]
    next_cursor: str | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=4000, examples=["quarterly revenue"])
    k: int = Field(5, ge=1, le=100, description="How many results.")
    document_ids: list[uuid.UUID] | None = Field(None, max_length=1000)
    metadata: dict[str, Any] | None = Field(
        None,
        description="Only documents whose metadata contains this object.",
        examples=[{"team": "finance"}],
    )


class SearchHit(BaseModel):
    chunk_id: str
    document_id: uuid.UUID
    filename: str
    ordinal: int
    text: str
    heading_path: list[str]
    page: int | None = None
    score: float


class SearchResults(BaseModel):
    results: list[SearchHit]
