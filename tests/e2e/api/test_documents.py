"""``/v1/documents`` and ``/v1/search`` over real HTTP: uploads (streamed, hardened), reads,
chunks, delete, search, and owner isolation."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import httpx

from ingestd.app import open_app
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.jobs import JobStore, advance
from ingestd.states import State
from tests.e2e.api.conftest import KeyFactory, assert_error, bearer, blob_files
from tests.e2e.procs import ServeProcess
from tests.waiting import eventually


def md(text: str) -> bytes:
    return f"# {text}\n\n{text} is written here, with a unique marker {uuid.uuid4()}.\n".encode()


async def upload(
    client: httpx.AsyncClient,
    key: str,
    files: list[tuple[str, bytes]],
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    parts = [("file", (name, data, "application/octet-stream")) for name, data in files]
    return await client.post(
        "/v1/documents", files=parts, headers={**bearer(key), **(headers or {})}, **kwargs
    )


async def process_all(settings: Settings) -> None:
    async with open_app(settings) as app:
        assert await app.worker(burst=True).run() == 0


async def test_upload_read_list_duplicate_and_idempotency(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str
) -> None:
    key = await make_key(owner)
    first = md("alpha")
    answer = await upload(
        client,
        key,
        [("a.md", first), ("b.md", md("beta"))],
        data={"metadata": '{"team": "finance"}'},
    )
    assert answer.status_code == 201, answer.text
    docs = answer.json()["documents"]
    assert [(d["filename"], d["duplicate"]) for d in docs] == [("a.md", False), ("b.md", False)]
    got = (await client.get(f"/v1/documents/{docs[0]['document_id']}", headers=bearer(key))).json()
    assert got["media_type"] == "text/markdown" and got["size_bytes"] == len(first)
    assert got["metadata"] == {"team": "finance"} and got["state"] == "uploaded"
    assert got["job_id"] == docs[0]["job_id"]

    again = await upload(client, key, [("renamed.md", first)])
    assert again.status_code == 200
    assert again.json()["documents"][0]["document_id"] == docs[0]["document_id"]
    assert again.json()["documents"][0]["duplicate"] is True

    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    gamma = md("gamma")
    one = await upload(client, key, [("c.md", gamma)], headers={**headers})
    two = await upload(client, key, [("c.md", gamma)], headers={**headers})
    assert one.status_code == two.status_code == 201 and one.json() == two.json()

    listed = (await client.get("/v1/documents", params={"limit": 2}, headers=bearer(key))).json()
    assert len(listed["documents"]) == 2 and listed["next_cursor"]
    rest = await client.get(
        "/v1/documents", params={"cursor": listed["next_cursor"]}, headers=bearer(key)
    )
    names = {d["filename"] for d in listed["documents"] + rest.json()["documents"]}
    assert names == {"a.md", "b.md", "c.md"}
    only_md = await client.get(
        "/v1/documents", params={"media_type": "application/pdf"}, headers=bearer(key)
    )
    assert only_md.json()["documents"] == []


async def test_an_idempotency_key_reused_for_another_request_is_refused(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str
) -> None:
    key = await make_key(owner)
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    data = md("first request")
    meta = {"metadata": '{"team": "finance", "year": 2026}'}
    first = await upload(client, key, [("a.md", data)], headers=headers, data=meta)
    assert first.status_code == 201, first.text

    same = await upload(
        client,  # the same request; the metadata's keys in another order are the same object
        key,
        [("a.md", data)],
        headers=headers,
        data={"metadata": '{"year": 2026, "team": "finance"}'},
    )
    assert (same.status_code, same.json()) == (201, first.json())

    others: list[tuple[list[tuple[str, bytes]], dict[str, str]]] = [
        ([("a.md", md("other content"))], meta),  # other bytes
        ([("b.md", data)], meta),  # another name
        ([("a.md", data)], {"metadata": '{"team": "legal", "year": 2026}'}),  # other metadata
        ([("a.md", data)], {}),  # no metadata
        ([("a.md", data), ("a.md", data)], meta),  # one more file
    ]
    for files, form in others:
        answer = await upload(client, key, files, headers=headers, data=form)
        assert_error(answer, 422, "idempotency.mismatch")
    listed = (await client.get("/v1/documents", headers=bearer(key))).json()["documents"]
    assert [d["filename"] for d in listed] == ["a.md"]  # the refused requests stored nothing

    other_owner = await make_key(f"{owner}-b")  # keys are per owner: no clash with another one's
    theirs = await upload(client, other_owner, [("z.md", md("theirs"))], headers=headers)
    assert theirs.status_code == 201


async def test_concurrent_first_uses_of_an_idempotency_key_get_one_answer(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str
) -> None:
    key = await make_key(owner)
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    files = [("same.md", md("sent four times at once"))]
    answers = await asyncio.gather(*(upload(client, key, files, headers=headers) for _ in range(4)))
    # Whichever recorded first, every caller gets that first answer (201), not its own 200.
    assert [(a.status_code, a.json()) for a in answers] == [(201, answers[0].json())] * 4


async def test_search_chunks_and_delete_after_processing(
    client: httpx.AsyncClient,
    make_key: KeyFactory,
    owner: str,
    api_settings: Settings,
    server: ServeProcess,
) -> None:
    key = await make_key(owner)
    text = "Solar panels convert sunlight into electricity on rooftops."
    answer = await upload(
        client,
        key,
        [("solar.md", f"# Solar\n\n{text}\n".encode())],
        data={"metadata": '{"topic": "energy"}'},
    )
    [doc] = answer.json()["documents"]
    await upload(client, key, [("bread.md", md("sourdough bread baking"))])
    await process_all(api_settings)

    chunks = await client.get(f"/v1/documents/{doc['document_id']}/chunks", headers=bearer(key))
    assert chunks.status_code == 200 and text in chunks.json()["chunks"][0]["text"]
    body = {"query": "sunlight electricity", "k": 3}
    hits = (await client.post("/v1/search", json=body, headers=bearer(key))).json()["results"]
    assert hits[0]["document_id"] == doc["document_id"]
    filtered = await client.post(
        "/v1/search", json={**body, "metadata": {"topic": "cooking"}}, headers=bearer(key)
    )
    assert filtered.json()["results"] == []
    only = await client.post(
        "/v1/search", json={**body, "document_ids": [doc["document_id"]]}, headers=bearer(key)
    )
    assert {h["document_id"] for h in only.json()["results"]} == {doc["document_id"]}
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"a": deep}
    answer = await client.post("/v1/search", json={**body, "metadata": deep}, headers=bearer(key))
    assert_error(answer, 422, "request.too_deep")

    before = set(blob_files(api_settings.home))
    deleted = await client.delete(f"/v1/documents/{doc['document_id']}", headers=bearer(key))
    assert deleted.status_code == 204
    assert_error(
        await client.get(f"/v1/documents/{doc['document_id']}", headers=bearer(key)),
        404,
        "document.not_found",
    )
    gone = before - set(blob_files(api_settings.home))
    assert len(gone) == 2  # the upload and its parsed Markdown
    hits = (await client.post("/v1/search", json=body, headers=bearer(key))).json()["results"]
    assert doc["document_id"] not in {h["document_id"] for h in hits}


async def test_deleting_keeps_a_blob_another_owner_uses(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str, api_settings: Settings
) -> None:
    data = md("shared content")
    a, b = await make_key(owner), await make_key(f"{owner}-b")
    [doc_a] = (await upload(client, a, [("x.md", data)])).json()["documents"]
    await upload(client, b, [("y.md", data)])
    count = len(blob_files(api_settings.home))
    assert (
        await client.delete(f"/v1/documents/{doc_a['document_id']}", headers=bearer(a))
    ).status_code == 204
    assert len(blob_files(api_settings.home)) == count


async def test_cancel_and_delete_fence_out_the_worker_holding_the_job(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str, api_db: Database
) -> None:
    key = await make_key(owner)
    docs = (await upload(client, key, [("1.md", md("one")), ("2.md", md("two"))])).json()
    store = JobStore(api_db, f"test-worker-{uuid.uuid4().hex[:6]}", lease_seconds=30)
    mine = {str(d["job_id"]) for d in docs["documents"]}
    claimed = []
    while len(claimed) < 2:  # other tests' jobs may be claimed too: leave them be
        claimed += [j for j in await store.claim(50) if str(j.id) in mine]
    cancel = await client.post(f"/v1/jobs/{claimed[0].id}/cancel", headers=bearer(key))
    assert cancel.json()["state"] == "cancelled"
    deleted = await client.delete(f"/v1/documents/{claimed[1].document_id}", headers=bearer(key))
    assert deleted.status_code == 204
    assert await store.extend_leases(claimed) == set()
    outcomes = [advance(j, State.PARSE_QUEUED) for j in claimed]
    assert await store.commit(outcomes) == set()
    job = (await client.get(f"/v1/jobs/{claimed[0].id}", headers=bearer(key))).json()
    assert job["state"] == "cancelled"


async def test_hostile_uploads_get_clear_4xx_and_store_nothing(
    client: httpx.AsyncClient,
    make_key: KeyFactory,
    owner: str,
    api_settings: Settings,
    api_db: Database,
) -> None:
    key = await make_key(owner)
    blobs_before = set(blob_files(api_settings.home))
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    big = b"# big\n\n" + b"x" * (256 * 1024)
    cases = [
        (await upload(client, key, [("a.md", md("ok")), ("big.md", big)]), 413, "upload.too_large"),
        (
            await upload(client, key, [("a.md", md("ok")), ("p.png", png)]),
            415,
            "upload.unsupported_type",
        ),
        (await upload(client, key, [("a.md", md("ok")), ("e.md", b"")]), 422, "upload.empty"),
        (await upload(client, key, [("a.md", md("ok"))] * 21), 413, "upload.too_many_parts"),
        (
            await upload(client, key, [("a.md", md("ok"))], data={"metadata": "[1]"}),
            422,
            "upload.bad_metadata",
        ),
        (
            await upload(
                client,
                key,
                [("a.md", md("ok"))],
                data={"metadata": '{"a": "' + "x" * 20_000 + '"}'},
            ),
            413,
            "upload.metadata_too_large",
        ),
        (
            await upload(client, key, [("a.md", md("ok"))], data={"other": "1"}),
            422,
            "upload.unknown_field",
        ),
        (
            await client.post("/v1/documents", json={"file": "x"}, headers=bearer(key)),
            415,
            "upload.not_multipart",
        ),
        (
            await client.post(
                "/v1/documents", files=[("metadata", (None, "{}"))], headers=bearer(key)
            ),
            422,
            "upload.no_file",
        ),
    ]
    for answer, status, code in cases:
        assert_error(answer, status, code)
    assert set(blob_files(api_settings.home)) == blobs_before
    rows = await api_db.fetch_all("SELECT count(*) AS n FROM documents WHERE owner = %s", (owner,))
    assert rows[0]["n"] == 0
    assert list((api_settings.home / "tmp").iterdir()) == []


def raw_multipart(files: list[tuple[str, bytes]], boundary: str = "b0undary") -> bytes:
    """A multipart body with the file names exactly as given (clients escape some characters)."""
    out = b""
    for name, data in files:
        out += f"--{boundary}\r\n".encode()
        out += b'Content-Disposition: form-data; name="file"; filename="'
        out += name.encode() + b'"\r\n\r\n' + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


async def test_hostile_filenames_are_only_a_display_name(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str, api_settings: Settings
) -> None:
    key = await make_key(owner)
    names = ["../../../etc/passwd.md", "a\x01b\x1b[31m.md", "..\\..\\win.md", "\u202egnp.md"]
    answer = await client.post(
        "/v1/documents",
        content=raw_multipart([(n, md(n)) for n in names]),
        headers={**bearer(key), "Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert answer.status_code == 201, answer.text
    stored = [d["filename"] for d in answer.json()["documents"]]
    assert stored == ["passwd.md", "ab[31m.md", "win.md", "gnp.md"]
    second = answer.json()["documents"][1]["document_id"]
    doc = (await client.get(f"/v1/documents/{second}", headers=bearer(key))).json()
    assert doc["metadata"]["original_filename"] == "a\\u0001b\\u001b[31m.md"
    home = api_settings.home.resolve()
    assert not (home.parent / "etc").exists() and not (home / "etc").exists()


async def test_many_parts_within_the_limit_are_one_upload(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str
) -> None:
    key = await make_key(owner)
    answer = await upload(client, key, [(f"{i}.md", md(f"part {i}")) for i in range(20)])
    assert answer.status_code == 201 and len(answer.json()["documents"]) == 20


async def test_an_upload_aborted_mid_stream_leaves_nothing(
    server: ServeProcess,
    make_key: KeyFactory,
    owner: str,
    api_settings: Settings,
    api_db: Database,
) -> None:
    key = await make_key(owner)
    blobs_before = set(blob_files(api_settings.home))
    head = (
        "POST /v1/documents HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 200000\r\n\r\n"
        '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="cut.md"\r\n\r\n'
    ).encode()
    tmp = api_settings.home / "tmp"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + b"# cut\n\n" + b"y" * 50_000)
        # The server is writing the part to a temporary file when the client goes away.
        await eventually(lambda: list(tmp.glob("upload-*")), what="the part in a temporary file")
    await eventually(lambda: not list(tmp.iterdir()), what="the temporary file to be removed")
    assert set(blob_files(api_settings.home)) == blobs_before
    rows = await api_db.fetch_all("SELECT count(*) AS n FROM documents WHERE owner = %s", (owner,))
    assert rows[0]["n"] == 0


async def test_another_owners_documents_answer_404_and_never_show(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str
) -> None:
    a, b = await make_key(owner), await make_key(f"{owner}-b")
    [doc] = (await upload(client, a, [("secret.md", md("owner a secret"))])).json()["documents"]
    url = f"/v1/documents/{doc['document_id']}"
    for method, path in [("GET", url), ("GET", f"{url}/chunks"), ("DELETE", url)]:
        assert_error(
            await client.request(method, path, headers=bearer(b)), 404, "document.not_found"
        )
    assert (await client.get("/v1/documents", headers=bearer(b))).json()["documents"] == []
    hits = await client.post("/v1/search", json={"query": "owner a secret"}, headers=bearer(b))
    assert hits.json()["results"] == []
    assert_error(
        await upload(client, b, [("x.md", md("x"))], params={"owner": owner}), 403, "auth.forbidden"
    )
    admin = await make_key("ops", admin=True)
    assert (await client.get(url, headers=bearer(admin))).json()["owner"] == owner
    for_a = await upload(client, admin, [("y.md", md("for a"))], params={"owner": owner})
    assert for_a.status_code == 201
    assert (await client.get(url, headers=bearer(a))).status_code == 200
