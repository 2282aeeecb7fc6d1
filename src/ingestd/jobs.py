"""The job store: claim jobs with leases, fence every write, apply transitions with their events.

Work is set-based: a worker claims a batch of jobs in one statement and commits the outcomes of
a stage for the whole batch in one transaction (one UPDATE over ``unnest`` that also appends the
``job_events`` rows), while every job keeps its own state, event and fencing check. The SQL is in
``db/queries/jobs.sql``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.ports import Chunk
from ingestd.states import State, check_transition


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as its claimer sees it. ``attempt`` is the fencing token of this claim."""

    id: uuid.UUID
    document_id: uuid.UUID
    owner: str
    state: State
    attempt: int
    retry_count: int
    max_attempts: int
    correlation_id: uuid.UUID
    filename: str
    media_type: str
    blob_key: str
    size_bytes: int
    parsed_blob_key: str | None = None
    parse_metadata: dict[str, Any] = field(default_factory=dict)
    remote_job_id: str | None = None
    chunker_version: str | None = None
    chunk_count: int | None = None
    embedding_model: str | None = None
    # The previous claimer's lease had expired (a crash recovery), not been released.
    lease_expired: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ClaimedJob:
        return cls(**{**row, "state": State(row["state"])})

    def log_fields(self) -> dict[str, str]:
        """What every log line about this job carries (bound as structlog contextvars)."""
        return {
            "job_id": str(self.id),
            "document_id": str(self.document_id),
            "correlation_id": str(self.correlation_id),
            "stage": self.state.value,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a stage decided for one job; applied by ``JobStore.commit``."""

    job: ClaimedJob
    to_state: State
    # transition | retry | fail | wait (on a vendor) | park (throttled: no attempt counted)
    kind: str = "transition"
    release: bool = False  # give up the lease (terminal, retry later, waiting on a vendor)
    delay: float | None = None  # seconds until next_attempt_at, when the job is released
    retry_count: int = 0
    error: dict[str, Any] | None = None
    patch: dict[str, Any] = field(default_factory=dict)
    duration_ms: int | None = None

    @property
    def continues(self) -> bool:
        """Whether the claimer keeps working on the job after this outcome."""
        return not self.release

    def next_job(self) -> ClaimedJob:
        changes: dict[str, Any] = {"state": self.to_state, "retry_count": self.retry_count}
        for key in (
            "parsed_blob_key",
            "parse_metadata",
            "remote_job_id",
            "chunker_version",
            "chunk_count",
            "embedding_model",
        ):
            if key in self.patch:
                changes[key] = self.patch[key]
        return replace(self.job, **changes)


def advance(
    job: ClaimedJob, to_state: State, duration_ms: int | None = None, **patch: Any
) -> Outcome:
    check_transition(job.state, to_state)
    return Outcome(
        job, to_state, patch=patch, duration_ms=duration_ms, release=to_state == State.COMPLETE
    )


Writer = Callable[[Conn, set[uuid.UUID]], Awaitable[None]]


class JobStore:
    """Claims, leases and fenced writes for one worker identity."""

    def __init__(self, db: Database, worker_id: str, lease_seconds: float) -> None:
        self.db = db
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds

    async def claim(self, limit: int) -> list[ClaimedJob]:
        params = {"limit": limit, "worker": self.worker_id, "lease": self.lease_seconds}

        async def work(conn: Conn) -> list[ClaimedJob]:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(QUERIES["claim_jobs"], params)
            return [ClaimedJob.from_row(row) for row in await cur.fetchall()]

        return await self.db.transaction(work, deadline=30)

    async def commit(
        self,
        outcomes: Sequence[Outcome],
        write: Writer | None = None,
    ) -> set[uuid.UUID]:
        """Apply outcomes (fenced) and the stage's writes for the jobs that moved, atomically.

        Returns the ids that moved; a job missing from it was taken over by another worker.
        """
        return (await self.commit_layers([(outcomes, write)]))[0]

    async def commit_layers(
        self, layers: Sequence[tuple[Sequence[Outcome], Writer | None]]
    ) -> list[set[uuid.UUID]]:
        """Several stages' outcomes in one transaction, in order: a job's outcome in a layer
        starts from the state its outcome in the layer before reached. Returns the ids that
        moved, per layer."""
        params = [self._outcome_params(outcomes) for outcomes, _ in layers]
        tries = 0

        async def work(conn: Conn) -> list[set[uuid.UUID]]:
            nonlocal tries
            tries += 1
            moved_by_layer = []
            for (outcomes, write), layer_params in zip(layers, params, strict=True):
                moved: set[uuid.UUID] = set()
                if outcomes:
                    cur = await conn.execute(QUERIES["apply_outcomes"], layer_params)
                    moved = {row[0] for row in await cur.fetchall()}
                if write is not None and moved:
                    await write(conn, moved)
                moved_by_layer.append(moved)
            if tries > 1:
                # A retry after a lost connection: the first try may have committed.
                await self._add_already_applied(conn, layers, moved_by_layer)
            return moved_by_layer

        if not any(outcomes for outcomes, _ in layers):
            return [set() for _ in layers]
        return await self.db.transaction(work)

    async def _add_already_applied(
        self,
        conn: Conn,
        layers: Sequence[tuple[Sequence[Outcome], Writer | None]],
        moved_by_layer: list[set[uuid.UUID]],
    ) -> None:
        later: set[uuid.UUID] = set()  # moved by a later layer: this one was applied too
        for (outcomes, _), moved in reversed(list(zip(layers, moved_by_layer, strict=True))):
            moved |= later & {o.job.id for o in outcomes}
            if len(moved) < len(outcomes):
                moved |= await self._already_applied(conn, outcomes, moved)
            later = moved

    async def _already_applied(
        self, conn: Conn, outcomes: Sequence[Outcome], moved: set[uuid.UUID]
    ) -> set[uuid.UUID]:
        missing = {o.job.id: o for o in outcomes if o.job.id not in moved}
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["job_fences"], {"ids": list(missing)})
        done = set()
        for row in await cur.fetchall():
            outcome = missing[row["id"]]
            owner_ok = row["lease_owner"] == self.worker_id or outcome.release
            if (
                row["attempt"] == outcome.job.attempt
                and owner_ok
                and row["state"] == outcome.to_state
            ):
                done.add(row["id"])
        return done

    def _outcome_params(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        rows = [
            {
                "id": str(o.job.id),
                "attempt": o.job.attempt,
                "from_state": o.job.state.value,
                "to_state": o.to_state.value,
                "kind": o.kind,
                "release": o.release,
                "delay": o.delay,
                "retry_count": o.retry_count,
                "error": o.error,
                "patch": o.patch,
                "duration_ms": o.duration_ms,
            }
            for o in outcomes
        ]
        return {"worker": self.worker_id, "outcomes": json.dumps(rows)}

    def _fence_params(self, jobs: Iterable[ClaimedJob]) -> dict[str, Any]:
        jobs = list(jobs)
        return {
            "worker": self.worker_id,
            "lease": self.lease_seconds,
            "ids": [j.id for j in jobs],
            "attempts": [j.attempt for j in jobs],
        }

    async def extend_leases(self, jobs: Iterable[ClaimedJob]) -> set[uuid.UUID]:
        """Heartbeat: returns the ids whose lease this worker still holds."""
        return await self._fenced_ids("extend_leases", jobs, deadline=self.lease_seconds / 2)

    async def release(self, jobs: Iterable[ClaimedJob]) -> set[uuid.UUID]:
        """Give jobs back (graceful stop): they become claimable at once by any worker."""
        return await self._fenced_ids("release_leases", jobs, deadline=10)

    async def _fenced_ids(
        self, query: str, jobs: Iterable[ClaimedJob], deadline: float
    ) -> set[uuid.UUID]:
        """Run a fenced query over ``jobs``; returns the ids it matched (still ours)."""
        params = self._fence_params(jobs)
        if not params["ids"]:
            return set()

        async def work(conn: Conn) -> set[uuid.UUID]:
            cur = await conn.execute(QUERIES[query], params)
            return {row[0] for row in await cur.fetchall()}

        return await self.db.transaction(work, deadline=deadline)

    async def lock_fenced(self, conn: Conn, jobs: Iterable[ClaimedJob]) -> set[uuid.UUID]:
        """Inside a transaction: lock the jobs this claim still holds, for a fenced write."""
        cur = await conn.execute(QUERIES["lock_fenced"], self._fence_params(jobs))
        return {row[0] for row in await cur.fetchall()}


async def write_chunk_buffer(
    conn: Conn, chunks: dict[uuid.UUID, list[tuple[str, Chunk]]], job_ids: set[uuid.UUID]
) -> None:
    """Replace the chunk buffer rows of ``job_ids`` with ``chunks`` (idempotent)."""
    await conn.execute(QUERIES["delete_chunk_buffer"], {"ids": list(job_ids)})
    async with conn.cursor().copy(QUERIES["copy_chunk_buffer"]) as copy:
        for job_id in job_ids:
            for chunk_id, c in chunks.get(job_id, []):
                await copy.write_row(
                    (
                        job_id,
                        chunk_id,
                        c.ordinal,
                        c.text,
                        c.token_count,
                        list(c.heading_path),
                        c.page,
                        c.start_offset,
                    )
                )


async def pending_vectors(
    db: Database,
    job_ids: Sequence[uuid.UUID],
    limit: int,
) -> list[tuple[uuid.UUID, str, str]]:
    """Chunks of these jobs that have no vector yet, in document order."""
    rows = await db.fetch_all(QUERIES["pending_vectors"], {"ids": list(job_ids), "limit": limit})
    return [(r["job_id"], r["chunk_id"], r["text"]) for r in rows]


async def write_vectors(
    conn: Conn, rows: Sequence[tuple[uuid.UUID, str, np.ndarray]], job_ids: set[uuid.UUID]
) -> int:
    """Store vectors for chunks of ``job_ids`` (which the caller has locked, fenced)."""
    rows = [r for r in rows if r[0] in job_ids]
    if not rows:
        return 0
    cur = await conn.execute(
        QUERIES["replace_vectors_batch_no"],
        {"ids": list(job_ids), "chunk_ids": [r[1] for r in rows]},
    )
    batch_row = await cur.fetchone()
    batch_no = int(batch_row[0]) if batch_row else 0
    async with conn.cursor().copy(QUERIES["copy_vector_buffer"]) as copy:
        copy.set_types(["uuid", "text", "int4", "vector"])
        for job_id, chunk_id, vector in rows:
            await copy.write_row((job_id, chunk_id, batch_no, vector))
    return len(rows)


async def unfinished_jobs(conn: Conn, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    cur = await conn.execute(QUERIES["unfinished_jobs"], {"ids": list(job_ids)})
    return {row[0] for row in await cur.fetchall()}


async def finalize_chunks(conn: Conn, job_ids: set[uuid.UUID]) -> None:
    """Swap the documents' chunks for the buffered ones and clear the buffers."""
    ids = {"ids": list(job_ids)}
    await conn.execute(QUERIES["delete_document_chunks"], ids)
    await conn.execute(QUERIES["finalize_chunks"], ids)
    await conn.execute(QUERIES["clear_buffers"], ids)


def is_illegal_transition(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.errors.CheckViolation) and "illegal transition" in str(exc)
