"""Settings: one pydantic-settings object, read from ``INGESTD_*`` environment variables.

Nested settings use ``__`` (``INGESTD_EMBEDDER__PROVIDER=openai``). Stage implementations are
chosen by a ``provider`` field (a discriminated union), so a new provider is one class and one
line in the union. Every setting is documented in docs/reference/configuration.md.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingestd.errors import ConfigurationError
from ingestd.faultpoints import FaultSpec
from ingestd.parsers.limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_CSV_FIELD_CHARS,
    DEFAULT_MAX_MEMORY_BYTES,
    DEFAULT_MAX_PAGES,
    DEFAULT_MAX_PDF_INFLATED_BYTES,
    DEFAULT_MAX_SHEET_CELLS,
    ParseLimits,
)
from ingestd.redact import redact, register_secret

DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_OWNER = "local"


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("ingestd", appauthor=False))


class HashEmbedderSettings(BaseModel):
    """Deterministic, dependency-free, lexical vectors: for tests, demos and dry runs."""

    provider: Literal["hash"] = "hash"
    dimensions: int = Field(256, ge=8, le=4096)


class LocalEmbedderSettings(BaseModel):
    """A sentence-transformers model on this machine (extra ``ingestd[local]``)."""

    provider: Literal["local"] = "local"
    model: str = "all-MiniLM-L6-v2"
    backend: Literal["torch", "onnx"] = Field(
        "torch",
        description="`torch`: sentence-transformers; `onnx`: ONNX Runtime, on a model exported "
        "once from the model's own weights into `<home>/models` (the same vectors; see "
        "docs/benchmarks/local-embedder.md).",
    )
    batch_size: int = Field(16, ge=1, description="Texts per forward pass of the model.")
    device: str = "cpu"
    # Threads for encoding (torch or ONNX Runtime); None: half the cores.
    num_threads: int | None = Field(None, ge=1)


class OpenAIEmbedderSettings(BaseModel):
    """Any OpenAI-compatible ``/embeddings`` endpoint, through the official SDK."""

    provider: Literal["openai"] = "openai"
    model: str = "text-embedding-3-small"
    base_url: str = "https://api.openai.com/v1"
    # Falls back to OPENAI_API_KEY when unset.
    api_key: SecretStr | None = None
    dimensions: int | None = None
    timeout_seconds: float = 60.0
    max_inputs_per_request: int = Field(2048, ge=1, le=2048)
    max_tokens_per_request: int = Field(300_000, ge=1, le=300_000)
    max_tokens_per_input: int = Field(8191, ge=1, le=8191)
    price_per_million_tokens: float = 0.02
    # Requests in flight at once per worker process.
    concurrency: int = Field(4, ge=1, le=64)
    # Cut inputs over max_tokens_per_input instead of failing (the chunker already keeps to it).
    truncate: bool = False
    # The SDK's own retries; ingestd retries (persisted, with backoff) itself, so 0.
    max_retries: int = Field(0, ge=0)

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.environ.get("OPENAI_API_KEY")


EmbedderSettings = Annotated[
    HashEmbedderSettings | LocalEmbedderSettings | OpenAIEmbedderSettings,
    Field(discriminator="provider"),
]


class LocalParserSettings(BaseModel):
    """ingestd's own parsers (PDF, DOCX, PPTX, XLSX, HTML, Markdown, text, CSV, JSON), run in a
    pool of child processes with a time limit per document."""

    provider: Literal["local"] = "local"
    timeout_seconds: float = Field(120.0, gt=0)
    max_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        ge=1,
        description="Largest file parsed, checked before it is read (ingest skips larger files).",
    )
    # Parser processes per worker process (default: one per core, up to 8).
    pool_size: int | None = Field(None, ge=1, le=64)
    max_memory_bytes: int | None = Field(
        DEFAULT_MAX_MEMORY_BYTES,
        ge=64 * 1024 * 1024,
        description="Address space one parse may add (RLIMIT_AS) before it fails with "
        "parse.too_large.",
    )
    max_chars: int = Field(
        DEFAULT_MAX_CHARS,
        ge=1,
        description="Characters of text a document may have; a parse stops as soon as it "
        "passes this (parse.too_large).",
    )
    max_pages: int = Field(
        DEFAULT_MAX_PAGES, ge=1, description="Pages (PDF) or slides (PPTX) a document may have."
    )
    max_sheet_cells: int = Field(
        DEFAULT_MAX_SHEET_CELLS,
        ge=1,
        description="Cells an XLSX workbook may hold, counted while its sheets are read.",
    )
    max_csv_field_chars: int = Field(
        DEFAULT_MAX_CSV_FIELD_CHARS, ge=1024, description="Characters one CSV field may hold."
    )
    max_pdf_inflated_bytes: int = Field(
        DEFAULT_MAX_PDF_INFLATED_BYTES,
        ge=1024 * 1024,
        description="Bytes the Flate streams of a PDF may inflate to (or 20 times the file's "
        "size, if more), checked before PDFium opens it.",
    )

    def parse_limits(self) -> ParseLimits:
        """The limits every local parse runs under."""
        return ParseLimits(
            max_bytes=self.max_bytes,
            max_pages=self.max_pages,
            max_chars=self.max_chars,
            max_sheet_cells=self.max_sheet_cells,
            max_csv_field_chars=self.max_csv_field_chars,
            max_pdf_inflated_bytes=self.max_pdf_inflated_bytes,
        )


class LlamaParseSettings(BaseModel):
    """The LlamaParse cloud API: submitted once, webhooks first, polling as the fallback."""

    provider: Literal["llamaparse"] = "llamaparse"
    base_url: str = "https://api.cloud.llamaindex.ai"
    # Falls back to LLAMA_CLOUD_API_KEY when unset.
    api_key: SecretStr | None = None
    api_version: Literal["v2", "v1"] = "v2"
    tier: str = "cost_effective"
    # Public URL of `ingestd serve`'s /v1/webhooks/llamaparse; unset: no webhooks, polling only.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_max_body_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest webhook body `ingestd serve` accepts (413 beyond it, checked from "
        "Content-Length and while the body streams in, before any JSON work).",
    )
    webhook_tolerance_seconds: float = Field(
        300.0,
        gt=0,
        description="How far a webhook's signed timestamp may be from this server's clock; "
        "older (or later) events are refused with 401 webhook.stale.",
    )
    webhook_pending_wait_seconds: float = Field(
        5.0,
        ge=0,
        le=25,
        description="While one of our submits has not yet stored its remote job id, how long a "
        "webhook for an id we do not know waits for that id to be stored before it is answered "
        "503 webhook.not_ready (the vendor retries; nothing is stored for an unknown id).",
    )
    # Poll this long after submitting if no webhook came; later polls back off to the cap.
    poll_after_seconds: float = Field(30.0, gt=0)
    max_poll_seconds: float = Field(300.0, gt=0)
    timeout_seconds: float = 60.0
    max_bytes: int = Field(50 * 1024 * 1024, ge=1)
    price_per_credit_usd: float = 0.00125

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.environ.get("LLAMA_CLOUD_API_KEY")


ParserSettings = Annotated[
    LocalParserSettings | LlamaParseSettings, Field(discriminator="provider")
]


class ChunkerSettings(BaseModel):
    tokens: int = Field(400, ge=16, le=8191)
    overlap: int = Field(40, ge=0)
    encoding: str = "cl100k_base"


class WorkerSettings(BaseModel):
    concurrency: int = Field(64, ge=1, le=1024)
    batch_size: int = Field(32, ge=1, le=500)
    lease_seconds: float = Field(DEFAULT_LEASE_SECONDS, gt=0)
    poll_seconds: float = Field(2.0, gt=0)
    grace_seconds: float = Field(20.0, ge=0)
    max_attempts: int = Field(5, ge=1)
    backoff_base_seconds: float = Field(2.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)
    # Chunks embedded (and their vectors committed) per step of the embed stage.
    embed_slice: int = Field(1024, ge=1)
    # Commit consecutive cheap stages of a batch in one transaction (see stages.FUSABLE_STATES).
    fuse_stages: bool = True


class ObservabilitySettings(BaseModel):
    """Metrics, alerts and the dashboard (docs/howto/observability.md)."""

    metrics_enabled: bool = Field(
        True, description="Record process metrics (off only to measure what they cost)."
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="`ingestd worker`: serve this process's metrics on this port (0: any free "
        "port, logged as `metrics.listening`); unset: not served.",
    )
    metrics_host: str = Field("127.0.0.1", description="Address the worker metrics port binds.")
    worker_stale_seconds: float = Field(
        60.0, gt=0, description="A worker whose heartbeat is older than this is stale, not live."
    )
    alert_interval_seconds: float = Field(
        30.0, gt=0, description="`ingestd serve` evaluates the alert rules this often."
    )
    alert_webhook_url: SecretStr | None = Field(
        None, description="POST alert transitions here (Slack-compatible JSON); unset: no POST."
    )
    stuck_job_seconds: float = Field(
        1800.0, gt=0, description="A job in one non-terminal state this long is stuck."
    )
    backlog_age_seconds: float = Field(
        1800.0, gt=0, description="Alert when the oldest runnable job has waited this long."
    )
    error_rate_threshold: float = Field(
        0.2, gt=0, le=1, description="Alert when this share of jobs finishing fails..."
    )
    error_rate_min_jobs: int = Field(
        20, ge=1, description="...over at least this many finished jobs in the window."
    )
    alert_window_seconds: float = Field(
        600.0, gt=0, description="The window of the error-rate and lease-expiry rules."
    )
    lease_expiries_threshold: int = Field(
        10, ge=1, description="Alert when this many leases expire within the window."
    )
    long_lease_seconds: float = Field(
        900.0, gt=0, description="`ingestd doctor`: a job held by one claim this long is flagged."
    )
    min_free_disk_bytes: int = Field(
        1024**3, ge=0, description="`ingestd doctor`: free space below this under the home fails."
    )
    session_hours: float = Field(
        12.0, gt=0, description="Lifetime of a dashboard session opened with an admin key."
    )


class BlobSettings(BaseModel):
    """Where uploads and parsed text are kept (docs/decisions/0008-blob-stores.md)."""

    backend: Literal["auto", "local", "postgres", "s3"] = Field(
        "auto",
        description="`local` (a folder under the home), `postgres` (the database itself), `s3` "
        "(an S3-compatible bucket), or `auto`: `postgres` when `INGESTD_DATABASE_URL` is set, "
        "else `local`.",
    )
    part_bytes: int = Field(
        1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="postgres: blobs are stored in parts of this size (reads stream by part).",
    )
    s3_bucket: str | None = Field(None, description="s3: the bucket (must exist).")
    s3_prefix: str = Field("", description="s3: a key prefix inside the bucket, e.g. `ingestd/`.")
    s3_endpoint_url: str | None = Field(
        None, description="s3: the endpoint of an S3-compatible server; unset: AWS."
    )
    s3_region: str | None = Field(None, description="s3: the region; unset: boto3's default.")
    s3_access_key_id: SecretStr | None = Field(
        None, description="s3: the access key id; unset: boto3's credential chain."
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="s3: the secret access key; unset: boto3's credential chain."
    )


class ServiceLimitSettings(BaseModel):
    """One external service's rate limits, shared by every worker (per model for embeddings).

    The figures are per ``window_seconds`` (60: per minute); unset means unlimited. They are the
    starting point: the vendor's ``x-ratelimit-*`` headers correct them as answers arrive.
    """

    requests_per_minute: float | None = Field(None, gt=0, description="Requests per window.")
    tokens_per_minute: float | None = Field(None, gt=0, description="Tokens per window.")
    pages_per_minute: float | None = Field(None, gt=0, description="Pages per window.")
    window_seconds: float = Field(60.0, gt=0, description="The window the figures are per.")


def _default_service_limits() -> dict[str, ServiceLimitSettings]:
    # OpenAI's first paid tier for text-embedding-3-*; LlamaParse documents no figure.
    return {
        "openai": ServiceLimitSettings(requests_per_minute=3000, tokens_per_minute=1_000_000),
        "llamaparse": ServiceLimitSettings(requests_per_minute=600),
    }


class BreakerSettings(BaseModel):
    """Circuit breakers per external service, their state shared by every worker."""

    failure_rate: float = Field(
        0.5, gt=0, le=1, description="Open when this share of the window's calls failed."
    )
    min_calls: int = Field(5, ge=1, description="Calls a window needs before it can open.")
    window_seconds: float = Field(30.0, gt=0, description="Length of the counting window.")
    open_seconds: float = Field(10.0, gt=0, description="Open this long before one probe.")
    probe_timeout_seconds: float = Field(
        60.0, gt=0, description="A probe that reports nothing for this long is replaced."
    )


class BudgetSettings(BaseModel):
    """A spending cap: when the next call would cross it, jobs park (``budget.exhausted``)."""

    service: str = Field(description="openai, llamaparse, ... or * for every service.")
    owner: str | None = Field(
        None, description="One owner; * for each owner separately; unset for all owners together."
    )
    period: Literal["day", "month"] = Field("day", description="Calendar period (UTC).")
    usd: float | None = Field(None, ge=0, description="Cost cap in US dollars.")
    tokens: float | None = Field(None, ge=0, description="Token cap.")
    pages: float | None = Field(None, ge=0, description="Page cap.")


class TrafficSettings(BaseModel):
    """Fleet-wide traffic control: shared rate limits, circuit breakers, budgets."""

    mode: Literal["shared", "process", "off"] = Field(
        "shared",
        description="Rate limits kept in the database for every worker (shared), in each "
        "process on its own (process: the behaviour before shared limits), or none (off).",
    )
    max_wait_seconds: float = Field(
        20.0, ge=0, description="A request waits this long for capacity; longer: the job parks."
    )
    headroom: float = Field(
        0.95, gt=0, le=1, description="Share of the vendor's limit that ingestd aims to use."
    )
    adapt_to_headers: bool = Field(
        True, description="Correct limits from the vendor's x-ratelimit-* headers."
    )
    limits: dict[str, ServiceLimitSettings] = Field(
        default_factory=_default_service_limits, description="Rate limits by service."
    )
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    budgets: list[BudgetSettings] = Field(
        default_factory=list, description="Spending caps (JSON list of budgets)."
    )
    budget_recheck_seconds: float = Field(
        300.0, gt=0, description="Jobs parked on a budget look again this often."
    )

    @field_validator("limits", mode="after")
    @classmethod
    def _keep_other_services(
        cls, limits: dict[str, ServiceLimitSettings]
    ) -> dict[str, ServiceLimitSettings]:
        """Setting one service's limits leaves the other services' defaults in place."""
        return {**_default_service_limits(), **limits}


class ApiSettings(BaseModel):
    """The HTTP app (``ingestd serve``)."""

    docs_enabled: bool = Field(
        False,
        description="Serve the API docs pages (/docs, /redoc, /openapi.json); off by default, "
        "since they map the attack surface for anyone who can reach the port.",
    )
    host: str = Field("127.0.0.1", description="Address `ingestd serve` binds.")
    port: int = Field(8900, ge=0, le=65535, description="Port `ingestd serve` listens on.")
    workers: int = Field(1, ge=1, le=64, description="Server processes (uvicorn workers).")
    max_upload_bytes: int = Field(
        100 * 1024 * 1024, ge=1, description="Largest file in an upload (413 beyond)."
    )
    max_request_bytes: int = Field(
        512 * 1024 * 1024,
        ge=1024,
        description="Largest upload request body, all parts together (413 beyond).",
    )
    max_parts: int = Field(
        100, ge=1, le=100_000, description="Most parts (files and fields) in one upload (413)."
    )
    max_json_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest body of any other request (413 beyond)."
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="Largest total size of a request's headers (431)."
    )
    max_metadata_bytes: int = Field(
        16 * 1024, ge=2, description="Largest `metadata` JSON object of an upload (413)."
    )
    max_json_depth: int = Field(
        16, ge=1, le=256, description="Deepest nesting allowed in a JSON body or metadata (422)."
    )
    jwt_secret: SecretStr | None = Field(
        None, description="Accept HS256 JWTs signed with this secret; `sub` is the owner."
    )
    jwt_public_key: str | None = Field(
        None, description="Accept RS256 JWTs verified with this PEM public key."
    )
    jwt_audience: str | None = Field(None, description="Required `aud` of accepted JWTs.")
    jwt_admin_claim: str | None = Field(
        None, description="A JWT whose claim of this name is `true` acts for every owner."
    )


class EmbedBatchingSettings(BaseModel):
    """Cross-document micro-batching of a remote embedder's requests, per worker process
    (docs/decisions/0009-drain-performance.md)."""

    enabled: bool = Field(
        True,
        description="Merge the embed calls of all a worker's batches into requests filled "
        "towards the embedder's per-request limits (openai only).",
    )
    linger_ms: float = Field(
        50.0,
        ge=0,
        le=10_000,
        description="Longest an input waits for a request to fill before a partial one is sent "
        "(where no worker drives the filling).",
    )
    fill: bool = Field(
        True,
        description="A worker fills its requests: while every batch it runs waits on the "
        "embedder, it claims more jobs (beyond `worker.concurrency`) instead of sending a "
        "partial request, and sends the partial request at once when it can claim nothing.",
    )
    fill_wait_ms: float = Field(
        15_000.0,
        ge=0,
        le=60_000,
        description="With `fill`: longest an input waits for its request to fill while the "
        "worker is still producing input (parsing, chunking other documents).",
    )
    fill_max_jobs: int = Field(
        1024,
        ge=1,
        le=100_000,
        description="With `fill`: most jobs a worker holds while filling requests.",
    )


class Settings(BaseSettings):
    """Everything ingestd reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="INGESTD_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(default_factory=default_home)
    # Printed only through ingestd.redact; kept out of repr() (it may hold a password).
    database_url: str | None = Field(None, repr=False)
    db_pool_size: int = Field(8, ge=1)
    statement_timeout_ms: int = Field(30_000, ge=0)
    owner: str = DEFAULT_OWNER
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"
    # Named fault points to arm (chaos testing), see ingestd/faultpoints.py.
    faults: dict[str, FaultSpec] = Field(default_factory=dict)

    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    parser: ParserSettings = Field(default_factory=LocalParserSettings)
    chunker: ChunkerSettings = Field(default_factory=ChunkerSettings)
    embedder: EmbedderSettings = Field(default_factory=HashEmbedderSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    blobs: BlobSettings = Field(default_factory=BlobSettings)
    embed_batching: EmbedBatchingSettings = Field(default_factory=EmbedBatchingSettings)
    traffic: TrafficSettings = Field(default_factory=TrafficSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"


def read_settings(**values: Any) -> Settings:
    """Settings from the environment (and ``values``). An invalid setting is a
    ConfigurationError naming the field and the rule, never the value (it may be a key)."""
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        )
        raise ConfigurationError(f"invalid settings: {redact(problems)}") from None
    register_secrets(settings)
    return settings


def _secret_values(value: Any) -> list[str]:
    """Every SecretStr inside ``value`` (nested models, lists and dicts walked)."""
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, BaseModel):
        value = list(vars(value).values())
    elif isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [secret for item in value for secret in _secret_values(item)]
    return []


def register_secrets(settings: Settings) -> None:
    """Tell ingestd.redact the secret values these settings hold, so no printer shows them."""
    for secret in _secret_values(settings):
        register_secret(secret)
    for group in (settings.embedder, settings.parser):
        resolve = getattr(group, "resolved_api_key", None)
        if resolve is not None:
            register_secret(resolve())
    if settings.database_url:
        # Unparsable: it fails later, with the driver's message, redacted.
        with contextlib.suppress(ProgrammingError):
            register_secret(str(conninfo_to_dict(settings.database_url).get("password") or ""))
