"""Four worker processes under one shared rate limit of the OpenAI mock: the limit is used,
the vendor's 429s stay under 1 % of the requests, and no document pays an attempt for it."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from ingestd.config import Settings
from ingestd.mocks import BackgroundServer
from ingestd.mocks.openai import OpenAIBehaviour, create_app
from tests.e2e.procs import WorkerProcess, ensure_killed, query, state_counts, wait_until
from tests.e2e.test_workers import ingest
from tests.factories import write_corpus

pytestmark = pytest.mark.e2e

DOCS = 50
# 30 requests per 10-second window: 3 a second, a burst of 30 (a per-minute limit, shortened),
# well below what four workers would send unthrottled on a small machine.
LIMIT, WINDOW = 30, 10.0


def test_four_workers_share_one_limit_without_429s(settings: Settings, tmp_path: Path) -> None:
    url = settings.database_url or ""
    write_corpus(tmp_path / "docs", DOCS, paragraphs=1)
    behaviour = OpenAIBehaviour(
        rate_limits={"requests_per_minute": LIMIT, "window_seconds": WINDOW}  # type: ignore[arg-type]
    )
    with BackgroundServer(create_app(behaviour)) as mock:
        env = {
            "INGESTD_EMBEDDER__PROVIDER": "openai",
            "INGESTD_EMBEDDER__BASE_URL": mock.url + "/v1",
            "INGESTD_EMBEDDER__API_KEY": "sk-test",
            "INGESTD_EMBEDDER__DIMENSIONS": "32",
            "INGESTD_TRAFFIC__LIMITS__OPENAI__REQUESTS_PER_MINUTE": str(LIMIT),
            "INGESTD_TRAFFIC__LIMITS__OPENAI__WINDOW_SECONDS": str(WINDOW),
            # A burst this small leaves little room for a busy CPU delaying a send; aim lower.
            "INGESTD_TRAFFIC__HEADROOM": "0.8",
            # One document per batch: one embedding request per document (the fill rule would
            # merge a worker's documents into a few requests, so it is off).
            "INGESTD_WORKER__BATCH_SIZE": "1",
            "INGESTD_EMBED_BATCHING__FILL": "false",
            "INGESTD_WORKER__CONCURRENCY": "8",
        }
        workers = [WorkerProcess(settings, tmp_path / "logs", **env) for _ in range(4)]
        try:
            # The backlog arrives once all four run: one starting late would find it taken.
            wait_until(lambda: running_workers(url) == 4, timeout=90, what="four workers up")
            assert len(ingest(settings, tmp_path / "docs")) == DOCS
            wait_until(
                lambda: state_counts(url).get("complete") == DOCS, timeout=90, what="all complete"
            )
        finally:
            for worker in workers:
                worker.signal(signal.SIGTERM)
            for worker in workers:
                assert worker.wait(timeout=60) == 0
            ensure_killed(*workers)
        counters = httpx.get(mock.url + "/_admin/counters").json()
    served = counters["requests"]
    assert served >= DOCS
    assert counters.get("rate_limited", 0) < 0.01 * served
    assert query(url, "SELECT max(retry_count) FROM jobs") == [(0,)]
    # Each of the four processes sent requests: the limit was shared, not taken by one.
    senders = query(
        url, "SELECT count(DISTINCT worker_id) FROM job_events WHERE to_state = 'embeddings_stored'"
    )
    assert senders[0][0] == 4


def running_workers(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM workers WHERE status = 'running'")[0][0])
