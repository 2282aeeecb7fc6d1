"""The contract every blob store keeps: the local folder, PostgreSQL and S3 pass the same tests."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingestd.errors import PermanentError
from ingestd.ports import BlobStore
from tests.integration.blobs.conftest import S3_MULTIPART_BYTES

# Over several PostgreSQL parts and over two S3 multipart parts.
LARGE_BYTES = S3_MULTIPART_BYTES * 2 + 12345


def test_put_get_exists_delete(store: BlobStore) -> None:
    data = b"# Report\n\nrevenue grew in the third quarter\n"
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.exists(key)
    assert store.get(key) == data
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(PermanentError) as missing:
        store.get(key)
    assert missing.value.code == "blob.missing"
    store.delete(key)  # deleting what is not there is not an error


def test_put_is_idempotent(store: BlobStore) -> None:
    data = os.urandom(3000)
    assert store.put(data) == store.put(data)
    assert store.get(hashlib.sha256(data).hexdigest()) == data
    store.delete(hashlib.sha256(data).hexdigest())
    assert not store.exists(hashlib.sha256(data).hexdigest())


def test_different_content_different_keys(store: BlobStore) -> None:
    keys = {store.put(f"document {i}".encode()) for i in range(5)}
    assert len(keys) == 5
    assert {store.get(k) for k in keys} == {f"document {i}".encode() for i in range(5)}


def test_empty_blob(store: BlobStore) -> None:
    key = store.put(b"")
    assert store.exists(key)
    assert store.get(key) == b""


def test_put_file_small_and_large(store: BlobStore, tmp_path: Path) -> None:
    small, large = tmp_path / "small.md", tmp_path / "large.bin"
    small.write_bytes(b"a small upload\n")
    large.write_bytes(os.urandom(LARGE_BYTES))
    for path in (small, large):
        key = store.put_file(path)
        assert key == hashlib.sha256(path.read_bytes()).hexdigest()
        assert store.get(key) == path.read_bytes()
        # The same content by put: the same key, nothing stored twice.
        assert store.put(path.read_bytes()) == key
        assert store.put_file(path) == key


def test_large_blob(store: BlobStore) -> None:
    data = os.urandom(LARGE_BYTES)
    key = store.put(data)
    assert store.get(key) == data
    assert store.put(data) == key  # already there: not sent again
    store.delete(key)
    assert not store.exists(key)


def test_missing_and_malformed_keys(store: BlobStore) -> None:
    absent = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(absent)
    with pytest.raises(PermanentError) as missing:
        store.get(absent)
    assert missing.value.code == "blob.missing"
    for bad in ("../../etc/passwd", "ABC", absent.upper(), absent[:-1] + "g"):
        with pytest.raises(PermanentError) as malformed:
            store.get(bad)
        assert malformed.value.code == "blob.bad_key"


def test_concurrent_puts_of_the_same_content(store: BlobStore) -> None:
    data = os.urandom(600 * 1024)  # several PostgreSQL parts
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _: store.put(data), range(8)))
    assert set(keys) == {hashlib.sha256(data).hexdigest()}
    assert store.get(keys[0]) == data


def test_concurrent_puts_of_different_content(store: BlobStore) -> None:
    blobs = [os.urandom(2048) for _ in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(store.put, blobs))
    assert [store.get(k) for k in keys] == blobs


def test_list_blobs(store: BlobStore) -> None:
    blobs = {store.put(os.urandom(n)): n for n in (10, 2000, 70_000)}
    listed = {b.key: b for b in store.list_blobs()}
    assert {k: listed[k].size_bytes for k in blobs} == blobs
    now = datetime.now(UTC)
    assert all(
        now - timedelta(minutes=5) < listed[k].stored_at <= now + timedelta(minutes=1)
        for k in blobs
    )
