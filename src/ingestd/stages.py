"""The pipeline's stages, as functions of their inputs and the ports, applied to a batch of jobs.

``Pipeline.step(state, jobs)`` runs the stage that a job in ``state`` needs, for every job of the
batch that is in that state, and commits the outcomes — each job's transition, its event row and
the stage's output — in one transaction. A failure of one job becomes that job's outcome (retry
or fail) and never touches the other jobs of the batch.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import structlog
from structlog.contextvars import bound_contextvars

from ingestd.blobs import BatchedBlobStore
from ingestd.chunking import chunk_id
from ingestd.config import WorkerSettings
from ingestd.db import Database
from ingestd.db.database import Conn
from ingestd.embedders.batching import split_usage
from ingestd.errors import IngestdError, PermanentError, Throttled, TransientError
from ingestd.faultpoints import FaultPoints
from ingestd.jobs import (
    ClaimedJob,
    JobStore,
    Outcome,
    Writer,
    advance,
    finalize_chunks,
    pending_vectors,
    unfinished_jobs,
    write_chunk_buffer,
    write_vectors,
)
from ingestd.observability.metrics import record_fenced_out, record_outcomes
from ingestd.parsers.limits import check_size
from ingestd.ports import BlobStore, Chunk, Chunker, Embedder, ParsedDocument
from ingestd.remote_parse import RemoteParseConfig, RemoteParseStage, wake_announced
from ingestd.retry import park_for, retry_delay, should_fail
from ingestd.states import FAILURE_OF, State
from ingestd.traffic import Traffic, Usage
from ingestd.traffic.budgets import record_usage

log = structlog.get_logger(__name__)

ParseFn = Callable[[bytes, str, str], Awaitable[ParsedDocument]]
ValidateFn = Callable[[ParsedDocument], None]
StageResult = tuple[list[Outcome], Writer | None]
VectorRows = list[tuple[uuid.UUID, str, np.ndarray]]

# Parsed documents up to this size stay in memory between the parse and chunk stages of a batch.
PARSED_CACHE_MAX_CHARS = 1_000_000
# Blob reads and writes up to this size run on the event loop, larger ones in a thread.
INLINE_MAX_BYTES = 64 * 1024
# Uploads and parsed texts up to this size are read and written a batch at a time, where the
# blob store can (``BatchedBlobStore``: one statement for the batch's blobs, not one each).
BATCHED_BLOB_MAX_BYTES = 256 * 1024
# For budget estimates before a call: English text averages about four characters per token.
CHARS_PER_TOKEN = 4
T = TypeVar("T")

# Stages that can run in the same transaction as the stage before them: they only record
# progress, or work from memory and the blob store, so nothing they read needs the previous
# stage committed. A chain stops after a stage that writes rows (chunk, finalise): what follows
# reads those rows. Each job still gets every transition and event, in order, fenced.
FUSABLE_STATES = frozenset(
    {
        State.PARSE_QUEUED,
        State.PARSED,
        State.PARSE_VALIDATED,
        State.CHUNKING,
        State.EMBEDDING_QUEUED,
        State.EMBEDDING_IN_PROGRESS,
        State.EMBEDDINGS_STORED,
    }
)


@dataclass
class StagePorts:
    """The adapters the stages call; wired from settings by ``app.build_app``."""

    blobs: BlobStore
    parse: ParseFn
    validate: ValidateFn
    chunker: Chunker
    embedder: Embedder
    parser_name: str = "local"
    # When set, parse_queued jobs are parsed by a remote service (LlamaParse) instead.
    remote: RemoteParseConfig | None = None
    # USD per million embedding tokens, for the cost recorded on jobs (0: free, local).
    embedding_price_per_million: float = 0.0
    # The service the embedder calls (its ledger and budget name), and the traffic controls.
    embedding_service: str = "local"
    traffic: Traffic | None = None
    # Documents larger than this fail parse.too_large before their bytes are read (None: no cap).
    max_parse_bytes: int | None = None


def error_outcome(
    job: ClaimedJob, exc: IngestdError, settings: WorkerSettings, duration_ms: int | None = None
) -> Outcome:
    """Park the job (a throttle), fail the stage (permanent, or out of tries) or schedule a
    retry with backoff."""
    parked = park_for(exc, settings.backoff_base_seconds, settings.backoff_max_seconds)
    if parked is not None:
        waiting_on, delay = parked
        return Outcome(
            job,
            job.state,
            kind="park",
            release=True,
            delay=delay,
            retry_count=job.retry_count,
            error=exc.to_json(),
            patch={"waiting_on": waiting_on},
            duration_ms=duration_ms,
        )
    if should_fail(exc, job.retry_count, job.max_attempts):
        return Outcome(
            job,
            FAILURE_OF[job.state],
            kind="fail",
            release=True,
            retry_count=job.retry_count,
            error=exc.to_json(),
            duration_ms=duration_ms,
        )
    delay = retry_delay(
        exc, job.retry_count, settings.backoff_base_seconds, settings.backoff_max_seconds
    )
    return Outcome(
        job,
        job.state,
        kind="retry",
        release=True,
        delay=delay,
        retry_count=job.retry_count + 1,
        error=exc.to_json(),
        duration_ms=duration_ms,
    )


def as_ingestd_error(exc: BaseException) -> IngestdError:
    if isinstance(exc, IngestdError):
        return exc
    # A bug or an unexpected library error: retried, then failed, with the cause recorded.
    return TransientError("internal.error", f"{type(exc).__name__}: {exc}")


class Pipeline:
    """Runs one stage for a batch of jobs that are all in the same state."""

    def __init__(
        self,
        db: Database,
        store: JobStore,
        ports: StagePorts,
        settings: WorkerSettings,
        *,
        embed_slice: int = 1024,
        faults: FaultPoints | None = None,
    ) -> None:
        self.db = db
        self.faults = faults or FaultPoints()
        self.store = store
        self.ports = ports
        self.settings = settings
        self.embed_slice = embed_slice
        self._parsed: dict[uuid.UUID, ParsedDocument] = {}
        self._remote = (
            RemoteParseStage(db, store, ports.blobs, ports.remote, self.faults)
            if ports.remote is not None
            else None
        )
        self._handlers: dict[State, Callable[[list[ClaimedJob]], Awaitable[StageResult]]] = {
            State.UPLOADED: self._enqueue_parse,
            State.PARSE_QUEUED: self._parse,
            State.PARSED: self._validate,
            State.PARSE_VALIDATED: self._start_chunking,
            State.CHUNKING: self._chunk,
            State.CHUNKS_STORED: self._enqueue_embedding,
            State.EMBEDDING_QUEUED: self._start_embedding,
            State.EMBEDDING_IN_PROGRESS: self._embed,
            State.EMBEDDINGS_STORED: self._finalize,
        }

    async def step(self, state: State, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Run ``state``'s stage, and the stages after it that can share its transaction (see
        ``FUSABLE_STATES``), then commit every job's transitions, in order, at once; returns
        the jobs this worker keeps (in their new state)."""
        layers: list[tuple[State, list[Outcome], Writer | None]] = []
        while True:
            outcomes, write = await self._run_stage(state, jobs)
            layers.append((state, outcomes, write))
            jobs = [o.next_job() for o in outcomes if o.continues]
            following = {j.state for j in jobs}
            if write is not None or len(following) != 1 or not self._fusable(*following):
                break
            state = following.pop()
        for layer_state, _, _ in layers:
            await self.faults.hit(f"stage.before_commit:{layer_state.value}")
        moved_by_layer = await self.store.commit_layers([(o, w) for _, o, w in layers])
        for layer_state, _, _ in layers:
            await self.faults.hit(f"stage.after_commit:{layer_state.value}")
        for (layer_state, outcomes, _), moved in zip(layers, moved_by_layer, strict=True):
            self._record(layer_state, outcomes, moved)
            await self._after_commit(outcomes, moved)
        outcomes, moved = layers[-1][1], moved_by_layer[-1]
        return [o.next_job() for o in outcomes if o.job.id in moved and o.continues]

    def _fusable(self, state: State) -> bool:
        if not self.settings.fuse_stages:
            return False
        if state == State.PARSE_QUEUED and self._remote is not None:
            return False  # the remote stage commits its own steps, from parse_queued
        return state in FUSABLE_STATES

    async def _run_stage(self, state: State, jobs: list[ClaimedJob]) -> StageResult:
        with bound_contextvars(stage=state.value):
            try:
                await self.faults.hit(f"stage.before:{state.value}")
                return await self._handlers[state](jobs)
            except Exception as exc:  # the stage itself broke: every job of the group retries
                error = as_ingestd_error(exc)
                log.warning("stage.failed", jobs=len(jobs), error=error.to_json())
                return [error_outcome(j, error, self.settings) for j in jobs], None

    async def _after_commit(self, outcomes: list[Outcome], moved: set[uuid.UUID]) -> None:
        waiting = [o.job.id for o in outcomes if o.kind == "wait" and o.job.id in moved]
        if waiting:
            await wake_announced(self.db, waiting)
        for outcome in outcomes:
            if outcome.job.id not in moved or not outcome.continues:
                self._parsed.pop(outcome.job.id, None)
            self._log_outcome(outcome, outcome.job.id in moved)

    def _record(self, state: State, outcomes: list[Outcome], moved: set[uuid.UUID]) -> None:
        service = self._service_of(state)
        committed = [o for o in outcomes if o.job.id in moved]
        record_outcomes(
            state.value,
            committed,
            service=service,
            embedding_model=self.ports.embedder.model,
            parser=self.ports.parser_name,
        )
        record_fenced_out(len(outcomes) - len(committed))

    def _service_of(self, state: State) -> str:
        """The service a stage's external calls go to (the label of its retry metrics)."""
        if state in (State.UPLOADED, State.PARSE_QUEUED, State.PARSED):
            return self.ports.parser_name
        if state in (State.EMBEDDING_QUEUED, State.EMBEDDING_IN_PROGRESS):
            return self.ports.embedding_service
        return "internal"

    @staticmethod
    def _log_outcome(outcome: Outcome, moved: bool) -> None:
        if moved and outcome.kind not in ("fail", "retry", "park"):
            return
        with bound_contextvars(**outcome.job.log_fields()):
            if not moved:
                log.warning("job.fenced_out", attempt=outcome.job.attempt)
            else:
                log.info(
                    "job." + outcome.kind, to_state=outcome.to_state.value, error=outcome.error
                )

    def forget(self, job_id: uuid.UUID) -> None:
        self._parsed.pop(job_id, None)

    # -- stages that only record progress ------------------------------------------------

    async def _enqueue_parse(self, jobs: list[ClaimedJob]) -> StageResult:
        return [advance(j, State.PARSE_QUEUED, parser=self.ports.parser_name) for j in jobs], None

    async def _start_chunking(self, jobs: list[ClaimedJob]) -> StageResult:
        version = self.ports.chunker.version
        return [advance(j, State.CHUNKING, chunker_version=version) for j in jobs], None

    async def _enqueue_embedding(self, jobs: list[ClaimedJob]) -> StageResult:
        embedder = self.ports.embedder
        return [
            advance(
                j,
                State.EMBEDDING_QUEUED,
                embedding_model=embedder.model,
                embedding_dimensions=embedder.dimensions,
            )
            for j in jobs
        ], None

    async def _start_embedding(self, jobs: list[ClaimedJob]) -> StageResult:
        return [advance(j, State.EMBEDDING_IN_PROGRESS) for j in jobs], None

    # -- parse and validate --------------------------------------------------------------

    async def _parse(self, jobs: list[ClaimedJob]) -> StageResult:
        blobs = self.ports.blobs
        if self._remote is not None or not isinstance(blobs, BatchedBlobStore):
            outcomes = await asyncio.gather(*(self._parse_one(j) for j in jobs))
            return list(outcomes), None
        # A store with batch calls: the batch's small uploads in one read and their parsed
        # texts in one write (one round trip and one thread hop each, not one per document).
        small = [j for j in jobs if j.size_bytes <= BATCHED_BLOB_MAX_BYTES and self._fits(j)]
        uploads: dict[str, bytes | Exception] = {}
        if small:
            keys = [j.blob_key for j in small]
            try:
                uploads.update(await asyncio.to_thread(blobs.get_many, keys))
            except Exception as exc:  # each of those jobs fails (or retries) with the error
                uploads = dict.fromkeys(keys, exc)
        parsed = await asyncio.gather(*(self._parse_local(j, uploads) for j in jobs))
        return await self._store_parsed(blobs, parsed), None

    def _fits(self, job: ClaimedJob) -> bool:
        limit = self.ports.max_parse_bytes
        return limit is None or job.size_bytes <= limit

    async def _parse_local(
        self, job: ClaimedJob, uploads: dict[str, bytes | Exception]
    ) -> Outcome | tuple[ClaimedJob, ParsedDocument, float]:
        """Parse one job's upload (read from ``uploads`` when the batch read holds it): its
        parsed document, or the outcome of its failure."""
        with bound_contextvars(**job.log_fields()):
            started = time.monotonic()
            try:
                if self.ports.max_parse_bytes is not None:
                    check_size(job.size_bytes, self.ports.max_parse_bytes)
                data = uploads.get(job.blob_key)
                if isinstance(data, Exception):
                    raise data
                if data is None:  # not read in the batch (large), or missing: the one-by-one way
                    data = await self._blob_io(job.size_bytes, self.ports.blobs.get, job.blob_key)
                parsed = await self.ports.parse(data, job.media_type, job.filename)
                del data
            except Exception as exc:
                return error_outcome(job, as_ingestd_error(exc), self.settings, _ms(started))
            return job, parsed, started

    async def _store_parsed(
        self,
        blobs: BatchedBlobStore,
        results: list[Outcome | tuple[ClaimedJob, ParsedDocument, float]],
    ) -> list[Outcome]:
        """Store the parsed texts (small ones in one write) and advance their jobs to parsed."""
        done = [r for r in results if not isinstance(r, Outcome)]
        texts = {job.id: parsed.markdown.encode() for job, parsed, _ in done}
        small = [job.id for job, _, _ in done if len(texts[job.id]) <= BATCHED_BLOB_MAX_BYTES]
        keys: dict[uuid.UUID, str] = {}
        failed: Exception | None = None
        if small:
            try:
                stored = await asyncio.to_thread(blobs.put_many, [texts[i] for i in small])
                keys = dict(zip(small, stored, strict=True))
            except Exception as exc:
                failed = exc
        outcomes = []
        for result in results:
            if isinstance(result, Outcome):
                outcomes.append(result)
                continue
            job, parsed, started = result
            with bound_contextvars(**job.log_fields()):
                try:
                    if failed is not None and job.id in small:
                        raise failed
                    key = keys.get(job.id)
                    if key is None:  # a large text: stored alone
                        text = texts[job.id]
                        key = await self._blob_io(len(text), blobs.put, text)
                except Exception as exc:
                    error = as_ingestd_error(exc)
                    outcomes.append(error_outcome(job, error, self.settings, _ms(started)))
                    continue
            outcomes.append(self._parsed_outcome(job, parsed, key, started))
        return outcomes

    def _parsed_outcome(
        self, job: ClaimedJob, parsed: ParsedDocument, key: str, started: float
    ) -> Outcome:
        if len(parsed.markdown) <= PARSED_CACHE_MAX_CHARS:
            self._parsed[job.id] = parsed
        return advance(
            job,
            State.PARSED,
            _ms(started),
            parsed_blob_key=key,
            parse_metadata=parsed.stored_metadata(),
            usage={"parse_pages": parsed.page_count or 0},
        )

    async def _parse_one(self, job: ClaimedJob) -> Outcome:
        with bound_contextvars(**job.log_fields()):
            return await self._parse_one_bound(job)

    async def _parse_one_bound(self, job: ClaimedJob) -> Outcome:
        if self._remote is not None:
            try:
                return await self._remote.run(job)
            except Exception as exc:
                return error_outcome(job, as_ingestd_error(exc), self.settings)
        started = time.monotonic()
        try:
            if self.ports.max_parse_bytes is not None:
                check_size(job.size_bytes, self.ports.max_parse_bytes)
            data = await self._blob_io(job.size_bytes, self.ports.blobs.get, job.blob_key)
            parsed = await self.ports.parse(data, job.media_type, job.filename)
            del data
            text = parsed.markdown.encode()
            key = await self._blob_io(len(text), self.ports.blobs.put, text)
        except Exception as exc:
            return error_outcome(job, as_ingestd_error(exc), self.settings, _ms(started))
        return self._parsed_outcome(job, parsed, key, started)

    async def _blob_io(self, size: int, function: Callable[..., T], *args: Any) -> T:
        """A blob store call: small ones inline on a local folder, all others in a thread (a
        database or network round trip must never stall the event loop)."""
        if not getattr(self.ports.blobs, "inline_io", False):
            return await asyncio.to_thread(function, *args)
        return await off_loop(size, function, *args)

    async def _load_parsed(self, job: ClaimedJob) -> ParsedDocument:
        cached = self._parsed.get(job.id)
        if cached is not None:
            return cached
        if job.parsed_blob_key is None:
            raise PermanentError("parse.missing_output", "the job has no parsed text to work on")
        size = int(job.parse_metadata.get("chars") or INLINE_MAX_BYTES)
        raw = await self._blob_io(size, self.ports.blobs.get, job.parsed_blob_key)
        return ParsedDocument.from_stored(raw.decode(), job.parse_metadata)

    async def _validate(self, jobs: list[ClaimedJob]) -> StageResult:
        outcomes = []
        for job in jobs:
            started = time.monotonic()
            try:
                parsed = await self._load_parsed(job)
                self.ports.validate(parsed)
                outcomes.append(advance(job, State.PARSE_VALIDATED, _ms(started)))
            except Exception as exc:
                outcomes.append(error_outcome(job, as_ingestd_error(exc), self.settings))
        return outcomes, None

    # -- chunk ---------------------------------------------------------------------------

    async def _chunk(self, jobs: list[ClaimedJob]) -> StageResult:
        outcomes: list[Outcome] = []
        chunks: dict[uuid.UUID, list[tuple[str, Chunk]]] = {}
        loaded: list[tuple[ClaimedJob, ParsedDocument]] = []
        for job in jobs:
            try:
                loaded.append((job, await self._load_parsed(job)))
            except Exception as exc:
                outcomes.append(error_outcome(job, as_ingestd_error(exc), self.settings))
        # The whole batch in one thread: tiktoken lets go of the GIL while it encodes, so the
        # event loop, and other batches' chunking, run meanwhile (on another core).
        done = await asyncio.to_thread(chunk_each, self.ports.chunker, [d for _, d in loaded])
        for (job, _), (pieces, ms) in zip(loaded, done, strict=True):
            if not isinstance(pieces, Exception) and not pieces:
                pieces = PermanentError("chunk.empty", "the document produced no chunks")
            if isinstance(pieces, Exception):
                outcomes.append(error_outcome(job, as_ingestd_error(pieces), self.settings))
                continue
            self._parsed.pop(job.id, None)
            version = job.chunker_version or self.ports.chunker.version
            doc_id = str(job.document_id)
            chunks[job.id] = [(chunk_id(doc_id, version, c.ordinal, c.text), c) for c in pieces]
            outcomes.append(advance(job, State.CHUNKS_STORED, ms, chunk_count=len(pieces)))

        async def write(conn: Conn, moved: set[uuid.UUID]) -> None:
            await write_chunk_buffer(conn, chunks, moved & set(chunks))

        return outcomes, write

    # -- embed ---------------------------------------------------------------------------

    async def _embed(self, jobs: list[ClaimedJob]) -> StageResult:
        started = time.monotonic()
        active = {j.id: j for j in jobs}
        failed: dict[uuid.UUID, Outcome] = {}
        tokens: dict[uuid.UUID, int] = dict.fromkeys(active, 0)
        while active:
            pending = await pending_vectors(self.db, list(active), self.embed_slice)
            if not pending:
                break
            try:
                await self._check_budget(pending, active)
            except Throttled as spent:  # park them all: what is stored so far stays stored
                for job_id in list(active):
                    failed[job_id] = error_outcome(active.pop(job_id), spent, self.settings)
                break
            vectors, usage_by_job, errors, requests = await self._embed_slice(pending, active)
            for job_id, exc in errors.items():
                failed[job_id] = error_outcome(active.pop(job_id), exc, self.settings)
            for job_id, n in usage_by_job.items():
                tokens[job_id] = tokens.get(job_id, 0) + n
            ledger = self._ledger(usage_by_job, requests, {j.id: j.owner for j in jobs})
            held = await self._store_vectors(vectors, list(active.values()), ledger)
            await self.faults.hit("embed.after_slice")
            for job_id in set(active) - held:
                del active[job_id]  # lease lost: the new owner carries on
            if len(pending) < self.embed_slice:
                break  # that slice held every chunk still missing: no need to ask again
        outcomes = [self._with_usage(o, tokens.get(o.job.id, 0)) for o in failed.values()]
        model = self.ports.embedder.model
        outcomes += [
            advance(
                j,
                State.EMBEDDINGS_STORED,
                _ms(started),
                usage=self._embedding_usage(tokens[j.id]),
                embedding_model=model,
            )
            for j in active.values()
        ]
        return outcomes, None

    def _with_usage(self, outcome: Outcome, tokens: int) -> Outcome:
        """A parked, retried or failed job keeps the tokens its stored vectors cost."""
        if not tokens:
            return outcome
        return replace(outcome, patch={**outcome.patch, "usage": self._embedding_usage(tokens)})

    def _embedding_usage(self, tokens: int) -> dict[str, float]:
        usage: dict[str, float] = {"embedding_tokens": tokens}
        if self.ports.embedding_price_per_million:
            usage["embedding_cost_usd"] = round(
                tokens * self.ports.embedding_price_per_million / 1_000_000, 8
            )
        return usage

    async def _check_budget(
        self, pending: list[tuple[uuid.UUID, str, str]], active: dict[uuid.UUID, ClaimedJob]
    ) -> None:
        """Raise ``budget.exhausted`` if embedding this slice would cross a budget."""
        traffic = self.ports.traffic
        if traffic is None:
            return
        owners = {active[job_id].owner for job_id, _, _ in pending if job_id in active}
        estimated = sum(len(text) for _, _, text in pending) / CHARS_PER_TOKEN
        usd = estimated * self.ports.embedding_price_per_million / 1_000_000
        estimate = Usage(tokens=estimated, usd=usd, requests=1)
        await traffic.budgets.check(self.ports.embedding_service, owners, estimate)

    def _ledger(
        self, tokens_by_job: dict[uuid.UUID, int], requests: int, owners: dict[uuid.UUID, str]
    ) -> dict[str, Usage]:
        """The slice's usage by owner, for the usage ledger (what the vendor served)."""
        jobs = list(tokens_by_job)
        shares = split_usage(requests, [tokens_by_job[j] or 1 for j in jobs])
        price = self.ports.embedding_price_per_million / 1_000_000
        by_owner: dict[str, Usage] = {}
        for job_id, share in zip(jobs, shares, strict=True):
            n = tokens_by_job[job_id]
            usage = Usage(tokens=n, usd=n * price, requests=share)
            owner = owners[job_id]
            by_owner[owner] = by_owner.get(owner, Usage()) + usage
        return by_owner

    async def _embed_slice(
        self,
        pending: list[tuple[uuid.UUID, str, str]],
        active: dict[uuid.UUID, ClaimedJob],
    ) -> tuple[VectorRows, dict[uuid.UUID, int], dict[uuid.UUID, IngestdError], int]:
        """Embed one slice: (vectors, tokens by job, errors by job, requests made).

        Inputs the embedder rejected fail only their own documents; a permanent error of the
        whole call is isolated by embedding job by job.
        """
        try:
            return await self._embed_texts(pending)
        except Exception as exc:
            error = as_ingestd_error(exc)
            if not isinstance(error, PermanentError) or len({p[0] for p in pending}) == 1:
                return [], {}, {job_id: error for job_id in {p[0] for p in pending}}, 0
        vectors: VectorRows = []
        usage: dict[uuid.UUID, int] = {}
        errors: dict[uuid.UUID, IngestdError] = {}
        requests = 0
        for job_id in dict.fromkeys(p[0] for p in pending):
            mine = [p for p in pending if p[0] == job_id]
            try:
                more, more_usage, more_errors, more_requests = await self._embed_texts(mine)
            except Exception as exc:
                errors[job_id] = as_ingestd_error(exc)
                continue
            vectors += more
            usage.update(more_usage)
            errors.update(more_errors)
            requests += more_requests
        return vectors, usage, errors, requests

    async def _embed_texts(
        self,
        pending: list[tuple[uuid.UUID, str, str]],
    ) -> tuple[VectorRows, dict[uuid.UUID, int], dict[uuid.UUID, IngestdError], int]:
        result = await self.ports.embedder.embed([text for _, _, text in pending])
        if len(result.vectors) != len(pending):
            raise TransientError(
                "embed.bad_response", f"asked for {len(pending)} vectors, got {len(result.vectors)}"
            )
        poisoned: dict[uuid.UUID, IngestdError] = {}
        for index, error in sorted(result.failures.items()):
            poisoned.setdefault(pending[index][0], error)
        good = [
            (p, vec) for p, vec in zip(pending, result.vectors, strict=True) if p[0] not in poisoned
        ]
        rows = [(job_id, cid, np.asarray(vec, dtype=np.float32)) for (job_id, cid, _), vec in good]
        # Each job's characters, in the order its first chunk comes (one pass, not one per job).
        weights: dict[uuid.UUID, int] = {}
        for (job_id, _, text), _ in good:
            weights[job_id] = weights.get(job_id, 0) + len(text)
        shares = split_usage(result.usage.prompt_tokens, list(weights.values()))
        return rows, dict(zip(weights, shares, strict=True)), poisoned, result.usage.requests

    async def _store_vectors(
        self, vectors: VectorRows, jobs: list[ClaimedJob], ledger: dict[str, Usage]
    ) -> set[uuid.UUID]:
        """Store the vectors of the jobs still held, and what the slice cost in the ledger."""

        async def work(conn: Conn) -> set[uuid.UUID]:
            held = await self.store.lock_fenced(conn, jobs)
            await write_vectors(conn, vectors, held)
            await record_usage(conn, self.ports.embedding_service, ledger)
            return held

        return await self.db.transaction(work)

    # -- finalise ------------------------------------------------------------------------

    async def _finalize(self, jobs: list[ClaimedJob]) -> StageResult:
        async def incomplete(conn: Conn) -> set[uuid.UUID]:
            return await unfinished_jobs(conn, [j.id for j in jobs])

        missing = await self.db.transaction(incomplete)
        outcomes = []
        for job in jobs:
            if job.id in missing:
                error = PermanentError("embed.incomplete", "some chunks have no vector")
                outcomes.append(error_outcome(job, error, self.settings))
            else:
                outcomes.append(advance(job, State.COMPLETE))

        async def write(conn: Conn, moved: set[uuid.UUID]) -> None:
            done = moved - missing
            if done:
                await finalize_chunks(conn, done)

        return outcomes, write


def chunk_each(
    chunker: Chunker, documents: list[ParsedDocument]
) -> list[tuple[list[Chunk] | Exception, int]]:
    """Chunk every document (in a worker thread): its chunks or its error, and milliseconds."""
    done: list[tuple[list[Chunk] | Exception, int]] = []
    for document in documents:
        started = time.monotonic()
        try:
            done.append((chunker.chunk(document), _ms(started)))
        except Exception as exc:
            done.append((exc, _ms(started)))
    return done


async def off_loop(size: int, function: Callable[..., T], *args: Any) -> T:
    """Run ``function`` in a thread when its input is large; small ones (a few KB of file I/O,
    well under a millisecond) are cheaper inline than a thread hop."""
    if size <= INLINE_MAX_BYTES:
        return function(*args)
    return await asyncio.to_thread(function, *args)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
