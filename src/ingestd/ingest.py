"""Uploading documents: store the bytes, record the document, queue its job.

Set-based: files go in groups, each group in one transaction (one INSERT of documents and one of
jobs, over ``unnest``). Identical content uploaded again by the same owner is the same document:
no new job is created and the existing document and job are returned (``duplicate=True``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.parsers.detect import detect_media_type
from ingestd.ports import BlobStore
from ingestd.reports import reindex_jobs
from ingestd.storage import content_key

GROUP_SIZE = 200


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes
    media_type: str | None = None


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


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and files under folders named (recursively, hidden ones skipped), sorted."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path)
                if child.is_file() and not any(p.startswith(".") for p in rel.parts):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


async def ingest_files(
    db: Database,
    blobs: BlobStore,
    paths: Iterable[Path],
    *,
    owner: str,
    max_attempts: int = 5,
    priority: int = 0,
    versions: PipelineVersions | None = None,
) -> list[IngestResult]:
    """Upload every file under ``paths``, in groups of ``GROUP_SIZE`` (one transaction each)."""
    results: list[IngestResult] = []
    group: list[Upload] = []
    options: dict[str, Any] = {
        "owner": owner,
        "max_attempts": max_attempts,
        "priority": priority,
        "versions": versions,
    }
    for path in iter_files(paths):
        group.append(Upload(path.name, await asyncio.to_thread(path.read_bytes)))
        if len(group) >= GROUP_SIZE:
            results += await ingest_uploads(db, blobs, group, **options)
            group = []
    if group:
        results += await ingest_uploads(db, blobs, group, **options)
    return results


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
        key = await asyncio.to_thread(blobs.put, upload.data)
        media_type = upload.media_type or detect_media_type(upload.data, upload.filename)
        rows.append((upload.filename, media_type, len(upload.data), content_key(upload.data), key))
    params: dict[str, Any] = {
        "owner": owner,
        "filenames": [r[0] for r in rows],
        "media_types": [r[1] for r in rows],
        "sizes": [r[2] for r in rows],
        "sha256s": [r[3] for r in rows],
        "blob_keys": [r[4] for r in rows],
        "max_attempts": max_attempts,
        "priority": priority,
    }

    async def work(conn: Conn) -> list[IngestResult]:
        cur = conn.cursor(row_factory=dict_row)
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
        for filename, _, _, sha, _ in rows:
            if sha in created and sha not in seen:
                doc_id = created[sha]
                results.append(IngestResult(doc_id, jobs[doc_id], filename, duplicate=False))
            else:
                doc_id, job_id = existing[sha]
                results.append(IngestResult(doc_id, job_id, filename, duplicate=True))
            seen.add(sha)
        return results

    return await db.transaction(work)
