"""Uploading documents: store the bytes, record the document, queue its job.

Set-based: files go in groups, each group in one transaction (one INSERT of documents and one of
jobs, over ``unnest``). Identical content uploaded again by the same owner is the same document:
no new job is created and the existing document and job are returned (``duplicate=True``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.folders import (
    DETECT_FAILED,
    FoundFile,
    SkipFile,
    Skipped,
    read_found,
    scan,
    shown,
)
from ingestd.parsers.detect import detect_media_type
from ingestd.parsers.limits import DEFAULT_MAX_BYTES
from ingestd.ports import BlobStore
from ingestd.reports import reindex_jobs
from ingestd.storage import content_key

log = structlog.get_logger(__name__)

GROUP_SIZE = 200


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes
    media_type: str | None = None
    # Stored with the document (e.g. the raw bytes of a file name that is not UTF-8).
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IngestResult:
    document_id: uuid.UUID
    job_id: uuid.UUID | None
    filename: str
    duplicate: bool
    # A duplicate whose chunks were made with other settings, sent back to be re-indexed.
    reindexed: bool = False


@dataclass(frozen=True, slots=True)
class PipelineVersions:
    """The settings that shape a document's chunks: re-uploading under others re-indexes."""

    chunker_version: str
    embedding_model: str


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What a folder ingest did: one result per file queued, one entry per path left out."""

    results: list[IngestResult]
    skipped: list[Skipped]

    @property
    def job_ids(self) -> set[uuid.UUID]:
        """The distinct jobs this ingest queued or found (two identical files share one)."""
        return {r.job_id for r in self.results if r.job_id is not None}


async def ingest_paths(
    db: Database,
    blobs: BlobStore,
    paths: Iterable[Path],
    *,
    owner: str,
    max_attempts: int = 5,
    priority: int = 0,
    versions: PipelineVersions | None = None,
    follow_symlinks: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> IngestReport:
    """Upload every regular file under ``paths``, in groups of ``GROUP_SIZE`` (one transaction
    each); every other entry, and every file that cannot be read, is reported in ``skipped``."""
    report = IngestReport([], [])
    group: list[Upload] = []
    options: dict[str, Any] = {
        "owner": owner,
        "max_attempts": max_attempts,
        "priority": priority,
        "versions": versions,
    }
    for item in scan(paths, follow_symlinks=follow_symlinks):
        upload = item if isinstance(item, Skipped) else await _load(item, max_bytes)
        if isinstance(upload, Skipped):
            report.skipped.append(upload)
            continue
        group.append(upload)
        if len(group) >= GROUP_SIZE:
            report.results.extend(await ingest_uploads(db, blobs, group, **options))
            group = []
    if group:
        report.results.extend(await ingest_uploads(db, blobs, group, **options))
    return report


async def ingest_files(
    db: Database, blobs: BlobStore, paths: Iterable[Path], *, owner: str, **options: Any
) -> list[IngestResult]:
    """The documents ``ingest_paths`` queued (for callers that do not report skipped entries)."""
    return (await ingest_paths(db, blobs, paths, owner=owner, **options)).results


async def _load(found: FoundFile, max_bytes: int) -> Upload | Skipped:
    """The file as an upload with its media type, or why it was left out."""
    try:
        return await asyncio.to_thread(_read_and_detect, found, max_bytes)
    except SkipFile as exc:
        return Skipped(shown(found.path), exc.code, exc.reason)
    except Exception as exc:  # a sniffing bug must cost one file, never the batch
        log.warning("ingest.detect_failed", path=shown(found.path), error=type(exc).__name__)
        return Skipped(
            shown(found.path),
            DETECT_FAILED,
            f"its type could not be determined ({type(exc).__name__})",
        )


def _read_and_detect(found: FoundFile, max_bytes: int) -> Upload:
    data = read_found(found, max_bytes)
    metadata = {"filename_bytes_hex": found.raw_name.hex()} if found.raw_name else {}
    return Upload(found.name, data, detect_media_type(data, found.name), metadata)


async def ingest_uploads(
    db: Database,
    blobs: BlobStore,
    uploads: Sequence[Upload],
    *,
    owner: str,
    max_attempts: int = 5,
    priority: int = 0,
    versions: PipelineVersions | None = None,
) -> list[IngestResult]:
    """Store and queue one group of uploads in one transaction.

    With ``versions``, a duplicate of a complete document made with other chunker or embedding
    settings is sent back to be re-indexed with the current ones (``reindexed=True``).
    """
    results = await _insert_uploads(db, blobs, uploads, owner, max_attempts, priority)
    duplicates = [r.document_id for r in results if r.duplicate]
    if versions is None or not duplicates:
        return results
    moved = set(
        await reindex_jobs(
            db,
            chunker_version=versions.chunker_version,
            embedding_model=versions.embedding_model,
            owner=owner,
            document_ids=duplicates,
        )
    )
    return [replace(r, reindexed=r.duplicate and r.job_id in moved) for r in results]


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A file already in the blob store, to be recorded as a document with a queued job."""

    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    blob_key: str
    metadata: dict[str, Any] = field(default_factory=dict)


async def _insert_uploads(
    db: Database,
    blobs: BlobStore,
    uploads: Sequence[Upload],
    owner: str,
    max_attempts: int,
    priority: int,
) -> list[IngestResult]:
    rows = []
    for upload in uploads:
        key = content_key(upload.data)
        media_type = upload.media_type or detect_media_type(upload.data, upload.filename)
        rows.append(
            NewDocument(
                upload.filename, media_type, len(upload.data), key, key, dict(upload.metadata)
            )
        )

    async def put_blobs() -> None:
        for upload in uploads:
            await asyncio.to_thread(blobs.put, upload.data)

    return await record_documents(
        db,
        rows,
        owner=owner,
        max_attempts=max_attempts,
        priority=priority,
        put_blobs=put_blobs,
    )


async def record_documents(
    db: Database,
    rows: Sequence[NewDocument],
    *,
    owner: str,
    max_attempts: int = 5,
    priority: int = 0,
    put_blobs: Callable[[], Awaitable[None]] | None = None,
) -> list[IngestResult]:
    """Record files as documents and queue their jobs, in one transaction; a file whose
    content the owner already has is answered with the existing document (``duplicate``).

    ``put_blobs`` stores the files' bytes (under their ``blob_key``), inside the transaction
    and under a shared lock on those keys: a delete of a blob with the same content (another
    document's, ``service.documents.delete_document``) waits for this commit and then sees the
    new references, so it can never remove bytes these documents were just given.
    """
    params: dict[str, Any] = {
        "owner": owner,
        "filenames": [r.filename for r in rows],
        "media_types": [r.media_type for r in rows],
        "sizes": [r.size_bytes for r in rows],
        "sha256s": [r.sha256 for r in rows],
        "blob_keys": [r.blob_key for r in rows],
        "metadatas": [Jsonb(r.metadata) for r in rows],
        "max_attempts": max_attempts,
        "priority": priority,
    }

    async def work(conn: Conn) -> list[IngestResult]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["share_blob_keys"], {"keys": sorted(set(params["blob_keys"]))})
        if put_blobs is not None:
            await put_blobs()
        await cur.execute(QUERIES["insert_documents"], params)
        created = {r["sha256"]: r["id"] for r in await cur.fetchall()}
        await cur.execute(
            QUERIES["insert_jobs"], {**params, "document_ids": list(created.values())}
        )
        jobs = {r["document_id"]: r["id"] for r in await cur.fetchall()}
        await cur.execute(QUERIES["existing_documents"], params)
        existing = {r["sha256"]: (r["id"], r["job_id"]) for r in await cur.fetchall()}
        results = []
        seen: set[str] = set()
        for row in rows:
            sha = row.sha256
            if sha in created and sha not in seen:
                doc_id = created[sha]
                results.append(IngestResult(doc_id, jobs[doc_id], row.filename, duplicate=False))
            else:
                doc_id, job_id = existing[sha]
                results.append(IngestResult(doc_id, job_id, row.filename, duplicate=True))
            seen.add(sha)
        return results

    return await db.transaction(work)
