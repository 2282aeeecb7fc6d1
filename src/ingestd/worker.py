"""The worker: claim batches of jobs, run their stages, heartbeat, and shut down cleanly.

One process runs up to ``concurrency`` jobs at once, as batches of up to ``batch_size`` claimed in
one statement. A heartbeat task extends the leases of every held job; a job whose lease another
worker took over is dropped (the fenced writes would match nothing anyway). LISTEN/NOTIFY wakes
an idle worker when work arrives, with polling as the fallback. SIGTERM/SIGINT stop claiming, let
running stages finish within the grace period and release the rest; a second signal exits at once.

With a micro-batched remote embedder (``fill``), the worker also fills its requests: while every
batch it runs waits on the embedder and the next request has room, it claims another batch beyond
``concurrency``; when it can claim nothing, it sends the partial request at once
(docs/decisions/0009-drain-performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars

from ingestd.config import WorkerSettings
from ingestd.db import QUERIES, Database
from ingestd.db.listen import Listener, listen_forever
from ingestd.jobs import ClaimedJob, JobStore
from ingestd.observability.metrics import record_claim, record_held
from ingestd.stages import Pipeline
from ingestd.states import HAPPY_PATH, State

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "ingestd_jobs"


class RequestFill(Protocol):
    """What the fill rule needs from the micro-batcher (ingestd.embedders.microbatch)."""

    @property
    def waiting_calls(self) -> int: ...

    @property
    def hungry(self) -> bool: ...

    def drive(self, wake: Callable[[], None] | None) -> None: ...

    def flush(self) -> None: ...


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Drives jobs through the pipeline until stopped (or, in burst mode, until idle)."""

    def __init__(
        self,
        db: Database,
        store: JobStore,
        pipeline: Pipeline,
        settings: WorkerSettings,
        *,
        burst: bool = False,
        fill: RequestFill | None = None,
        fill_max_jobs: int = 1024,
    ) -> None:
        self.db = db
        self.store = store
        self.pipeline = pipeline
        self.settings = settings
        self.burst = burst
        self.id = store.worker_id
        self.held: dict[uuid.UUID, ClaimedJob] = {}
        self.lost: set[uuid.UUID] = set()
        self.processed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._signals = 0
        self.fill = fill
        self.fill_max_jobs = fill_max_jobs
        if fill is not None:
            fill.drive(self._wake.set)

    # -- life cycle ---------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        # Bound once: every task started from here (batches, heartbeats) inherits it.
        bind_contextvars(worker_id=self.id)
        self._install_signal_handlers()
        helpers = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._listen_loop(), name="listen"),
        ]
        await self._register("running")
        log.info(
            "worker.started",
            worker_id=self.id,
            concurrency=self.settings.concurrency,
            batch_size=self.settings.batch_size,
            burst=self.burst,
        )
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._register("stopped")
            log.info("worker.stopped", worker_id=self.id, processed=self.processed)
        return 0

    def request_stop(self) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("worker.forced_exit", worker_id=self.id)
            os._exit(1)
        log.info("worker.stopping", worker_id=self.id, held=len(self.held))
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)

    async def _drain(self) -> None:
        """Let running batches finish their step within the grace period, then release."""
        if not self._tasks:
            return
        if self.fill is not None:  # nothing more will be claimed: no request waits to fill
            self.fill.drive(None)
            self.fill.flush()
        _, pending = await asyncio.wait(self._tasks, timeout=self.settings.grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self.held:
            with contextlib.suppress(Exception):
                await self.store.release(list(self.held.values()))
            self.held.clear()

    # -- claiming -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self.stopping:
            self._wake.clear()
            room = self._room()
            claimed: list[ClaimedJob] = []
            if room > 0:
                claimed = await self._claim(min(room, self.settings.batch_size))
                if claimed:
                    self._start_batch(claimed)
                    continue
            if self.fill is not None and self.fill.hungry and self._waiting_on_embedder():
                self.fill.flush()  # no more input can come: the partial request goes now
            if self.burst and not claimed and not self._tasks:
                return
            await self._wait_for_wake()

    def _room(self) -> int:
        """Jobs to claim now: free capacity, or one more batch when only more jobs can fill the
        embedder's next request (the fill rule)."""
        free = self.settings.concurrency - len(self.held)
        if free > 0:
            return free
        fill = self.fill
        if fill is None or not fill.hungry or not self._waiting_on_embedder():
            return 0
        return min(self.settings.batch_size, self.fill_max_jobs - len(self.held))

    def _waiting_on_embedder(self) -> bool:
        """Every running batch waits on the micro-batcher: no input is on its way."""
        return self.fill is not None and 0 < len(self._tasks) <= self.fill.waiting_calls

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        try:
            claimed = await self.store.claim(limit)
        except Exception as exc:  # the database is away: wait and try again
            log.warning("worker.claim_failed", error=str(exc))
            return []
        record_claim(len(claimed), sum(job.lease_expired for job in claimed))
        return claimed

    async def _wait_for_wake(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_seconds)

    def _start_batch(self, jobs: list[ClaimedJob]) -> None:
        for job in jobs:
            self.held[job.id] = job
        record_held(len(self.held))
        task = asyncio.create_task(self._run_batch(jobs))
        self._tasks.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        record_held(len(self.held))
        self._wake.set()

    # -- running a batch ------------------------------------------------------------------

    async def _run_batch(self, jobs: list[ClaimedJob]) -> None:
        active = jobs
        try:
            while active and not self.stopping:
                active = await self._advance(active)
            if active:
                await self.store.release(active)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Unexpected (a bug, or the database gone for longer than the retry deadline):
            # keep the worker alive; the leases expire and the jobs are taken up again.
            log.exception("worker.batch_failed", jobs=[str(j.id) for j in active])
        finally:
            for job in jobs:
                self.held.pop(job.id, None)
                self.lost.discard(job.id)
                self.pipeline.forget(job.id)

    async def _advance(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """One step for every job: each state group runs its stage; returns the jobs kept."""
        by_state: dict[State, list[ClaimedJob]] = defaultdict(list)
        for job in jobs:
            if job.id not in self.lost:
                by_state[job.state].append(job)
        kept: list[ClaimedJob] = []
        for state in HAPPY_PATH:
            group = by_state.get(state)
            if not group:
                continue
            continuing = await self.pipeline.step(state, group)
            still = {j.id for j in continuing}
            for job in group:
                if job.id not in still:
                    self.held.pop(job.id, None)
                    self.processed += 1
            for job in continuing:
                self.held[job.id] = job
            kept += continuing
        return kept

    # -- heartbeats and wake-ups ------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = max(0.2, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._heartbeat()
            except Exception as exc:
                log.warning("worker.heartbeat_failed", error=str(exc))

    async def _heartbeat(self) -> None:
        jobs = list(self.held.values())
        if jobs:
            kept = await self.store.extend_leases(jobs)
            for job in jobs:
                if job.id not in kept and job.id in self.held:
                    self.lost.add(job.id)
                    with bound_contextvars(**job.log_fields()):
                        log.warning("worker.lease_lost", attempt=job.attempt)
        await self._register("stopping" if self.stopping else "running")

    async def _register(self, status: str) -> None:
        params: dict[str, Any] = {
            "id": self.id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": self.settings.concurrency,
            "status": status,
            "active_jobs": len(self.held),
            "processed": self.processed,
        }
        try:
            await self.db.execute(QUERIES["upsert_worker"], params)
        except Exception as exc:
            log.warning("worker.register_failed", error=str(exc))

    async def _listen_loop(self) -> None:
        """LISTEN for new work; wake the claim loop on every notification and reconnection."""

        async def wake(_: Listener) -> None:
            self._wake.set()

        await listen_forever(self.db.url, [NOTIFY_CHANNEL], wake, name="worker")
