"""``BlobStore`` in PostgreSQL: uploads and parsed text in the database every worker already uses.

A blob is a ``blobs`` header row plus its bytes in ``blob_parts`` of at most ``part_bytes`` each,
written in one transaction (one statement for a one-part blob, a binary COPY for the rest), so a
key that exists always has all its bytes, a put of bytes already stored writes nothing, and a
reader can stream a large blob part by part. The port is synchronous (stages call it from a
thread), so the store keeps a small pool of its own synchronous connections; a lost connection or
a restarting server is retried with backoff for ``retry_seconds``, then ``blob.unavailable``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from ingestd.db.database import backoff_delay, is_transient_db_error
from ingestd.db.queries import QUERIES
from ingestd.errors import PermanentError, TransientError
from ingestd.ports import BlobInfo
from ingestd.storage import check_key, content_key, file_key, iter_file, missing_blob

T = TypeVar("T")
Connection = psycopg.Connection[Any]

DEFAULT_PART_BYTES = 1024 * 1024
DEFAULT_RETRY_SECONDS = 30.0
DEFAULT_POOL_SIZE = 4
LIST_PAGE = 1000


class PostgresBlobStore:
    """``BlobStore`` over the ``blobs`` and ``blob_parts`` tables (migration 0007)."""

    inline_io = False

    def __init__(
        self,
        url: str,
        *,
        part_bytes: int = DEFAULT_PART_BYTES,
        pool_size: int = DEFAULT_POOL_SIZE,
        statement_timeout_ms: int = 30_000,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.part_bytes = part_bytes
        self.retry_seconds = retry_seconds
        self.statement_timeout_ms = statement_timeout_ms
        self.pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True},
            configure=self._configure,
            # No check on checkout (a round trip per call): a connection that died with a
            # restarted server fails its statement, the pool drops it, and ``_run`` tries again.
            reconnect_timeout=3600,
            name="ingestd-blobs",
        )

    def __str__(self) -> str:
        return "the PostgreSQL blob store"

    def open(self) -> None:
        """Start connecting in the background; the first call waits for a connection."""
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    def _configure(self, conn: Connection) -> None:
        conn.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
        # Safe without the flush: a blob's key is only written into a row (an upload's document,
        # a job's parsed text) after its put returns, by a synchronous commit that flushes the
        # WAL up to itself, and so the blob's earlier records with it. A crash in between loses
        # only a blob nothing refers to yet (docs/decisions/0008-blob-stores.md).
        conn.execute("SET synchronous_commit = off")

    # -- the port ----------------------------------------------------------------------------

    def put(self, data: bytes) -> str:
        key = content_key(data)
        if len(data) <= self.part_bytes:
            self._run(lambda conn: self._put_small(conn, key, data))
        else:
            view = memoryview(data)
            pieces = [view[i : i + self.part_bytes] for i in range(0, len(data), self.part_bytes)]
            self._run(lambda conn: self._put_parts(conn, key, len(data), pieces))
        return key

    def put_file(self, path: Path) -> str:
        size = path.stat().st_size
        if size <= self.part_bytes:
            return self.put(path.read_bytes())
        key = file_key(path)
        # The pieces are read anew on every try, and checked against the key as they go.
        self._run(
            lambda conn: self._put_parts(conn, key, size, _verified(path, self.part_bytes, key))
        )
        return key

    def get(self, key: str) -> bytes:
        check_key(key)
        rows = self._fetch("get_blob", {"key": key}, binary=True)
        if not rows:
            raise missing_blob(key, self)
        if len(rows) != rows[0][0]:
            raise PermanentError(
                "blob.corrupt", f"blob {key} has {len(rows)} of {rows[0][0]} parts"
            )
        return bytes(rows[0][1]) if len(rows) == 1 else b"".join(r[1] for r in rows)

    def exists(self, key: str) -> bool:
        return self._header(check_key(key)) is not None

    def delete(self, key: str) -> None:
        check_key(key)
        self._run(lambda conn: conn.execute(QUERIES["delete_blob"], {"key": key}))

    # -- beyond the port ---------------------------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Several blobs in one statement: the bytes of each key found (a missing key is absent
        from the answer; the caller says what that means)."""
        keys = sorted({check_key(k) for k in keys})
        if not keys:
            return {}
        parts: dict[str, list[bytes]] = {}
        counts: dict[str, int] = {}
        for key, count, data in self._fetch("get_blobs", {"keys": keys}, binary=True):
            parts.setdefault(key, []).append(bytes(data))
            counts[key] = count
        for key, pieces in parts.items():
            if len(pieces) != counts[key]:
                raise PermanentError(
                    "blob.corrupt", f"blob {key} has {len(pieces)} of {counts[key]} parts"
                )
        return {key: b"".join(pieces) for key, pieces in parts.items()}

    def put_many(self, blobs: Iterable[bytes]) -> list[str]:
        """Store several blobs; returns their keys, in order. The one-part ones (at most
        ``part_bytes``) go in one statement, larger ones one by one as ``put`` stores them.
        Like ``put``, bytes already stored are not written again."""
        keys, unique = [], {}
        for data in blobs:
            if len(data) > self.part_bytes:
                keys.append(self.put(data))
                continue
            key = content_key(data)
            keys.append(key)
            unique[key] = data
        if unique:
            params = {"keys": list(unique), "data": list(unique.values())}
            self._run(lambda conn: conn.execute(QUERIES["put_small_blobs"], params, binary=True))
        return keys

    def iter_parts(self, key: str) -> Iterator[bytes]:
        """A blob's bytes part by part: one part in memory at a time."""
        header = self._header(check_key(key))
        if header is None:
            raise missing_blob(key, self)
        for part in range(header[1]):
            rows = self._fetch("get_blob_part", {"key": key, "part": part}, binary=True)
            if not rows:
                raise missing_blob(key, self)  # deleted while we were reading it
            yield bytes(rows[0][0])

    def list_blobs(self) -> Iterator[BlobInfo]:
        after = ""
        while True:
            rows = self._fetch("list_blobs", {"after": after, "limit": LIST_PAGE})
            yield from (BlobInfo(key, size, stored) for key, size, stored in rows)
            if len(rows) < LIST_PAGE:
                return
            after = rows[-1][0]

    # -- internals ---------------------------------------------------------------------------

    def _header(self, key: str) -> tuple[int, int] | None:
        rows = self._fetch("blob_header", {"key": key})
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def _put_small(self, conn: Connection, key: str, data: bytes) -> None:
        conn.execute(QUERIES["put_small_blob"], {"key": key, "size": len(data), "data": data})

    def _put_parts(
        self, conn: Connection, key: str, size: int, pieces: Iterable[bytes | memoryview]
    ) -> None:
        parts = max(1, -(-size // self.part_bytes))
        with conn.transaction():
            claim = {"key": key, "size": size, "parts": parts}
            if conn.execute(QUERIES["claim_blob"], claim).fetchone() is None:
                return  # stored already (or by a concurrent put that has now committed)
            with conn.cursor().copy(QUERIES["copy_blob_parts"]) as copy:
                copy.set_types(["text", "int4", "bytea"])
                for part, piece in enumerate(pieces):
                    copy.write_row((key, part, piece))

    def _fetch(
        self, query: str, params: dict[str, Any], *, binary: bool = False
    ) -> list[tuple[Any, ...]]:
        def fetch(conn: Connection) -> list[tuple[Any, ...]]:
            return conn.execute(QUERIES[query], params, binary=binary).fetchall()

        return self._run(fetch)

    def _run(self, call: Callable[[Connection], T]) -> T:
        """``call`` on a pooled connection, retried whole while the database is unreachable."""
        give_up = time.monotonic() + self.retry_seconds
        attempt = 0
        while True:
            try:
                wait = max(0.1, give_up - time.monotonic())
                with self.pool.connection(timeout=wait) as conn:
                    return call(conn)
            except psycopg.Error as exc:
                if not is_transient_db_error(exc):
                    raise PermanentError("blob.db_error", f"blob store: {exc}") from exc
                if time.monotonic() >= give_up:
                    raise TransientError("blob.unavailable", f"blob store: {exc}") from exc
                attempt += 1
                time.sleep(backoff_delay(attempt))


def _verified(path: Path, piece_bytes: int, key: str) -> Iterator[bytes]:
    """The file's pieces; fails (rolling the copy back) if they no longer hash to ``key``."""
    digest = hashlib.sha256()
    for piece in iter_file(path, piece_bytes):
        digest.update(piece)
        yield piece
    if digest.hexdigest() != key:
        raise PermanentError("blob.changed", f"{path} changed while it was being stored")
