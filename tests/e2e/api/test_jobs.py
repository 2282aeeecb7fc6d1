"""``/v1/jobs`` over real HTTP: list (filters, cursor), read, events, retry, cancel, bulk retry,
and owner isolation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from psycopg.types.json import Jsonb

from ingestd.db import Database
from tests.e2e.api.conftest import DocFactory, KeyFactory, assert_error, bearer


async def _fail(db: Database, job_id: uuid.UUID | None, state: str, code: str) -> None:
    error = {"code": code, "message": "made to fail by the test", "kind": "permanent"}
    await db.execute(
        "UPDATE jobs SET state = %s, last_error = %s WHERE id = %s", (state, Jsonb(error), job_id)
    )


async def test_list_pages_newest_first_and_filters(
    client: httpx.AsyncClient,
    make_key: KeyFactory,
    make_documents: DocFactory,
    owner: str,
    api_db: Database,
) -> None:
    headers = bearer(await make_key(owner))
    docs = await make_documents(owner, 5)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/jobs", params=params, headers=headers)).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(str(d.job_id) for d in docs)
    assert len(seen) == len(set(seen)) == 5

    await _fail(api_db, docs[0].job_id, "failed_parse", "parse.encrypted")
    await _fail(api_db, docs[1].job_id, "failed_parse", "parse.too_large")
    answer = await client.get(
        "/v1/jobs",
        params={"state": "failed_parse", "error_code": "parse.encrypted"},
        headers=headers,
    )
    assert [j["id"] for j in answer.json()["jobs"]] == [str(docs[0].job_id)]
    answer = await client.get("/v1/jobs", params={"since": "2999-01-01T00:00:00Z"}, headers=headers)
    assert answer.json()["jobs"] == []


async def test_a_job_shows_state_progress_error_usage_and_timings(
    client: httpx.AsyncClient, make_key: KeyFactory, make_documents: DocFactory, owner: str
) -> None:
    headers = bearer(await make_key(owner))
    [doc] = await make_documents(owner)
    job = (await client.get(f"/v1/jobs/{doc.job_id}", headers=headers)).json()
    assert job["id"] == str(doc.job_id)
    assert job["document_id"] == str(doc.document_id)
    assert job["state"] == "uploaded"
    assert job["progress"]["percent"] == 0.0
    assert job["error"] is None and job["usage"] == {}
    assert job["timings"]["created_at"] and job["timings"]["completed_at"] is None


async def test_cancel_then_retry_then_events_tell_the_story(
    client: httpx.AsyncClient, make_key: KeyFactory, make_documents: DocFactory, owner: str
) -> None:
    headers = bearer(await make_key(owner))
    [doc] = await make_documents(owner)
    url = f"/v1/jobs/{doc.job_id}"
    assert_error(await client.post(f"{url}/retry", headers=headers), 409, "job.not_retryable")
    cancelled = (await client.post(f"{url}/cancel", headers=headers)).json()
    assert cancelled["state"] == "cancelled"
    assert_error(await client.post(f"{url}/cancel", headers=headers), 409, "job.not_cancellable")
    retried = (await client.post(f"{url}/retry", headers=headers)).json()
    assert retried["state"] == "uploaded"
    events = (await client.get(f"{url}/events", headers=headers)).json()["events"]
    assert [(e["kind"], e["to_state"]) for e in events] == [
        ("cancel", "cancelled"),
        ("retry_requested", "uploaded"),
    ]
    assert events[0]["id"] < events[1]["id"]


async def test_bulk_retry_takes_state_code_and_since_filters(
    client: httpx.AsyncClient,
    make_key: KeyFactory,
    make_documents: DocFactory,
    owner: str,
    api_db: Database,
) -> None:
    headers = bearer(await make_key(owner))
    docs = await make_documents(owner, 3)
    await _fail(api_db, docs[0].job_id, "failed_parse", "parse.encrypted")
    await _fail(api_db, docs[1].job_id, "failed_parse", "parse.too_large")
    answer = await client.post(
        "/v1/jobs:retry", json={"error_codes": ["parse.too_large"]}, headers=headers
    )
    assert answer.json() == {"retried": 1, "job_ids": [str(docs[1].job_id)]}
    answer = await client.post(
        "/v1/jobs:retry",
        json={"states": ["failed_parse"], "since": "2999-01-01T00:00:00Z"},
        headers=headers,
    )
    assert answer.json()["retried"] == 0
    answer = await client.post("/v1/jobs:retry", json={"states": ["failed_parse"]}, headers=headers)
    assert answer.json()["job_ids"] == [str(docs[0].job_id)]
    answer = await client.post("/v1/jobs:retry", json={"states": ["complete"]}, headers=headers)
    assert_error(answer, 422, "request.invalid")
    answer = await client.post("/v1/jobs:retry", json={"nonsense": 1}, headers=headers)
    assert_error(answer, 422, "request.invalid")


async def test_another_owners_jobs_answer_404_everywhere_and_an_admin_sees_all(
    client: httpx.AsyncClient,
    make_key: KeyFactory,
    make_documents: DocFactory,
    owner: str,
    api_db: Database,
) -> None:
    [doc] = await make_documents(owner)
    await _fail(api_db, doc.job_id, "failed_parse", "parse.encrypted")
    intruder = bearer(await make_key(f"{owner}-b"))
    url = f"/v1/jobs/{doc.job_id}"
    for method, path in [
        ("GET", url),
        ("GET", f"{url}/events"),
        ("POST", f"{url}/retry"),
        ("POST", f"{url}/cancel"),
        ("GET", f"/v1/events?job_id={doc.job_id}"),  # its stream too, not an empty one
    ]:
        assert_error(await client.request(method, path, headers=intruder), 404, "job.not_found")
    listed = (await client.get("/v1/jobs", headers=intruder)).json()
    assert listed["jobs"] == []
    assert (await client.post("/v1/jobs:retry", json={}, headers=intruder)).json()["retried"] == 0
    admin = bearer(await make_key("ops", admin=True))
    assert (await client.get(url, headers=admin)).json()["owner"] == owner
    assert (await client.post(f"{url}/retry", headers=admin)).json()["state"] == "uploaded"
