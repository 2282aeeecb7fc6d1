"""Metrics and logs from real worker processes agree with the database.

Two workers embed through the mock OpenAI server (one 503 on the way, so one retry); each
serves its own /metrics, ``ingestd serve`` serves the fleet figures. Summed over the workers,
the counters must equal what the database recorded, and every log line about a job must name
the job, its document, its correlation id, the worker and the stage.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingestd.config import Settings
from ingestd.mocks import BackgroundServer, free_port
from ingestd.mocks.faults import parse_fault_spec
from ingestd.mocks.openai import OpenAIBehaviour, build_behaviour, create_app
from tests.conftest import worker_env
from tests.e2e.procs import (
    ServeProcess,
    WorkerProcess,
    all_terminal,
    ensure_killed,
    query,
    scrape,
    wait_until,
)
from tests.e2e.test_workers import ingest
from tests.factories import write_corpus

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
JOB_FIELDS = {"job_id", "document_id", "correlation_id", "worker_id", "stage"}


@pytest.fixture
def openai_mock() -> Iterator[tuple[BackgroundServer, str]]:
    key = f"sk-test-{uuid.uuid4().hex}"
    behaviour = OpenAIBehaviour(api_key=key, faults=[parse_fault_spec("http_503:count=1")])
    with BackgroundServer(create_app(behaviour)) as server:
        yield server, key


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def summed(scrapes: list[Samples]) -> Samples:
    out: Samples = {}
    for samples in scrapes:
        for key, value in samples.items():
            out[key] = out.get(key, 0.0) + value
    return out


def metrics_port(worker: WorkerProcess) -> int:
    for event in worker.log_events():
        if event.get("event") == "metrics.listening":
            return int(event["port"])
    return 0


def test_scraped_metrics_agree_with_the_database(
    settings: Settings, tmp_path: Path, openai_mock: tuple[BackgroundServer, str]
) -> None:
    server, key = openai_mock
    env = {
        "INGESTD_EMBEDDER__PROVIDER": "openai",
        "INGESTD_EMBEDDER__BASE_URL": f"{server.url}/v1",
        "INGESTD_EMBEDDER__API_KEY": key,
    }
    url = settings.database_url or ""
    docs = tmp_path / "docs"
    write_corpus(docs, 24, paragraphs=2)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\nnot really a pdf\n")
    assert len(ingest(settings, docs)) == 26
    logs = tmp_path / "logs"
    args = ("--metrics-port", "0", "--concurrency", "8", "--batch-size", "4")
    workers = [WorkerProcess(settings, logs, *args, **env) for _ in range(2)]
    serve = None
    try:
        wait_until(lambda: all_terminal(url, 26), timeout=120, what="every job to finish")
        ports = [wait_until(lambda w=w: metrics_port(w), what="metrics ports") for w in workers]
        fleet_view = summed([scrape(f"http://127.0.0.1:{p}/metrics") for p in ports])
        serve = ServeProcess(settings, logs, **env)
        fleet = scrape(f"{serve.url}/metrics")
    finally:
        for w in workers:
            w.signal(signal.SIGTERM)
        ensure_killed(*workers)
        if serve is not None:
            serve.stop()

    states = dict(query(url, "SELECT state, count(*) FROM jobs GROUP BY state"))
    codes = Counter(
        dict(
            query(
                url,
                "SELECT last_error->>'code', count(*) FROM jobs WHERE state LIKE 'failed%%'"
                " GROUP BY 1",
            )
        )
    )
    tokens = query(url, "SELECT sum((usage->>'embedding_tokens')::int) FROM jobs")[0][0]
    assert states["complete"] == 24 and sum(codes.values()) == 2

    # Each worker counted what it did; together they did everything, exactly once.
    assert total(fleet_view, "ingestd_transitions_total", to_state="complete") == 24
    for code, n in codes.items():
        assert total(fleet_view, "ingestd_job_failures_total", code=code) == n
    assert total(fleet_view, "ingestd_job_failures_total") == 2
    assert total(fleet_view, "ingestd_embedding_tokens_total") == tokens > 0
    # The 503 was seen on the wire, and every job of its slice retried the embed stage.
    assert total(fleet_view, "ingestd_external_requests_total", service="openai", outcome="ok") > 0
    assert total(fleet_view, "ingestd_external_requests_total", outcome="server_error") == 1
    retries = query(url, "SELECT count(*) FROM job_events WHERE kind = 'retry'")[0][0]
    assert total(fleet_view, "ingestd_job_retries_total", service="openai") == retries > 0
    assert total(fleet_view, "ingestd_stage_duration_seconds_count", stage="chunking") == 24

    # The fleet figures come from the database, whoever scrapes them.
    assert total(fleet, "ingestd_jobs", state="complete") == 24
    for code, n in codes.items():
        assert total(fleet, "ingestd_failed_jobs", code=code) == n
    assert total(fleet, "ingestd_usage", kind="embedding_tokens") == tokens
    assert total(fleet, "ingestd_workers", status="live") == 2
    assert total(fleet, "ingestd_jobs_runnable") == 0

    # Every log line about a job can be joined to its events.
    lines = [e for w in workers for e in w.log_events() if "job_id" in e]
    assert {e["event"] for e in lines} >= {"job.fail", "job.retry"}
    for line in lines:
        assert set(line) >= JOB_FIELDS, line
    job_ids = {str(r[0]) for r in query(url, "SELECT id FROM jobs")}
    assert {e["job_id"] for e in lines} <= job_ids


def free_port_pair() -> int:
    """A port p with p and p + 1 both free a moment ago."""
    for _ in range(50):
        base = free_port()
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", base + 1))
        except OSError:
            continue
        return base
    raise AssertionError("no two adjacent free ports")


class HeldEmbeddings:
    """An ASGI wrapper that holds every embedding request until ``release()``: the workers stay
    busy (and scrapeable) for as long as the test needs, however slowly they started."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.released = threading.Event()

    def release(self) -> None:
        self.released.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/embeddings"):
            while not self.released.is_set():
                await asyncio.sleep(0.05)
        await self.app(scope, receive, send)


def test_run_with_processes_gives_each_child_its_own_metrics_port(
    settings: Settings, tmp_path: Path
) -> None:
    """``run --processes 2 --metrics-port P``: worker process 0 serves P, process 1 serves P + 1
    (one shared port used to make the second child fail to bind); each is scraped while it runs."""
    key = f"sk-test-{uuid.uuid4().hex}"
    held = HeldEmbeddings(create_app(build_behaviour(api_key=key)))
    docs = tmp_path / "docs"
    write_corpus(docs, 6, paragraphs=1)
    base = free_port_pair()
    with BackgroundServer(held) as server:
        env = worker_env(
            settings,
            INGESTD_EMBEDDER__PROVIDER="openai",
            INGESTD_EMBEDDER__BASE_URL=f"{server.url}/v1",
            INGESTD_EMBEDDER__API_KEY=key,
            INGESTD_WORKER__BATCH_SIZE="1",
            INGESTD_LOG_LEVEL="WARNING",
        )
        run = subprocess.Popen(
            [sys.executable, "-m", "ingestd", "run", str(docs), "--processes", "2",
             "--metrics-port", str(base)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            scraped = {
                port: wait_until(lambda port=port: _try_scrape(port), timeout=60, what=f"{port}")
                for port in (base, base + 1)
            }
            held.release()
            out, _ = run.communicate(timeout=120)
        finally:
            held.release()
            if run.poll() is None:
                run.kill()
            if run.stdout and not run.stdout.closed:
                run.communicate()  # closes the pipe even when the run ended by itself
    assert run.returncode == 0, out
    for port, samples in scraped.items():
        # A worker's own registry: its counters and its process's figures.
        assert ("ingestd_jobs_claimed_total", ()) in samples, port
        assert ("process_cpu_seconds_total", ()) in samples, port
        assert f"metrics at http://127.0.0.1:{port}/metrics" in out
    assert "worker process 0 (pid" in out and "worker process 1 (pid" in out
    assert dict(
        query(settings.database_url or "", "SELECT state, count(*) FROM jobs GROUP BY 1")
    ) == {"complete": 6}


def _try_scrape(port: int) -> Samples | None:
    try:
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
    except httpx.HTTPError:
        return None
    return samples if any(name.startswith("ingestd_") for name, _ in samples) else None
