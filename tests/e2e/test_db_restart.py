"""Chaos: the embedded PostgreSQL is stopped and started while workers run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.config import HashEmbedderSettings, Settings, WorkerSettings
from ingestd.db.embedded import EmbeddedPostgres
from tests.conftest import TEST_DIMENSIONS
from tests.e2e.procs import WorkerProcess, ensure_killed, query, state_counts, wait_until
from tests.e2e.test_workers import TRANSITIONS, ingest
from tests.factories import write_corpus

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_server(pg_base: Path) -> Iterator[EmbeddedPostgres]:
    """A server of this test's own: stopping it disturbs no other test."""
    server = EmbeddedPostgres(pg_base / f"restart-{uuid.uuid4().hex[:8]}")
    server.ensure_running()
    yield server
    server.stop(mode="immediate")


def test_workers_survive_a_database_restart(own_server: EmbeddedPostgres, tmp_path: Path) -> None:
    url = own_server.status().url()
    settings = Settings(
        home=tmp_path / "home",
        database_url=url,
        embedder=HashEmbedderSettings(dimensions=TEST_DIMENSIONS),
        worker=WorkerSettings(lease_seconds=5, poll_seconds=0.5),
    )
    total = 400
    write_corpus(tmp_path / "docs", total, paragraphs=2)
    ingest(settings, tmp_path / "docs")
    workers = [
        WorkerProcess(settings, tmp_path / "logs", "--concurrency", "8", "--batch-size", "4")
        for _ in range(2)
    ]
    try:
        wait_until(lambda: state_counts(url).get("complete", 0) >= 40, what="progress")
        assert own_server.stop(mode="fast")
        time.sleep(2.0)  # the workers see refused connections for a while
        assert all(w.proc.poll() is None for w in workers)
        own_server.ensure_running()
        wait_until(
            lambda: state_counts(url) == {"complete": total},
            timeout=120,
            what="every document after the restart",
        )
        assert all(w.proc.poll() is None for w in workers), "a worker died"
    finally:
        ensure_killed(*workers)
    dupes = query(
        url,
        "SELECT job_id, from_state, to_state FROM job_events"
        " WHERE kind = 'transition' GROUP BY 1, 2, 3 HAVING count(*) > 1",
    )
    assert dupes == []
    assert query(url, "SELECT count(*) FROM job_events WHERE kind = 'transition'") == [
        (total * TRANSITIONS,)
    ]
    assert query(
        url,
        "SELECT count(*) FROM jobs j WHERE j.chunk_count <> (SELECT count(*)"
        " FROM chunks c WHERE c.document_id = j.document_id)",
    ) == [(0,)]
