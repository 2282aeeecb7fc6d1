"""Real worker processes: draining a corpus together, and surviving SIGKILL, SIGTERM, SIGSTOP."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from ingestd.config import Settings
from tests.e2e.procs import (
    WorkerProcess,
    ensure_killed,
    query,
    run_ingestd,
    state_counts,
    wait_until,
)
from tests.factories import markdown_document, write_corpus

pytestmark = pytest.mark.e2e

TRANSITIONS = 9  # uploaded -> ... -> complete


def ingest(settings: Settings, path: Path, owner: str = "local") -> list[dict[str, str]]:
    done = run_ingestd(settings, "ingest", str(path), "--json", INGESTD_OWNER=owner)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def chunk_rows(url: str, owner: str) -> list[tuple[object, ...]]:
    return query(
        url,
        "SELECT c.ordinal, c.text, c.embedding::text FROM chunks c"
        " WHERE c.owner = %s ORDER BY c.ordinal",
        (owner,),
    )


def test_three_workers_drain_300_documents(settings: Settings, tmp_path: Path) -> None:
    url = settings.database_url or ""
    write_corpus(tmp_path / "docs", 300, paragraphs=2)
    assert len(ingest(settings, tmp_path / "docs")) == 300
    workers = [
        WorkerProcess(
            settings, tmp_path / "logs", "--burst", "--concurrency", "16", "--batch-size", "8"
        )
        for _ in range(3)
    ]
    try:
        assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    finally:
        ensure_killed(*workers)
    assert state_counts(url) == {"complete": 300}
    # Each stage of each job succeeded exactly once.
    per_job = query(
        url,
        "SELECT job_id, from_state, to_state, count(*) FROM job_events"
        " WHERE kind = 'transition' GROUP BY 1, 2, 3 HAVING count(*) > 1",
    )
    assert per_job == []
    totals = query(
        url, "SELECT count(*), count(DISTINCT job_id) FROM job_events WHERE kind = 'transition'"
    )
    assert totals == [(300 * TRANSITIONS, 300)]
    # No duplicate chunks: every document has exactly the chunks its job counted.
    mismatched = query(
        url,
        "SELECT j.id FROM jobs j WHERE j.chunk_count <> "
        "(SELECT count(*) FROM chunks c WHERE c.document_id = j.document_id)",
    )
    assert mismatched == []
    used = {w.worker_id() for w in workers}
    workers_seen = query(url, "SELECT DISTINCT worker_id FROM job_events")
    assert {row[0] for row in workers_seen} <= used and len(workers_seen) >= 2
    assert query(url, "SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL") == [(0,)]


def test_sigkill_mid_stage_is_taken_over_after_the_lease(
    settings: Settings, tmp_path: Path
) -> None:
    url = settings.database_url or ""
    doc = tmp_path / "in" / "long.md"
    doc.parent.mkdir()
    doc.write_text(markdown_document(5, paragraphs=30))
    ingest(settings, doc.parent, owner="crash")
    fault = json.dumps({"embed.after_slice": {"action": "sleep", "seconds": 120}})
    victim = WorkerProcess(
        settings,
        tmp_path / "logs",
        INGESTD_FAULTS=fault,
        INGESTD_WORKER__EMBED_SLICE="3",
        INGESTD_WORKER__LEASE_SECONDS="2",
    )
    rescuer = None
    try:
        wait_until(lambda: victim.saw("fault.hit"), what="the victim to be mid-embedding")
        partial = query(url, "SELECT count(*) FROM document_vector_buffer")[0][0]
        assert partial > 0  # some vectors are written, not all: the stage is half done
        victim.signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
        killed_at = time.monotonic()
        rescuer = WorkerProcess(settings, tmp_path / "logs", INGESTD_WORKER__EMBED_SLICE="3")
        wait_until(lambda: state_counts(url) == {"complete": 1}, what="the takeover")
        assert time.monotonic() - killed_at >= 1.0  # not before the lease expired
        # The same content processed without a crash gives the same chunks and vectors.
        doc2 = tmp_path / "again" / "long.md"
        doc2.parent.mkdir()
        doc2.write_text(doc.read_text())
        ingest(settings, doc2.parent, owner="clean")
        wait_until(lambda: state_counts(url) == {"complete": 2}, what="the clean run")
    finally:
        ensure_killed(victim, *([rescuer] if rescuer else []))
    assert chunk_rows(url, "crash") == chunk_rows(url, "clean")
    assert len(chunk_rows(url, "crash")) > 3


def test_sigterm_finishes_or_releases_and_exits_zero(settings: Settings, tmp_path: Path) -> None:
    url = settings.database_url or ""
    write_corpus(tmp_path / "docs", 40)
    ingest(settings, tmp_path / "docs")
    fault = json.dumps({"stage.before_commit:chunking": {"action": "sleep", "seconds": 1.0}})
    worker = WorkerProcess(
        settings,
        tmp_path / "logs",
        "--concurrency",
        "16",
        "--batch-size",
        "8",
        INGESTD_FAULTS=fault,
        INGESTD_WORKER__GRACE_SECONDS="10",
    )
    try:
        wait_until(lambda: worker.saw("fault.hit"), what="work in progress")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        ensure_killed(worker)
    assert query(url, "SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL") == [(0,)]
    assert worker.saw("worker.stopped")
    counts = state_counts(url)
    assert counts.get("complete", 0) < 40  # it stopped before the end...
    finisher = WorkerProcess(settings, tmp_path / "logs", "--burst")
    assert finisher.wait(timeout=60) == 0
    assert state_counts(url) == {"complete": 40}  # ...and nothing was lost


def test_a_paused_worker_cannot_overwrite_its_successor(settings: Settings, tmp_path: Path) -> None:
    url = settings.database_url or ""
    doc = tmp_path / "in" / "fenced.md"
    doc.parent.mkdir()
    doc.write_text(markdown_document(9, paragraphs=8))
    ingest(settings, doc.parent, owner="fenced")
    fault = json.dumps(
        {"stage.before_commit:chunking": {"action": "sleep", "seconds": 1.0, "count": 1}}
    )
    paused = WorkerProcess(
        settings, tmp_path / "logs", INGESTD_FAULTS=fault, INGESTD_WORKER__LEASE_SECONDS="1.5"
    )
    successor = None
    try:
        wait_until(lambda: paused.saw("fault.hit"), what="the first worker to be mid-chunking")
        paused.signal(signal.SIGSTOP)
        paused_id = paused.worker_id()
        successor = WorkerProcess(settings, tmp_path / "logs")
        wait_until(lambda: state_counts(url) == {"complete": 1}, what="the successor")
        done_at = query(url, "SELECT max(id) FROM job_events")[0][0]
        paused.signal(signal.SIGCONT)
        wait_until(lambda: paused.saw("job.fenced_out"), what="the stale commit to be refused")
    finally:
        ensure_killed(paused, *([successor] if successor else []))
    late = query(
        url,
        "SELECT count(*) FROM job_events WHERE worker_id = %s AND id > %s",
        (paused_id, done_at),
    )
    assert late == [(0,)]
    assert query(url, "SELECT count(*) FROM document_chunk_buffer") == [(0,)]
    job = query(url, "SELECT state, chunk_count, (SELECT count(*) FROM chunks) FROM jobs")
    assert job[0][0] == "complete" and job[0][1] == job[0][2]
