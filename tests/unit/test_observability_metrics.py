"""Recording metrics: what each outcome adds, and how external calls are labelled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ingestd.observability import metrics
from ingestd.observability.transport import outcome_of_status, service_key


@dataclass
class FakeOutcome:
    kind: str
    to_state: str
    error: dict[str, Any] | None = None
    patch: dict[str, Any] = field(default_factory=dict)
    duration_ms: int | None = None


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (204, "ok"), (404, "client_error"), (429, "rate_limited"), (503, "server_error")],
)
def test_http_statuses_map_to_outcomes(status: int, outcome: str) -> None:
    assert outcome_of_status(status) == outcome


def test_services_are_keyed_by_host_and_port() -> None:
    assert service_key("https://api.openai.com/v1") == "api.openai.com:443"
    assert service_key("http://127.0.0.1:8901/v1/embeddings") == "127.0.0.1:8901"


def test_outcomes_add_transitions_failures_retries_and_usage() -> None:
    before = {
        "complete": value(
            "ingestd_transitions_total", stage="t1", kind="transition", to_state="complete"
        ),
        "fail": value("ingestd_job_failures_total", stage="t1", code="embed.bad"),
        "retry": value(
            "ingestd_job_retries_total", stage="t1", code="embed.slow", service="openai"
        ),
        "tokens": value("ingestd_embedding_tokens_total", model="m1"),
        "cost": value("ingestd_cost_usd_total", service="openai"),
        "timed": value("ingestd_stage_duration_seconds_count", stage="t1"),
    }
    metrics.record_outcomes(
        "t1",
        [
            FakeOutcome(
                "transition",
                "complete",
                duration_ms=20,
                patch={"usage": {"embedding_tokens": 7, "embedding_cost_usd": 0.5}},
            ),
            FakeOutcome("fail", "failed_embedding", error={"code": "embed.bad"}),
            FakeOutcome("retry", "t1", error={"code": "embed.slow"}),
        ],
        service="openai",
        embedding_model="m1",
    )
    assert (
        value("ingestd_transitions_total", stage="t1", kind="transition", to_state="complete")
        == before["complete"] + 1
    )
    assert value("ingestd_job_failures_total", stage="t1", code="embed.bad") == before["fail"] + 1
    assert (
        value("ingestd_job_retries_total", stage="t1", code="embed.slow", service="openai")
        == before["retry"] + 1
    )
    assert value("ingestd_embedding_tokens_total", model="m1") == before["tokens"] + 7
    assert value("ingestd_cost_usd_total", service="openai") == before["cost"] + 0.5
    assert value("ingestd_stage_duration_seconds_count", stage="t1") == before["timed"] + 1


def test_nothing_is_recorded_when_metrics_are_off() -> None:
    before = value("ingestd_transitions_total", stage="t2", kind="transition", to_state="x")
    metrics.set_enabled(False)
    try:
        metrics.record_outcomes("t2", [FakeOutcome("transition", "x")])
        metrics.record_claim(3, 1)
    finally:
        metrics.set_enabled(True)
    assert value("ingestd_transitions_total", stage="t2", kind="transition", to_state="x") == before
