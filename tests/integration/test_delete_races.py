"""Deleting a document while another upload of the same content is under way (issue 8's delete:
"the blob goes when no other document uses it"). Real database, a real blob folder, and the two
operations running at once; the store's put or delete is held at a chosen point (a gate), so
each interleaving is produced on purpose, not by luck."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from ingestd.app import App
from ingestd.ingest import Upload, ingest_uploads
from ingestd.service.documents import delete_document
from ingestd.storage import LocalBlobStore, content_key

DATA = b"# Shared\n\nThe same bytes, uploaded by two owners.\n"
DEADLINE = 20.0


class GatedBlobStore(LocalBlobStore):
    """A real folder store whose put or delete, once armed, stops after (put) or before
    (delete) its work until the test opens the gate."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.held_op = ""
        self.reached = threading.Event()
        self.gate = threading.Event()

    def hold(self, op: str) -> None:
        self.held_op = op

    def _pause(self, op: str) -> None:
        if self.held_op == op:
            self.held_op = ""
            self.reached.set()
            assert self.gate.wait(DEADLINE), "the gate was never opened"

    def put(self, data: bytes) -> str:
        key = super().put(data)
        self._pause("put")
        return key

    def delete(self, key: str) -> None:
        self._pause("delete")
        super().delete(key)


async def reached(store: GatedBlobStore) -> None:
    assert await asyncio.to_thread(store.reached.wait, DEADLINE), "the gate was never reached"


async def blocked_on_a_blob_lock_or_done(app: App, task: asyncio.Task[Any]) -> None:
    """Until ``task`` ended or waits on a blob key's lock (the fixed code makes it wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not task.done():
        rows = await app.db.fetch_all(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        if rows[0]["n"]:
            return
        assert loop.time() < deadline, "neither finished nor waiting"
        await asyncio.sleep(0.02)


async def test_an_upload_that_stored_its_blob_keeps_it_through_a_concurrent_delete(
    app: App, tmp_path: Path
) -> None:
    store = GatedBlobStore(tmp_path / "blobs")
    [first] = await ingest_uploads(app.db, store, [Upload("a.md", DATA)], owner="a")

    store.hold("put")  # b's upload has put the bytes (already there) and not yet recorded them
    upload = asyncio.create_task(ingest_uploads(app.db, store, [Upload("b.md", DATA)], owner="b"))
    await reached(store)
    delete = asyncio.create_task(delete_document(app.db, store, first.document_id, owner="a"))
    await blocked_on_a_blob_lock_or_done(app, delete)
    store.gate.set()
    [second] = await upload
    await delete

    assert not second.duplicate
    assert store.exists(content_key(DATA)), "b's document lost its blob to a's delete"


async def test_a_delete_under_way_makes_an_identical_upload_store_its_blob_again(
    app: App, tmp_path: Path
) -> None:
    store = GatedBlobStore(tmp_path / "blobs")
    [first] = await ingest_uploads(app.db, store, [Upload("a.md", DATA)], owner="a")

    store.hold("delete")  # a's delete has found the blob unreferenced and is about to remove it
    delete = asyncio.create_task(delete_document(app.db, store, first.document_id, owner="a"))
    await reached(store)
    upload = asyncio.create_task(ingest_uploads(app.db, store, [Upload("b.md", DATA)], owner="b"))
    await blocked_on_a_blob_lock_or_done(app, upload)
    store.gate.set()
    await delete
    [second] = await upload

    assert not second.duplicate
    assert store.exists(content_key(DATA)), "b's document lost its blob to a's delete"
    rows = await app.db.fetch_all("SELECT owner, blob_key FROM documents")
    assert rows == [{"owner": "b", "blob_key": content_key(DATA)}]


async def test_deleting_the_last_user_of_a_blob_still_removes_it(app: App, tmp_path: Path) -> None:
    store = GatedBlobStore(tmp_path / "blobs")
    [first] = await ingest_uploads(app.db, store, [Upload("a.md", DATA)], owner="a")
    [other] = await ingest_uploads(app.db, store, [Upload("b.md", DATA)], owner="b")
    await delete_document(app.db, store, first.document_id, owner="a")
    assert store.exists(content_key(DATA))  # b still uses it
    await delete_document(app.db, store, other.document_id, owner="b")
    assert not store.exists(content_key(DATA))
