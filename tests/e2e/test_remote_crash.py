"""A worker process killed between uploading to LlamaParse and recording the remote job id: its
successor finds the remote job instead of uploading (and paying) again. Also `doctor --live`
against the mocks, so the live check's code path runs without a vendor."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingestd.config import Settings
from ingestd.mocks import BackgroundServer
from ingestd.mocks.llamaparse import create_app as create_llamaparse
from ingestd.mocks.openai import create_app as create_openai
from tests.e2e.procs import WorkerProcess, ensure_killed, run_ingestd, state_counts, wait_until
from tests.e2e.test_workers import ingest
from tests.factories import markdown_document

pytestmark = pytest.mark.e2e


@pytest.fixture
def llamaparse() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_llamaparse(), lifespan="on") as server:
        yield server


def remote_env(server: BackgroundServer, **extra: str) -> dict[str, str]:
    return {
        "INGESTD_PARSER__PROVIDER": "llamaparse",
        "INGESTD_PARSER__BASE_URL": server.url,
        "INGESTD_PARSER__API_KEY": "llx-test",
        "INGESTD_PARSER__POLL_AFTER_SECONDS": "0.3",
        **extra,
    }


def test_a_worker_killed_after_uploading_does_not_upload_twice(
    settings: Settings, tmp_path: Path, llamaparse: BackgroundServer
) -> None:
    url = settings.database_url or ""
    doc = tmp_path / "in" / "paid.md"
    doc.parent.mkdir()
    doc.write_text(markdown_document(11, paragraphs=4))
    ingest(settings, doc.parent)
    crash = json.dumps({"remote_parse.after_submit": {"action": "crash"}})
    victim = WorkerProcess(
        settings,
        tmp_path / "logs",
        **remote_env(llamaparse, INGESTD_FAULTS=crash, INGESTD_WORKER__LEASE_SECONDS="1.5"),
    )
    successor = None
    try:
        assert victim.wait(timeout=60) == -signal.SIGKILL  # died right after the upload
        successor = WorkerProcess(settings, tmp_path / "logs", **remote_env(llamaparse))
        wait_until(lambda: state_counts(url) == {"complete": 1}, what="the successor")
    finally:
        ensure_killed(victim, *([successor] if successor else []))
    counters = httpx.get(llamaparse.url + "/_admin/counters").json()
    assert counters["uploads"] == 1
    assert successor.saw("remote_parse.recovered")


def test_doctor_live_calls_each_configured_vendor(
    settings: Settings, llamaparse: BackgroundServer
) -> None:
    with BackgroundServer(create_openai()) as openai:
        done = run_ingestd(
            settings,
            "doctor",
            "--live",
            "--json",
            **remote_env(llamaparse),
            INGESTD_EMBEDDER__PROVIDER="openai",
            INGESTD_EMBEDDER__BASE_URL=openai.url + "/v1",
            INGESTD_EMBEDDER__API_KEY="sk-test",
            INGESTD_LOG_LEVEL="WARNING",
        )
        served = httpx.get(openai.url + "/_admin/counters").json()
    assert done.returncode == 0, done.stdout + done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    # The disk check has nothing to measure on a database it does not run (a URL is set).
    assert checks.pop("disk")["status"] == "skip"
    assert {c["status"] for c in checks.values()} == {"ok"}
    assert "text-embedding-3-small" in checks["embedder"]["detail"]
    assert "1 page(s)" in checks["parser"]["detail"]
    assert served["embeddings"] == 1
    assert httpx.get(llamaparse.url + "/_admin/counters").json()["uploads"] == 1
