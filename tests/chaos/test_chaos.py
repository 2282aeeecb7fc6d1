"""The chaos suite: workers SIGKILLed, PostgreSQL restarted and cut off, vendors failing, throttling
and down, webhooks lost and doubled — and every document still ends as a clean run ends it.

The bounded run is part of ``make test``; the full one (``make chaos``, marker ``chaos_full``)
processes more documents with a 20-second outage and writes its figures for
docs/benchmarks/chaos.md. Every check of the outcome is in ``harness.check_invariants``; here,
that the chaos really happened."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosPlan, ChaosReport, chaos_run, write_report

pytestmark = pytest.mark.e2e


def assert_chaos_happened(report: ChaosReport) -> None:
    assert report.kills >= 3
    assert report.cuts >= 1 and report.connections_cut >= 1
    assert {"pg_restart", "pg_back", "outage", "outage_over", "blackhole"} <= set(report.events)
    assert {"squeeze_openai_over", "squeeze_llamaparse_over"} <= set(report.events)
    assert report.openai["errors"].get("http_503", 0) > 0
    assert report.openai["rate_limited"] > 0 and report.llamaparse["rate_limited"] > 0
    assert report.llamaparse["webhooks_dropped"] > 0
    assert report.llamaparse["webhooks_duplicated"] > 0


@pytest.mark.timeout(1200)
def test_bounded_chaos_run_ends_like_a_clean_run(tmp_path: Path, pg_base: Path) -> None:
    plan = ChaosPlan(documents=int(os.environ.get("CHAOS_DOCUMENTS", "60")), outage_seconds=10.0)
    report = chaos_run(plan, tmp_path, pg_base / f"chaos-{uuid.uuid4().hex[:8]}")
    assert_chaos_happened(report)


@pytest.mark.chaos_full
@pytest.mark.timeout(3600)
def test_full_chaos_run(tmp_path: Path, pg_base: Path) -> None:
    plan = ChaosPlan(documents=int(os.environ.get("CHAOS_DOCUMENTS", "400")), outage_seconds=20.0)
    report = chaos_run(plan, tmp_path, pg_base / f"chaos-{uuid.uuid4().hex[:8]}")
    out = Path(os.environ.get("CHAOS_REPORT", tmp_path / "chaos-report.json"))
    write_report(report, out)
    print(out.read_text())
    assert_chaos_happened(report)
