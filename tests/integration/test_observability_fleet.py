"""The fleet figures and crash-recovery records come from the database (real PostgreSQL)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ingestd.app import App
from ingestd.ingest import Upload, ingest_uploads
from ingestd.jobs import JobStore
from ingestd.observability.fleet import exposition, fleet_families, fleet_snapshot
from tests.factories import markdown_document


async def _queue(app: App, count: int) -> None:
    uploads = [Upload(f"doc-{i}.md", markdown_document(i).encode()) for i in range(count)]
    await ingest_uploads(app.db, app.blobs, uploads, owner="fleet")


async def test_a_claim_after_an_expired_lease_is_recorded_as_a_recovery(app: App) -> None:
    await _queue(app, 3)
    crashed = JobStore(app.db, "crashed-worker", lease_seconds=30)
    first = await crashed.claim(2)
    assert [j.lease_expired for j in first] == [False, False]
    await app.db.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (first[0].id,),
    )
    successor = JobStore(app.db, "successor", lease_seconds=30)
    taken = {j.id: j for j in await successor.claim(5)}
    assert taken[first[0].id].lease_expired is True
    assert first[1].id not in taken  # still leased: not claimable
    assert sum(j.lease_expired for j in taken.values()) == 1
    events = await app.db.fetch_all(
        "SELECT job_id, worker_id, error FROM job_events WHERE kind = 'lease_expired'"
    )
    assert [(e["job_id"], e["worker_id"]) for e in events] == [(first[0].id, "successor")]
    assert "crashed-worker" in events[0]["error"]["message"]


async def test_fleet_snapshot_counts_what_the_database_holds(app: App) -> None:
    await _queue(app, 4)
    store = JobStore(app.db, "w1", lease_seconds=30)
    await store.claim(1)
    await app.db.execute(
        "UPDATE jobs SET next_attempt_at = now() + interval '1 hour'"
        " WHERE id = (SELECT id FROM jobs WHERE lease_owner IS NULL LIMIT 1)"
    )
    await app.db.execute(
        "UPDATE jobs SET state = 'parse_queued' WHERE lease_owner IS NULL"
        " AND next_attempt_at <= now()"
    )
    await app.db.execute(
        "UPDATE jobs SET state = 'failed_parse', last_error = '{\"code\": \"parse.empty\"}'"
        " WHERE id = (SELECT id FROM jobs WHERE state = 'parse_queued' LIMIT 1)"
    )
    snap = await fleet_snapshot(app.db, app.settings)
    assert snap.jobs_by_state["uploaded"] == 2 and snap.jobs_by_state["parse_queued"] == 1
    assert snap.jobs_by_state["failed_parse"] == 1
    assert (snap.runnable, snap.waiting, snap.leased) == (1, 1, 1)
    assert snap.failures == [("failed_parse", "parse.empty", 1)]
    assert snap.oldest_runnable_seconds >= 0

    text = exposition(fleet_families(snap)).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("ingestd_jobs", (("state", "uploaded"),))] == 2
    assert samples[("ingestd_failed_jobs", (("code", "parse.empty"), ("state", "failed_parse")))]
    assert samples[("ingestd_jobs_runnable", ())] == 1
    assert ("process_cpu_seconds_total", ()) in samples  # the scraping process's own metrics
