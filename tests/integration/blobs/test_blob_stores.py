"""What is particular to each store beyond the shared contract: PostgreSQL's parts and outages,
S3's object names and errors, and the wiring that picks a store from settings."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ingestd.app import App, open_app
from ingestd.blobs.gc import blob_usage, collect_garbage
from ingestd.blobs.postgres import PostgresBlobStore
from ingestd.blobs.s3 import S3BlobStore
from ingestd.config import BlobSettings, Settings
from ingestd.errors import PermanentError, TransientError
from ingestd.ingest import ingest_files
from ingestd.ports import BlobStore
from ingestd.storage import LocalBlobStore
from tests.cli_inprocess import invoke
from tests.e2e.procs import query
from tests.factories import write_corpus
from tests.integration.blobs.conftest import TEST_PART_BYTES


def test_postgres_keeps_large_blobs_in_parts_and_streams_them(
    make_store: Callable[[str], BlobStore], blob_db_url: str
) -> None:
    store = make_store("postgres")
    assert isinstance(store, PostgresBlobStore)
    data = os.urandom(TEST_PART_BYTES * 3 + 10)
    with ThreadPoolExecutor(max_workers=4) as pool:
        keys = set(pool.map(lambda _: store.put(data), range(4)))
    (key,) = keys
    header = query(blob_db_url, "SELECT size_bytes, parts FROM blobs WHERE key = %s", (key,))
    assert header == [(len(data), 4)]
    sizes = query(
        blob_db_url, "SELECT length(data) FROM blob_parts WHERE key = %s ORDER BY part", (key,)
    )
    assert [s for (s,) in sizes] == [TEST_PART_BYTES] * 3 + [10]
    pieces = list(store.iter_parts(key))
    assert [len(p) for p in pieces] == [s for (s,) in sizes]
    assert b"".join(pieces) == data
    store.delete(key)
    assert query(blob_db_url, "SELECT count(*) FROM blob_parts WHERE key = %s", (key,)) == [(0,)]


def test_postgres_store_unreachable_is_transient() -> None:
    store = PostgresBlobStore(
        "postgresql://ingestd@127.0.0.1:9/none?connect_timeout=1", retry_seconds=0.5
    )
    store.open()
    try:
        with pytest.raises(TransientError) as down:
            store.get(hashlib.sha256(b"x").hexdigest())
        assert down.value.code == "blob.unavailable"
    finally:
        store.close()


def test_s3_object_names_and_errors(s3_settings: BlobSettings, s3_bucket: tuple[Any, Any]) -> None:
    client = s3_bucket[1]
    assert s3_settings.s3_bucket is not None
    store = S3BlobStore(client, s3_settings.s3_bucket, s3_settings.s3_prefix)
    key = store.put(b"hello")
    listed = client.list_objects_v2(Bucket=s3_settings.s3_bucket, Prefix=s3_settings.s3_prefix)
    names = [o["Key"] for o in listed["Contents"]]
    assert names == [f"{s3_settings.s3_prefix}{key[:2]}/{key[2:4]}/{key}"]

    with pytest.raises(PermanentError) as no_bucket:
        S3BlobStore(client, "no-such-bucket-here").get(key)
    assert no_bucket.value.code == "blob.s3_error"

    down = s3_settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(TransientError) as unreachable:
        S3BlobStore.from_settings(down).put(b"hello")
    assert unreachable.value.code == "blob.unavailable"


async def test_the_app_picks_the_store_from_settings(
    make_settings: Callable[..., Settings], s3_settings: BlobSettings, tmp_path: Path
) -> None:
    # A database URL and backend=auto: the database keeps the blobs.
    async with open_app(make_settings()) as app:
        assert isinstance(app.blobs, PostgresBlobStore)
    async with open_app(make_settings(blobs=BlobSettings(backend="local"))) as app:
        assert isinstance(app.blobs, LocalBlobStore)
        assert app.blobs.root == app.settings.blob_dir
    # S3 from settings alone, through the whole pipeline; nothing lands in the home.
    write_corpus(tmp_path / "docs", 4)
    async with open_app(make_settings(blobs=s3_settings)) as app:
        assert isinstance(app.blobs, S3BlobStore)
        await ingest_files(app.db, app.blobs, [tmp_path / "docs"], owner="s3")
        assert await app.worker(burst=True).run() == 0
        rows = await app.db.fetch_all(
            "SELECT j.state, d.blob_key, j.parsed_blob_key FROM jobs j"
            " JOIN documents d ON d.id = j.document_id"
        )
        assert not app.settings.blob_dir.exists()
    assert [r["state"] for r in rows] == ["complete"] * 4
    stored = S3BlobStore.from_settings(s3_settings)
    uploads = {hashlib.sha256(f.read_bytes()).hexdigest() for f in (tmp_path / "docs").iterdir()}
    assert {r["blob_key"] for r in rows} == uploads
    for row in rows:
        assert hashlib.sha256(stored.get(row["blob_key"])).hexdigest() == row["blob_key"]
        assert stored.get(row["parsed_blob_key"]).startswith(b"#")


async def test_gc_deletes_only_old_unreferenced_blobs(app: App, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 3)
    await ingest_files(app.db, app.blobs, [tmp_path / "docs"], owner="gc")
    assert await app.worker(burst=True).run() == 0
    orphan = await asyncio.to_thread(app.blobs.put, b"an upload whose document never committed")
    usage = await blob_usage(app.db, app.blobs)
    assert (usage.blobs, usage.unreferenced) == (7, 1)  # 3 uploads, 3 parsed texts, the orphan

    # Young blobs are kept (an upload may be about to be referenced); dry runs delete nothing.
    assert await collect_garbage(app.db, app.blobs) == []
    found = await collect_garbage(app.db, app.blobs, grace=timedelta(0), dry_run=True)
    assert [b.key for b in found] == [orphan]
    assert app.blobs.exists(orphan)
    deleted = await collect_garbage(app.db, app.blobs, grace=timedelta(0))
    assert [b.key for b in deleted] == [orphan]
    assert not app.blobs.exists(orphan)
    after = await blob_usage(app.db, app.blobs)
    assert (after.blobs, after.unreferenced) == (6, 0)


def test_blobs_cli(settings: Settings) -> None:
    env = {"INGESTD_DATABASE_URL": settings.database_url or "", "INGESTD_HOME": str(settings.home)}
    store = PostgresBlobStore(settings.database_url or "")
    store.open()
    try:
        store.put(b"nobody refers to me")
    finally:
        store.close()
    usage = invoke(["blobs", "usage", "--json"], env=env)
    assert usage.exit_code == 0, usage.output
    assert json.loads(usage.output) == {
        "backend": "postgres",
        "blobs": 1,
        "bytes": 19,
        "unreferenced": 1,
        "unreferenced_bytes": 19,
    }
    gc = invoke(["blobs", "gc", "--older-than", "0", "--json"], env=env)
    assert gc.exit_code == 0, gc.output
    assert json.loads(gc.output)["bytes"] == 19
    again = invoke(["blobs", "usage", "--json"], env=env)
    assert json.loads(again.output)["blobs"] == 0


def test_postgres_store_survives_lost_connections(
    make_store: Callable[[str], BlobStore], blob_db_url: str
) -> None:
    store = make_store("postgres")
    key = store.put(b"kept across a lost connection")
    # Every connection of the store's pool dies, as in a server restart or a failover.
    killed = query(
        blob_db_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert killed and all(ok for (ok,) in killed)
    assert store.get(key) == b"kept across a lost connection"
    assert store.put(b"and written after it") == hashlib.sha256(b"and written after it").hexdigest()


def test_blobs_copy_moves_a_home_folder_into_the_database(settings: Settings) -> None:
    env = {"INGESTD_DATABASE_URL": settings.database_url or "", "INGESTD_HOME": str(settings.home)}
    folder = LocalBlobStore(settings.blob_dir)
    keys = {folder.put(b"first upload"), folder.put(os.urandom(300_000))}
    first = invoke(["blobs", "copy", "--from", "local", "--json"], env=env)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["copied"] == 2
    again = invoke(["blobs", "copy", "--from", "local", "--json"], env=env)
    assert json.loads(again.output) == {"copied": 0, "already_there": 2, "bytes_copied": 0}
    database = PostgresBlobStore(settings.database_url or "")
    database.open()
    try:
        assert {b.key for b in database.list_blobs()} == keys
        assert all(database.get(k) == folder.get(k) for k in keys)
    finally:
        database.close()
    same = invoke(["blobs", "copy", "--from", "postgres"], env=env)
    assert same.exit_code != 0 and "already postgres" in same.output


def test_postgres_batch_calls_store_and_read_many_blobs(
    make_store: Callable[[str], BlobStore],
) -> None:
    store = make_store("postgres")
    assert isinstance(store, PostgresBlobStore)
    already = store.put(b"stored before the batch")
    large = os.urandom(TEST_PART_BYTES * 2 + 7)  # more than one part: stored the one-by-one way
    batch = [b"first", b"second", b"first", large, b"stored before the batch", b""]
    keys = store.put_many(batch)
    assert keys == [hashlib.sha256(data).hexdigest() for data in batch]
    assert keys[4] == already
    for key, data in zip(keys, batch, strict=True):
        assert store.get(key) == data
    missing = hashlib.sha256(b"never stored").hexdigest()
    found = store.get_many([*keys, missing])
    assert found == dict(zip(keys, batch, strict=False))  # the duplicate key once, no missing
    assert store.put_many([]) == [] and store.get_many([]) == {}
    with pytest.raises(PermanentError) as bad:
        store.get_many(["not-a-key"])
    assert bad.value.code == "blob.bad_key"


async def test_a_missing_upload_fails_only_its_own_job_in_a_batch(app: App, tmp_path: Path) -> None:
    # The parse stage reads a batch's uploads in one call: a missing one fails its job alone.
    assert isinstance(app.blobs, PostgresBlobStore)
    write_corpus(tmp_path / "docs", 4)
    await ingest_files(app.db, app.blobs, [tmp_path / "docs"], owner="batch")
    rows = await app.db.fetch_all("SELECT d.id, d.blob_key FROM documents d ORDER BY d.id")
    lost = rows[1]
    app.blobs.delete(lost["blob_key"])
    assert await app.worker(burst=True).run() == 0
    jobs = await app.db.fetch_all(
        "SELECT document_id, state, last_error ->> 'code' AS code, parsed_blob_key FROM jobs"
    )
    by_document = {j["document_id"]: j for j in jobs}
    assert by_document[lost["id"]]["state"] == "failed_parse"
    assert by_document[lost["id"]]["code"] == "blob.missing"
    others = [j for d, j in by_document.items() if d != lost["id"]]
    assert [j["state"] for j in others] == ["complete"] * 3
    for job in others:
        assert app.blobs.get(job["parsed_blob_key"]).startswith(b"#")
