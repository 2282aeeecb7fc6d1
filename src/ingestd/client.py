"""The Python API: ``AsyncClient`` and ``Client`` do in-process what the HTTP API does over the
network — ingest files or bytes, follow and wait on jobs, search, retry, cancel, delete — for
one owner, through the same service layer (``ingestd.service``).

Documents are processed by workers (``ingestd worker``, any number, anywhere); ``process()``
runs one in this process until the queue is empty, for scripts and tests::

    from ingestd import Client

    with Client(owner="docs-team") as client:
        [doc] = client.ingest_bytes("notes.md", b"# Notes\\n\\nSolar panels on the roof.")
        client.process()
        job = client.wait(doc.job_id)
        hits = client.search("solar energy", k=3)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from ingestd.api.schemas import Document, Job, JobEvent, SearchHit
from ingestd.app import App, open_app
from ingestd.config import DEFAULT_OWNER, Settings, read_settings
from ingestd.errors import PermanentError
from ingestd.ingest import IngestResult, Upload, ingest_paths, ingest_uploads
from ingestd.parsers.detect import SUPPORTED_MEDIA_TYPES, detect_media_type
from ingestd.search import search as run_search
from ingestd.service import documents, jobs
from ingestd.states import TERMINAL_STATES

JobId = uuid.UUID | str


def _uuid(value: JobId) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


class AsyncClient:
    """ingestd in this process, for one owner (``owner=None``: the settings' owner).

    Use as ``async with AsyncClient() as client: ...``; it opens the database (migrating it) and
    the adapters the settings choose, and closes them at the end.
    """

    def __init__(self, settings: Settings | None = None, *, owner: str | None = None) -> None:
        self.settings = settings or read_settings()
        self.owner = owner or self.settings.owner or DEFAULT_OWNER
        self._stack = AsyncExitStack()
        self._app: App | None = None

    async def __aenter__(self) -> AsyncClient:
        self._app = await self._stack.enter_async_context(open_app(self.settings))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._app = None
        await self._stack.aclose()

    @property
    def app(self) -> App:
        if self._app is None:
            raise RuntimeError("use the client inside 'async with' (or 'with' for Client)")
        return self._app

    async def ingest_files(self, paths: Iterable[Path | str]) -> list[IngestResult]:
        """Queue every regular file under ``paths`` (folders recursively)."""
        report = await ingest_paths(
            self.app.db, self.app.blobs, [Path(p) for p in paths], owner=self.owner
        )
        return report.results

    async def ingest_bytes(
        self, filename: str, data: bytes, *, metadata: dict[str, Any] | None = None
    ) -> list[IngestResult]:
        """Queue one document given as bytes; ``metadata`` is stored with it (and searchable).
        Raises ``PermanentError`` (``upload.empty``, ``upload.unsupported_type``) on bad input."""
        if not data:
            raise PermanentError("upload.empty", f"{filename!r} is empty")
        media_type = detect_media_type(data, filename)
        if media_type not in SUPPORTED_MEDIA_TYPES:
            raise PermanentError("upload.unsupported_type", f"{filename!r} is {media_type}")
        upload = Upload(filename, data, media_type, metadata=dict(metadata or {}))
        return await ingest_uploads(self.app.db, self.app.blobs, [upload], owner=self.owner)

    async def get_job(self, job_id: JobId) -> Job:
        """State, progress, error, usage and timings (``NotFound`` for another owner's)."""
        return Job.model_validate(await jobs.get_job(self.app.db, _uuid(job_id), owner=self.owner))

    async def job_events(self, job_id: JobId) -> list[JobEvent]:
        rows = await jobs.job_events(self.app.db, _uuid(job_id), owner=self.owner)
        return [JobEvent.model_validate(r) for r in rows]

    async def wait(self, job_id: JobId, *, timeout: float = 300.0, poll: float = 0.2) -> Job:
        """The job once it is terminal (complete, failed or cancelled); ``TimeoutError`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get_job(job_id)
            if job.state in {s.value for s in TERMINAL_STATES}:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout}s")
            await asyncio.sleep(poll)

    async def process(self) -> int:
        """Run one worker in this process until no job is left; returns its exit status."""
        return await self.app.worker(burst=True).run()

    async def search(
        self,
        query: str,
        *,
        k: int = 5,
        document_ids: Sequence[JobId] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        """The ``k`` chunks nearest ``query``, best first."""
        hits = await run_search(
            self.app.db,
            self.app.ports.embedder,
            query,
            owner=self.owner,
            limit=k,
            document_ids=[_uuid(d) for d in document_ids] if document_ids else None,
            metadata=metadata,
        )
        return [SearchHit.model_validate(h.to_json()) for h in hits]

    async def get_document(self, document_id: JobId) -> Document:
        row = await documents.get_document(self.app.db, _uuid(document_id), owner=self.owner)
        return Document.model_validate(row)

    async def delete(self, document_id: JobId) -> None:
        """Delete a document: its job is cancelled, its chunks, buffers and blobs removed."""
        await documents.delete_document(
            self.app.db, self.app.blobs, _uuid(document_id), owner=self.owner
        )

    async def retry(self, job_id: JobId) -> Job:
        """Send a failed or cancelled job back to the stage that failed (``Conflict`` else)."""
        return Job.model_validate(
            await jobs.retry_job(self.app.db, _uuid(job_id), owner=self.owner)
        )

    async def cancel(self, job_id: JobId) -> Job:
        """Stop an unfinished job (``Conflict`` if it already ended)."""
        return Job.model_validate(
            await jobs.cancel_job(self.app.db, _uuid(job_id), owner=self.owner)
        )


class Client:
    """``AsyncClient`` for code without an event loop: the same methods, blocking.

    Use as ``with Client() as client: ...`` (not inside a running event loop).
    """

    def __init__(self, settings: Settings | None = None, *, owner: str | None = None) -> None:
        self._async = AsyncClient(settings, owner=owner)
        self._runner: asyncio.Runner | None = None

    @property
    def owner(self) -> str:
        return self._async.owner

    def __enter__(self) -> Client:
        self._runner = asyncio.Runner()
        self._run(self._async.__aenter__())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._run(self._async.__aexit__(kind, exc, tb))
        finally:
            assert self._runner is not None
            self._runner.close()
            self._runner = None

    def _run(self, coro: Any) -> Any:
        if self._runner is None:
            coro.close()
            raise RuntimeError("use the client inside 'with'")
        return self._runner.run(coro)

    def ingest_files(self, paths: Iterable[Path | str]) -> list[IngestResult]:
        """See ``AsyncClient.ingest_files``."""
        return self._run(self._async.ingest_files(paths))  # type: ignore[no-any-return]

    def ingest_bytes(
        self, filename: str, data: bytes, *, metadata: dict[str, Any] | None = None
    ) -> list[IngestResult]:
        """See ``AsyncClient.ingest_bytes``."""
        return self._run(  # type: ignore[no-any-return]
            self._async.ingest_bytes(filename, data, metadata=metadata)
        )

    def get_job(self, job_id: JobId) -> Job:
        """See ``AsyncClient.get_job``."""
        return self._run(self._async.get_job(job_id))  # type: ignore[no-any-return]

    def job_events(self, job_id: JobId) -> list[JobEvent]:
        """See ``AsyncClient.job_events``."""
        return self._run(self._async.job_events(job_id))  # type: ignore[no-any-return]

    def wait(self, job_id: JobId, *, timeout: float = 300.0) -> Job:
        """See ``AsyncClient.wait``."""
        return self._run(self._async.wait(job_id, timeout=timeout))  # type: ignore[no-any-return]

    def process(self) -> int:
        """See ``AsyncClient.process``."""
        return self._run(self._async.process())  # type: ignore[no-any-return]

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        document_ids: Sequence[JobId] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[SearchHit]:
        """See ``AsyncClient.search``."""
        return self._run(  # type: ignore[no-any-return]
            self._async.search(query, k=k, document_ids=document_ids, metadata=metadata)
        )

    def get_document(self, document_id: JobId) -> Document:
        """See ``AsyncClient.get_document``."""
        return self._run(self._async.get_document(document_id))  # type: ignore[no-any-return]

    def delete(self, document_id: JobId) -> None:
        """See ``AsyncClient.delete``."""
        self._run(self._async.delete(document_id))

    def retry(self, job_id: JobId) -> Job:
        """See ``AsyncClient.retry``."""
        return self._run(self._async.retry(job_id))  # type: ignore[no-any-return]

    def cancel(self, job_id: JobId) -> Job:
        """See ``AsyncClient.cancel``."""
        return self._run(self._async.cancel(job_id))  # type: ignore[no-any-return]
