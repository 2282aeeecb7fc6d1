"""The pipeline against the real embedded PostgreSQL, with an in-process worker."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path
from typing import Any

from ingestd import reports
from ingestd.app import App
from ingestd.ingest import Upload, ingest_files, ingest_uploads
from ingestd.jobs import ClaimedJob, JobStore
from ingestd.search import search
from ingestd.stages import Pipeline
from ingestd.states import HAPPY_PATH, State
from tests.factories import markdown_document, write_corpus
from tests.waiting import eventually


async def _rows(app: App, sql: str, params: Any = None) -> list[dict[str, Any]]:
    return await app.db.fetch_all(sql, params)


async def _expire_leases(app: App) -> None:
    await app.db.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second'"
        " WHERE lease_owner IS NOT NULL"
    )


async def _snapshot(app: App, document_id: uuid.UUID) -> dict[str, Any]:
    chunks = await _rows(
        app,
        "SELECT id, ordinal, text, embedding::text AS e FROM chunks"
        " WHERE document_id = %s ORDER BY ordinal",
        (document_id,),
    )
    buffers = await _rows(
        app,
        "SELECT (SELECT count(*) FROM document_chunk_buffer) AS c,"
        " (SELECT count(*) FROM document_vector_buffer) AS v",
    )
    return {"chunks": chunks, "buffers": buffers[0]}


async def test_ingest_and_run_to_complete(app: App, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 12)
    results = await ingest_files(app.db, app.blobs, [tmp_path / "docs"], owner="alice")
    assert len(results) == 12 and not any(r.duplicate for r in results)
    worker = app.worker(burst=True)
    assert await worker.run() == 0
    status = await reports.status(app.db)
    assert status["counts"]["complete"] == 12
    assert status["total"] == 12
    jobs = await reports.list_jobs(app.db)
    assert all(j["progress"]["percent"] == 100.0 for j in jobs)
    hits = await search(
        app.db, app.ports.embedder, "photovoltaic sunlight electricity", owner="alice", limit=3
    )
    assert hits and "Solar panels" in hits[0].text
    assert await search(app.db, app.ports.embedder, "sunlight", owner="bob") == []


async def test_same_content_is_deduplicated(app: App) -> None:
    doc = Upload("a.md", markdown_document(1).encode())
    first = await ingest_uploads(app.db, app.blobs, [doc, doc], owner="alice")
    again = await ingest_uploads(app.db, app.blobs, [Upload("b.md", doc.data)], owner="alice")
    other = await ingest_uploads(app.db, app.blobs, [doc], owner="bob")
    assert [r.duplicate for r in first] == [False, True]
    assert again[0].duplicate and again[0].document_id == first[0].document_id
    assert again[0].job_id == first[0].job_id
    assert not other[0].duplicate and other[0].document_id != first[0].document_id


async def _claim_one(store: JobStore) -> ClaimedJob:
    jobs = await store.claim(1)
    assert len(jobs) == 1
    return jobs[0]


async def test_each_stage_run_twice_leaves_the_rows_of_one_run(app: App) -> None:
    """At-least-once execution: every stage runs, "crashes" before its transition commits, and
    runs again under a new claim. The result equals a clean run of the same content."""
    text = markdown_document(7, paragraphs=40).encode()
    twice = (await ingest_uploads(app.db, app.blobs, [Upload("x.md", text)], owner="twice"))[0]
    store = JobStore(app.db, "w-twice", lease_seconds=30)
    one_state_a_step = app.settings.worker.model_copy(update={"fuse_stages": False})
    pipeline = Pipeline(app.db, store, app.ports, one_state_a_step, embed_slice=4)
    for state in HAPPY_PATH[:-1]:
        job = await _claim_one(store)
        assert job.state == state
        _outcomes, write = await pipeline._handlers[state]([job])
        if write is not None:  # the stage's output lands, then the worker dies
            await app.db.transaction(lambda conn, w=write, j=job: w(conn, {j.id}))
        await _expire_leases(app)
        job = await _claim_one(store)
        kept = await pipeline.step(state, [job])
        assert [j.state for j in kept] == (
            [] if state == State.EMBEDDINGS_STORED else [HAPPY_PATH[HAPPY_PATH.index(state) + 1]]
        )
        await store.release(kept)
    once = (await ingest_uploads(app.db, app.blobs, [Upload("y.md", text)], owner="once"))[0]
    assert await app.worker(burst=True).run() == 0
    a, b = await _snapshot(app, twice.document_id), await _snapshot(app, once.document_id)
    assert a["buffers"] == {"c": 0, "v": 0}
    assert len(a["chunks"]) == len(b["chunks"]) > 4
    assert [(c["ordinal"], c["text"], c["e"]) for c in a["chunks"]] == [
        (c["ordinal"], c["text"], c["e"]) for c in b["chunks"]
    ]
    events = await _rows(
        app,
        "SELECT from_state, to_state FROM job_events WHERE job_id = %s"
        " AND kind = 'transition' ORDER BY id",
        (twice.job_id,),
    )
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (a.value, b.value) for a, b in itertools.pairwise(HAPPY_PATH)
    ]


async def test_a_stale_claim_writes_nothing(app: App) -> None:
    """Fencing: once a job is claimed again, the first claim's writes match no row."""
    await ingest_uploads(
        app.db, app.blobs, [Upload("f.md", markdown_document(3).encode())], owner="o"
    )
    old = JobStore(app.db, "w-old", lease_seconds=30)
    new = JobStore(app.db, "w-new", lease_seconds=30)
    pipeline_old = Pipeline(app.db, old, app.ports, app.settings.worker)
    stale = await _claim_one(old)
    await _expire_leases(app)
    fresh = await _claim_one(new)
    assert fresh.attempt == stale.attempt + 1
    assert await pipeline_old.step(stale.state, [stale]) == []
    assert await old.extend_leases([stale]) == set()
    assert await old.release([stale]) == set()
    rows = await _rows(app, "SELECT state, lease_owner FROM jobs WHERE id = %s", (stale.id,))
    assert rows == [{"state": "uploaded", "lease_owner": "w-new"}]


async def test_a_bad_document_fails_alone(app: App) -> None:
    good = [Upload(f"g{i}.md", markdown_document(i).encode()) for i in range(3)]
    bad = [Upload("empty.txt", b""), Upload("junk.pdf", b"\x00\x01garbage" * 100)]
    results = await ingest_uploads(app.db, app.blobs, good + bad, owner="o")
    assert await app.worker(burst=True).run() == 0
    by_name = {j["filename"]: j for j in await reports.list_jobs(app.db)}
    assert all(by_name[u.filename]["state"] == "complete" for u in good)
    for upload in bad:
        job = by_name[upload.filename]
        assert job["state"] == "failed_parse", job
        assert job["error_code"].startswith("parse.")
        assert job["error_message"]
    assert len(results) == 5


async def test_transient_failures_retry_then_succeed(make_settings: Any) -> None:
    from ingestd.app import open_app

    settings = make_settings(
        faults={"stage.before:chunking": {"action": "raise_transient", "count": 2}}
    )
    async with open_app(settings) as app:
        result = (
            await ingest_uploads(
                app.db, app.blobs, [Upload("r.md", markdown_document(2).encode())], owner="o"
            )
        )[0]
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        await _wait_for_state(app, result.job_id, "complete")
        worker.request_stop()
        assert await task == 0
        kinds = await _rows(
            app,
            "SELECT kind, error ->> 'code' AS code FROM job_events"
            " WHERE job_id = %s AND kind = 'retry'",
            (result.job_id,),
        )
        assert (
            kinds == [{"kind": "retry", "code": "internal.error"}] * 2
            or kinds == [{"kind": "retry", "code": "fault.injected"}] * 2
        )


async def _wait_for_state(
    app: App, job_id: uuid.UUID | None, state: str, timeout: float = 30
) -> None:
    async def reached() -> bool:
        rows = await _rows(app, "SELECT state FROM jobs WHERE id = %s", (job_id,))
        return bool(rows) and rows[0]["state"] == state

    await eventually(reached, timeout, interval=0.05, what=f"job {job_id} to reach {state}")


async def test_notify_wakes_an_idle_worker_long_before_its_poll(
    make_settings: Any,
) -> None:
    from ingestd.app import open_app

    async with open_app(make_settings(worker={"poll_seconds": 60.0})) as app:
        worker = app.worker()
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)  # idle: claimed nothing, now waiting up to 60 s
        started = asyncio.get_running_loop().time()
        result = (
            await ingest_uploads(
                app.db, app.blobs, [Upload("n.md", markdown_document(4).encode())], owner="o"
            )
        )[0]
        await _wait_for_state(app, result.job_id, "complete", timeout=10)
        assert asyncio.get_running_loop().time() - started < 10
        running = await _rows(app, "SELECT status FROM workers")
        worker.request_stop()
        assert await task == 0
        stopped = await _rows(app, "SELECT status, processed FROM workers")
    assert running == [{"status": "running"}]
    assert stopped == [{"status": "stopped", "processed": 1}]
