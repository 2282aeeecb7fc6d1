"""Parsing with a remote service (LlamaParse): submit once, wait without a worker, then collect.

A job in ``parse_queued`` with no remote job yet is submitted: first an intent marker is
committed, then the upload is made, then the remote job id is committed at once — each its own
fenced transaction. If the worker dies between upload and store, the next claim sees the marker
and looks for the remote job by its name (which carries our job id) instead of uploading again,
so a crash never pays for a document twice.

After submitting, the job is released (it holds no worker while the vendor parses) with
``next_attempt_at`` set to the poll time. A verified webhook (``receive_webhook``) brings that
time forward to now; if no webhook comes, the poll time comes anyway. Either way the next claim
asks the vendor for the job's status: still running → wait again (polls back off); completed →
fetch the Markdown, store it, go on to ``parsed``; failed → ``failed_parse`` with the vendor's
message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from ingestd.db import QUERIES, Database
from ingestd.db.database import Conn
from ingestd.errors import PermanentError, TransientError
from ingestd.faultpoints import FaultPoints
from ingestd.jobs import ClaimedJob, JobStore, Outcome, advance
from ingestd.ports import BlobStore, ParsedDocument
from ingestd.states import State
from ingestd.traffic.budgets import Budgets, Usage, record_usage

log = structlog.get_logger(__name__)

PROVIDER = "llamaparse"
# A webhook that beat its submit's stored id looks for the id again after this, then backs off.
PENDING_POLL_SECONDS = 0.05


class RemoteStatus(Protocol):
    job_id: str
    state: str
    error_message: str | None


class RemoteUsage(Protocol):
    pages: int
    credits: float | None


class RemoteResult(Protocol):
    document: ParsedDocument
    usage: RemoteUsage


class RemoteParserClient(Protocol):
    name: str

    async def submit(
        self,
        data: bytes,
        filename: str,
        *,
        tier: str,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> str: ...

    async def status(self, job_id: str) -> Any: ...

    async def fetch_result(self, job_id: str) -> Any: ...

    async def find_job_by_name(self, name: str) -> str | None: ...


@dataclass(frozen=True)
class RemoteParseConfig:
    client: RemoteParserClient
    tier: str
    webhook_url: str | None
    webhook_secret: str | None
    poll_after_seconds: float
    max_poll_seconds: float = 300.0
    price_per_credit_usd: float = 0.00125
    # Page and cost caps: checked before a submit, charged when the result is fetched.
    budgets: Budgets | None = None


def remote_name(job: ClaimedJob) -> str:
    """The name the remote job gets: our job id first, so a lost submit can be found again."""
    return f"{job.id}--{job.filename or 'document'}"


def poll_delay(job: ClaimedJob, config: RemoteParseConfig) -> float:
    """Wait ``poll_after_seconds`` after the submit, then back off (x2 per poll) to the cap."""
    polls = int(job.parse_metadata.get("remote_polls", 0))
    return float(min(config.max_poll_seconds, config.poll_after_seconds * (2**polls)))


class RemoteParseStage:
    def __init__(
        self,
        db: Database,
        store: JobStore,
        blobs: BlobStore,
        config: RemoteParseConfig,
        faults: FaultPoints | None = None,
    ) -> None:
        self.db = db
        self.faults = faults or FaultPoints()
        self.store = store
        self.blobs = blobs
        self.config = config

    async def run(self, job: ClaimedJob) -> Outcome:
        if job.remote_job_id is None:
            return await self._submit(job)
        return await self._check(job, job.remote_job_id)

    async def _fenced(self, query: str, job: ClaimedJob, **params: Any) -> bool:
        """One fenced single-row update in its own transaction; False if the lease is lost."""
        values = {"id": job.id, "attempt": job.attempt, "worker": self.store.worker_id, **params}

        async def work(conn: Conn) -> bool:
            cur = await conn.execute(query, values)
            return await cur.fetchone() is not None

        return await self.db.transaction(work)

    async def _submit(self, job: ClaimedJob) -> Outcome:
        if self.config.budgets is not None:  # about to spend at least one page
            await self.config.budgets.check(PROVIDER, [job.owner], Usage(pages=1, requests=1))
        name = remote_name(job)
        remote_id = None
        if job.parse_metadata.get("remote_submit") == name:
            # A previous claim began a submit and never stored its result: find, don't repeat.
            remote_id = await self.config.client.find_job_by_name(name)
            log.info("remote_parse.recovered", job_id=str(job.id), remote_job_id=remote_id)
        elif not await self._fenced(QUERIES["mark_remote_submit"], job, marker=name):
            return _lost(job)
        if remote_id is None:
            data = await asyncio.to_thread(self.blobs.get, job.blob_key)
            remote_id = await self.config.client.submit(
                data,
                name,
                tier=self.config.tier,
                webhook_url=self.config.webhook_url,
                webhook_secret=self.config.webhook_secret,
            )
            await self.faults.hit("remote_parse.after_submit")
        if not await self._fenced(QUERIES["store_remote_job_id"], job, remote_job_id=remote_id):
            return _lost(job)
        log.info(
            "remote_parse.submitted",
            job_id=str(job.id),
            remote_job_id=remote_id,
            correlation_id=str(job.correlation_id),
        )
        return _wait(job, self.config.poll_after_seconds, remote_id=remote_id, polls=0)

    async def _check(self, job: ClaimedJob, remote_id: str) -> Outcome:
        started = time.monotonic()
        status = await self.config.client.status(remote_id)
        if status.state in ("pending", "running"):
            polls = int(job.parse_metadata.get("remote_polls", 0)) + 1
            return _wait(job, poll_delay(job, self.config), remote_id=remote_id, polls=polls)
        if status.state != "completed":
            raise PermanentError(
                "parse.remote_failed",
                status.error_message or f"the remote parse ended {status.state}",
                remote_job_id=remote_id,
            )
        result = await self.config.client.fetch_result(remote_id)
        doc: ParsedDocument = result.document
        key = await asyncio.to_thread(self.blobs.put, doc.markdown.encode())
        credits = float(result.usage.credits or 0)
        usage = {
            "parse_pages": result.usage.pages,
            "parse_credits": credits,
            "parse_cost_usd": round(credits * self.config.price_per_credit_usd, 6),
        }
        await self._charge(job, usage)
        return advance(
            job,
            State.PARSED,
            int((time.monotonic() - started) * 1000),
            parsed_blob_key=key,
            parse_metadata=doc.stored_metadata(),
            usage=usage,
        )

    async def _charge(self, job: ClaimedJob, usage: dict[str, float]) -> None:
        """The parse's pages and cost, into the usage ledger that budgets read."""
        spent = Usage(pages=usage["parse_pages"], usd=usage["parse_cost_usd"], requests=1)

        async def work(conn: Conn) -> None:
            await record_usage(conn, PROVIDER, {job.owner: spent})

        await self.db.transaction(work)


def _wait(job: ClaimedJob, delay: float, *, remote_id: str, polls: int) -> Outcome:
    metadata = {**job.parse_metadata, "remote_polls": polls}
    return Outcome(
        job,
        State.PARSE_QUEUED,
        kind="wait",
        release=True,
        delay=delay,
        retry_count=job.retry_count,
        patch={"remote_job_id": remote_id, "parse_metadata": metadata},
    )


def _lost(job: ClaimedJob) -> Outcome:
    raise TransientError("state.lease_lost", f"job {job.id} was taken over by another worker")


async def wake_announced(db: Database, job_ids: list[uuid.UUID]) -> int:
    """After jobs were committed to wait: wake those whose remote end was already announced."""

    async def work(conn: Conn) -> int:
        cur = await conn.execute(QUERIES["wake_announced"], {"ids": job_ids})
        woken = len(await cur.fetchall())
        if woken:
            await conn.execute(QUERIES["notify_jobs"])
        return woken

    return await db.transaction(work)


async def webhook_job_status(db: Database, remote_job_id: str, wait_seconds: float) -> str:
    """``known`` once a job of ours has ``remote_job_id``; ``unknown`` if none has and no submit
    is in flight; ``pending`` if a submit is still in flight after ``wait_seconds``.

    The vendor may announce a job before the worker that submitted it has stored its id (the id
    is known only from the submit's answer). Rather than keep a receipt for an id that may not be
    ours, the webhook waits here for the id to be stored, and is answered 503 (retried by the
    vendor, 1 s / 2 s later) if it still is not: nothing is stored for an unknown id.
    """
    deadline = time.monotonic() + wait_seconds
    delay = PENDING_POLL_SECONDS
    while True:
        rows = await db.fetch_all(QUERIES["webhook_job_known"], {"remote_job_id": remote_job_id})
        known, submitting = rows[0]["known"], rows[0]["submitting"]
        if known:
            return "known"
        if not submitting:
            return "unknown"
        if time.monotonic() >= deadline:
            return "pending"
        await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
        delay = min(delay * 2, 0.5)


async def receive_webhook(
    db: Database,
    *,
    event_id: str,
    event_type: str,
    remote_job_id: str,
    terminal: bool,
    pending_wait_seconds: float = 5.0,
) -> str:
    """Record a verified webhook for a job of ours; wake the job if its remote parse ended.

    Returns ``unknown_job`` (no job of ours has that remote id: nothing stored), ``not_ready``
    (a submit still in flight may be that job: nothing stored, the vendor retries),
    ``duplicate`` (seen before: nothing done), ``woken``, ``noted`` (a non-final event) or
    ``not_waiting`` (no job in ``parse_queued`` has that id).
    """
    found = await webhook_job_status(db, remote_job_id, pending_wait_seconds)
    if found != "known":
        return "not_ready" if found == "pending" else "unknown_job"
    params = {
        "provider": PROVIDER,
        "event_id": event_id,
        "event_type": event_type,
        "remote_job_id": remote_job_id,
        "terminal": terminal,
    }

    async def work(conn: Conn) -> str:
        cur = await conn.execute(QUERIES["insert_webhook_receipt"], params)
        if await cur.fetchone() is None:
            return "duplicate"
        outcome, job_id = "noted", None
        if terminal:
            cur = await conn.execute(QUERIES["wake_remote_job"], params)
            row = await cur.fetchone()
            outcome, job_id = ("woken", row[0]) if row else ("not_waiting", None)
            if row:
                await conn.execute(QUERIES["notify_jobs"])
        await conn.execute(
            QUERIES["finish_webhook_receipt"], {**params, "job_id": job_id, "outcome": outcome}
        )
        return outcome

    return await db.transaction(work)
