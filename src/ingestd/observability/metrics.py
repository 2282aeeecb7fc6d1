"""Process metrics: what one worker process did, recorded with prometheus-client.

Every worker process keeps its own counters and histograms and serves them on its own port
(``ingestd worker --metrics-port``); Prometheus scrapes each process and sums across them, so
several processes on several machines stay correct without shared state. Figures that belong
to the fleet rather than to a process (queue depth, live workers) come from the database at
scrape time instead (``ingestd.observability.fleet``).

Recording is cheap by design: a handful of counter increments per job and stage, no I/O. It can
be switched off (``INGESTD_OBSERVABILITY__METRICS_ENABLED=false``) to measure what it costs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import structlog
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

log = structlog.get_logger(__name__)

# Stage durations run from a millisecond (validate) to minutes (a large PDF, a remote parse).
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
EXTERNAL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

STAGE_SECONDS = Histogram(
    "ingestd_stage_duration_seconds",
    "Time a stage took for one job, by the state the job was in when the stage ran.",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
TRANSITIONS = Counter(
    "ingestd_transitions",
    "Job outcomes committed by this process: kind is transition, retry, fail or wait.",
    ["stage", "kind", "to_state"],
)
FAILURES = Counter(
    "ingestd_job_failures",
    "Jobs that ended in a failed state, by the stage that failed and the error code.",
    ["stage", "code"],
)
RETRIES = Counter(
    "ingestd_job_retries",
    "Stage retries scheduled (with backoff), by stage, error code and the service that failed.",
    ["stage", "code", "service"],
)
EMBEDDING_TOKENS = Counter(
    "ingestd_embedding_tokens",
    "Embedding tokens recorded on jobs, by model.",
    ["model"],
)
PARSE_PAGES = Counter("ingestd_parse_pages", "Pages parsed, by parser.", ["parser"])
COST_USD = Counter(
    "ingestd_cost_usd", "Cost recorded on jobs in US dollars, by service.", ["service"]
)
EXTERNAL_SECONDS = Histogram(
    "ingestd_external_request_duration_seconds",
    "Latency of calls to external services (to the response headers), by service and outcome.",
    ["service", "outcome"],
    buckets=EXTERNAL_BUCKETS,
)
EXTERNAL_REQUESTS = Counter(
    "ingestd_external_requests",
    "Calls to external services by outcome: ok, rate_limited, client_error, server_error, "
    "timeout, connect_error.",
    ["service", "outcome"],
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "ingestd_rate_limit_wait_seconds",
    "Time a request waited for capacity under a shared rate limit, by limit.",
    ["limit"],
    buckets=WAIT_BUCKETS,
)
LEASE_EXPIRIES = Counter(
    "ingestd_lease_expiries",
    "Jobs this process claimed whose previous lease had expired (a worker died or hung).",
)
FENCED_OUT = Counter(
    "ingestd_fenced_out",
    "Outcomes dropped because another worker had taken the job over (fencing).",
)
CLAIMED = Counter("ingestd_jobs_claimed", "Jobs claimed by this process.")
JOBS_HELD = Gauge("ingestd_worker_jobs_held", "Jobs this worker process holds right now.")

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Turn recording on or off for this process (off: every record_* call returns at once)."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    return _enabled


class OutcomeLike(Protocol):
    """What ``record_outcomes`` reads of a ``jobs.Outcome`` (kept structural: no import cycle)."""

    @property
    def kind(self) -> str: ...
    @property
    def to_state(self) -> str: ...
    @property
    def error(self) -> dict[str, Any] | None: ...
    @property
    def patch(self) -> dict[str, Any]: ...
    @property
    def duration_ms(self) -> int | None: ...


def record_outcomes(
    stage: str,
    outcomes: Iterable[OutcomeLike],
    *,
    service: str = "",
    embedding_model: str = "",
    parser: str = "",
) -> None:
    """Count the committed outcomes of one stage (call it with the outcomes that moved)."""
    if not _enabled:
        return
    for outcome in outcomes:
        TRANSITIONS.labels(stage, outcome.kind, str(outcome.to_state)).inc()
        if outcome.duration_ms is not None and outcome.kind == "transition":
            STAGE_SECONDS.labels(stage).observe(outcome.duration_ms / 1000)
        code = str((outcome.error or {}).get("code", "unknown"))
        if outcome.kind == "fail":
            FAILURES.labels(stage, code).inc()
        elif outcome.kind == "retry":
            RETRIES.labels(stage, code, service or "internal").inc()
        usage = outcome.patch.get("usage")
        if usage:
            _record_usage(usage, service, embedding_model, parser)


def _record_usage(usage: dict[str, Any], service: str, model: str, parser: str) -> None:
    tokens = usage.get("embedding_tokens")
    if tokens:
        EMBEDDING_TOKENS.labels(model).inc(tokens)
    pages = usage.get("parse_pages")
    if pages:
        PARSE_PAGES.labels(parser).inc(pages)
    for key, cost_service in (("embedding_cost_usd", service), ("parse_cost_usd", parser)):
        cost = usage.get(key)
        if cost:
            COST_USD.labels(cost_service or "unknown").inc(cost)


def record_claim(claimed: int, recovered: int) -> None:
    if not _enabled:
        return
    CLAIMED.inc(claimed)
    if recovered:
        LEASE_EXPIRIES.inc(recovered)


def record_fenced_out(count: int = 1) -> None:
    if _enabled and count:
        FENCED_OUT.inc(count)


def record_held(count: int) -> None:
    if _enabled:
        JOBS_HELD.set(count)


def record_external_call(service: str, outcome: str, seconds: float) -> None:
    if not _enabled:
        return
    EXTERNAL_REQUESTS.labels(service, outcome).inc()
    EXTERNAL_SECONDS.labels(service, outcome).observe(seconds)


def record_rate_limit_wait(limit: str, seconds: float) -> None:
    """For the shared rate limiter: how long a request waited for capacity."""
    if _enabled:
        RATE_LIMIT_WAIT_SECONDS.labels(limit).observe(seconds)


def serve_process_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Serve this process's metrics on ``host:port`` (0: any free port) from a daemon thread;
    returns the port bound."""
    server, _ = start_http_server(port, addr=host, registry=REGISTRY)
    bound = int(server.server_port)
    log.info("metrics.listening", host=host, port=bound)
    return bound
