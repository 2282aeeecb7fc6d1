"""The chaos run: a corpus through real worker processes while everything around them breaks.

One embedded PostgreSQL of the run's own holds two copies of the same ingested corpus (same
document ids): ``clean`` is processed first by three workers with fault-free mocks, then ``chaos``
by three workers while the harness

* SIGKILLs a random worker every ``kill_every`` seconds and starts a new one at once,
* cuts every PostgreSQL connection (through a :class:`FaultProxy`) every ``cut_every`` seconds,
  and black-holes the database for a few seconds once,
* restarts PostgreSQL once,
* runs the mocks with 5xx, timeouts and a tight rate limit (429 bursts), dropped and duplicated
  LlamaParse webhooks, and one OpenAI outage (every request answered 503) of ``outage_seconds``.

Events fire on progress (a fraction of the documents complete), not on the clock, so a loaded
machine only makes the run slower. :func:`check_invariants` then compares the two databases and
the mocks' counters; :class:`ChaosReport` carries the figures docs/benchmarks/chaos.md reports.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ingestd.app import open_app
from ingestd.config import HashEmbedderSettings, Settings, WorkerSettings
from ingestd.db.database import migrate_database
from ingestd.db.embedded import EmbeddedPostgres
from ingestd.ingest import Upload, ingest_uploads
from ingestd.mocks import BackgroundServer, free_port
from ingestd.mocks.faults import MockState
from ingestd.mocks.llamaparse import create_app as create_llamaparse
from ingestd.mocks.llamaparse_behaviour import LlamaParseBehaviour
from ingestd.mocks.llamaparse_jobs import MockJob
from ingestd.mocks.openai import OpenAIBehaviour
from ingestd.mocks.openai import create_app as create_openai
from ingestd.testing.faultproxy import FaultProxy, wait_for_port
from tests.chaos.corpus import POISON_MARKER, poisons, write_chaos_corpus
from tests.conftest import worker_env
from tests.e2e.procs import WorkerProcess, ensure_killed, query, wait_until

DIMENSIONS = 32
WORKERS = 3
OWNER = "chaos"
MAX_ATTEMPTS = 10
BREAKER_OPEN_SECONDS = 3.0
# OpenAI: fewer tokens than any request holds, so every request is refused until it ends
# (ingestd's limiter learns from headers, and would pace a mere request squeeze perfectly).
SQUEEZED = {
    "openai": {"tokens_per_minute": 50},
    "llamaparse": {"requests_per_minute": 1, "window_seconds": 3.0},
}
SQUEEZE_429S = 1  # ingestd pauses the limit fleet-wide after one 429


@dataclass(frozen=True)
class ChaosPlan:
    documents: int  # good ones; the poisonous ones come on top
    outage_seconds: float = 20.0
    kill_every: float = 3.0
    cut_every: float = 7.0
    blackhole_seconds: float = 3.0
    # Fractions of the good documents complete at which the one-off events start.
    pg_restart_at: float = 0.2
    # Each vendor's rate limit drops to 1 request per 3 s for this long from its first request
    # on (429 bursts), while ingestd's shared limits still hold what the headers said before.
    squeeze_seconds: float = 5.0
    outage_at: float = 0.45
    blackhole_at: float = 0.75
    pg_down_seconds: float = 2.0
    deadline_seconds: float = 900.0
    seed: int = 1


@dataclass
class ChaosReport:
    documents: int
    seconds: float = 0.0
    clean_seconds: float = 0.0
    kills: int = 0
    cuts: int = 0
    connections_cut: int = 0
    events: dict[str, float] = field(default_factory=dict)  # name -> seconds since the start
    pg_restart_to_full_throughput: float | None = None
    outage_end_to_full_throughput: float | None = None
    baseline_docs_per_second: float | None = None
    states: dict[str, int] = field(default_factory=dict)
    openai: dict[str, Any] = field(default_factory=dict)
    llamaparse: dict[str, Any] = field(default_factory=dict)
    recorded: dict[str, float] = field(default_factory=dict)
    samples: list[tuple[float, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("samples")
        return out


# -- the world around the workers -----------------------------------------------------------------


def chaos_behaviours() -> tuple[OpenAIBehaviour, LlamaParseBehaviour]:
    """Both mocks as the chaos run meets them: 10 % 5xx, 5 % timeouts, tight rate limits."""
    faults = [
        {"kind": "http_500", "probability": 0.05},
        {"kind": "http_503", "probability": 0.0526},  # 5 % of what the first rule let through
        {"kind": "timeout", "probability": 0.0555},
    ]
    openai = OpenAIBehaviour.model_validate(
        {
            "seed": 11,
            "faults": [{**f, "routes": ["/v1/embeddings"]} for f in faults],
            "hang_seconds": 10.0,
            "latency": {"fixed_ms": 5},
            "rate_limits": {
                "requests_per_minute": 8,
                "tokens_per_minute": 200_000,
                "window_seconds": 2.0,
            },
            "reject_inputs_containing": POISON_MARKER,
        }
    )
    llamaparse = LlamaParseBehaviour.model_validate(
        {
            "seed": 12,
            "faults": [{**f, "routes": ["/api/"]} for f in faults],
            "hang_seconds": 10.0,
            "latency": {"fixed_ms": 30, "per_unit_ms": 10},
            "rate_limits": {"requests_per_minute": 30, "window_seconds": 2.0},
            "webhook_faults": {
                "drop": {"probability": 0.15},
                "duplicate": {"probability": 0.15},
            },
            "webhook_delivery": {"backoff_scale": 0.05},
        }
    )
    return openai, llamaparse


def clean_behaviours() -> tuple[OpenAIBehaviour, LlamaParseBehaviour]:
    openai = OpenAIBehaviour(reject_inputs_containing=POISON_MARKER)
    llamaparse = LlamaParseBehaviour.model_validate(
        {
            "latency": {"fixed_ms": 20, "per_unit_ms": 5},
            "rate_limits": {"requests_per_minute": None},
        }
    )
    return openai, llamaparse


@dataclass
class Vendors:
    openai: BackgroundServer
    llamaparse: BackgroundServer

    @property
    def openai_state(self) -> MockState[Any]:
        state: MockState[Any] = self.openai.app.state.mock
        return state

    def remote_jobs(self) -> dict[str, MockJob]:
        jobs: dict[str, MockJob] = dict(self.llamaparse.app.state.llamaparse.jobs)
        return jobs

    names = ("openai", "llamaparse")

    def states(self) -> list[MockState[Any]]:
        return [self.openai.app.state.mock, self.llamaparse.app.state.mock]

    def counters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            httpx.get(self.openai.url + "/_admin/counters").json(),
            httpx.get(self.llamaparse.url + "/_admin/counters").json(),
        )


@contextmanager
def vendors(openai: OpenAIBehaviour, llamaparse: LlamaParseBehaviour) -> Iterator[Vendors]:
    with (
        BackgroundServer(create_openai(openai)) as oa,
        BackgroundServer(create_llamaparse(llamaparse), lifespan="on") as lp,
    ):
        yield Vendors(oa, lp)


def tcp_url(server: EmbeddedPostgres, database: str, port: int) -> str:
    """The database's URL over TCP to ``127.0.0.1:port`` (a proxy in front of its socket)."""
    params = conninfo_to_dict(server.status().url(database))
    params.update(host="127.0.0.1", port=str(port))
    return make_conninfo(**params)  # type: ignore[arg-type]


def pg_socket(server: EmbeddedPostgres) -> Path:
    status = server.status()
    return Path(status.socket_dir) / f".s.PGSQL.{status.port}"


def vendor_env(
    openai_url: str, llamaparse_url: str, hook_url: str | None, secret: str
) -> dict[str, str]:
    env = {
        "INGESTD_EMBEDDER__PROVIDER": "openai",
        "INGESTD_EMBEDDER__BASE_URL": openai_url + "/v1",
        "INGESTD_EMBEDDER__API_KEY": "sk-test",
        "INGESTD_EMBEDDER__DIMENSIONS": str(DIMENSIONS),
        "INGESTD_EMBEDDER__TIMEOUT_SECONDS": "3",
        # Small requests, so that a run of 60 documents makes many of them (a default request
        # carries about 230 such documents: the whole run in one or two requests, and the outage
        # would meet too few calls to open the breaker). The fill rule stays on.
        "INGESTD_EMBEDDER__MAX_INPUTS_PER_REQUEST": "8",
        "INGESTD_PARSER__PROVIDER": "llamaparse",
        "INGESTD_PARSER__BASE_URL": llamaparse_url,
        "INGESTD_PARSER__API_KEY": "llx-test",
        "INGESTD_PARSER__POLL_AFTER_SECONDS": "2" if hook_url else "0.3",
        "INGESTD_PARSER__MAX_POLL_SECONDS": "4" if hook_url else "1",
        "INGESTD_PARSER__TIMEOUT_SECONDS": "3",
        "INGESTD_WORKER__MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        # The breaker probes again this soon after opening (the default is 10 s).
        "INGESTD_TRAFFIC__BREAKER__OPEN_SECONDS": str(BREAKER_OPEN_SECONDS),
        "INGESTD_LOG_LEVEL": "WARNING",
    }
    if hook_url:
        env["INGESTD_PARSER__WEBHOOK_URL"] = hook_url
    if secret:
        env["INGESTD_PARSER__WEBHOOK_SECRET"] = secret
    return env


def run_settings(home: Path, url: str) -> Settings:
    return Settings(
        home=home,
        database_url=url,
        embedder=HashEmbedderSettings(dimensions=DIMENSIONS),  # replaced by vendor_env
        worker=WorkerSettings(
            lease_seconds=4.0,
            poll_seconds=0.5,
            backoff_base_seconds=0.2,
            backoff_max_seconds=4.0,
            max_attempts=MAX_ATTEMPTS,
        ),
    )


class Fleet:
    """``size`` worker processes; :meth:`kill_one` SIGKILLs one and starts its replacement."""

    def __init__(self, settings: Settings, log_dir: Path, env: dict[str, str], size: int) -> None:
        self.settings, self.log_dir, self.env = settings, log_dir, env
        self.workers = [self._start() for _ in range(size)]
        self.retired: list[WorkerProcess] = []
        self.kills = 0

    def _start(self) -> WorkerProcess:
        args = ("--concurrency", "8", "--batch-size", "8")
        return WorkerProcess(self.settings, self.log_dir, *args, **self.env)

    def kill_one(self, rng: random.Random, url: str) -> bool:
        """SIGKILL a worker that has done work, and start another. Only while at most one
        replacement is still starting (a new process takes seconds to start on a loaded
        machine, and kills must not outpace starts). False when it is not the time."""
        try:
            rows = query(url, "SELECT pid, processed FROM workers WHERE status = 'running'")
        except psycopg.OperationalError:
            return False
        registered = dict(rows)
        up = [w for w in self.workers if w.proc.poll() is None and w.pid in registered]
        busy = [w for w in up if registered[w.pid]]
        if len(up) < len(self.workers) - 1 or not busy:
            return False  # one replacement is still starting: let it come up first
        victim = rng.choice(busy)
        self.workers.remove(victim)
        victim.proc.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        self.retired.append(victim)
        self.workers.append(self._start())
        self.kills += 1
        return True

    def died(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc.poll() is not None]

    def stop(self, url: str) -> list[int]:
        """SIGTERM every worker once it is up (a process still importing would die of the
        signal before its handler exists) and return their exit codes."""

        def registered() -> bool:
            rows = query(url, "SELECT pid FROM workers WHERE status = 'running'")
            return {w.pid for w in self.workers} <= {pid for (pid,) in rows}

        wait_until(registered, timeout=120, interval=0.2, what="every worker to be up")
        for w in self.workers:
            w.signal(signal.SIGTERM)
        try:
            return [w.wait(timeout=60) for w in self.workers]
        finally:
            ensure_killed(*self.workers)


@contextmanager
def api_server(settings: Settings, env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """``ingestd serve`` as a subprocess (it receives the LlamaParse webhooks); yields its URL."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingestd", "serve", "--port", str(port)],
            env=worker_env(settings, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for_port("127.0.0.1", port, timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- preparing the two databases ------------------------------------------------------------------


def prepare_databases(server: EmbeddedPostgres, home: Path, corpus: Path) -> tuple[str, str]:
    """Create ``chaos``, migrate it, ingest the corpus, and clone it as ``clean``; their URLs."""
    admin = server.status().url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in ("chaos", "clean"):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute("CREATE DATABASE chaos")
    chaos_url = server.status().url("chaos")
    asyncio.run(_migrate_and_ingest(run_settings(home, chaos_url), corpus))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE clean TEMPLATE chaos")
    return chaos_url, server.status().url("clean")


async def _migrate_and_ingest(settings: Settings, corpus: Path) -> None:
    assert settings.database_url is not None
    await migrate_database(settings.database_url)
    uploads = [Upload(p.name, p.read_bytes()) for p in sorted(corpus.iterdir())]
    async with open_app(settings) as app:
        await ingest_uploads(app.db, app.blobs, uploads, owner=OWNER, max_attempts=MAX_ATTEMPTS)


class Progress:
    """(jobs terminal, jobs complete) of a database, on one connection kept between calls;
    ``None`` while the server is away (it is restarting)."""

    SQL = (
        "SELECT count(*) FILTER (WHERE completed_at IS NOT NULL),"
        " count(*) FILTER (WHERE state = 'complete') FROM jobs"
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[Any] | None = None

    def __call__(self) -> tuple[int, int] | None:
        row = self.row(self.SQL)
        return None if row is None else (int(row[0]), int(row[1]))

    def row(self, sql: str) -> tuple[Any, ...] | None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            return self.conn.execute(sql).fetchone()  # type: ignore[arg-type]
        except psycopg.OperationalError:
            self.close()
            return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# -- the runs -------------------------------------------------------------------------------------


def clean_run(settings: Settings, work: Path, total: int) -> float:
    """Three workers, fault-free mocks, no proxy; returns the seconds it took."""
    url = settings.database_url or ""
    started = time.monotonic()
    with vendors(*clean_behaviours()) as v:
        env = vendor_env(v.openai.url, v.llamaparse.url, None, "")
        fleet = Fleet(settings, work / "clean-logs", env, WORKERS)
        progress = Progress(url)
        try:
            wait_until(
                lambda: (progress() or (0, 0))[0] == total,
                timeout=600,
                interval=0.5,
                what="the clean run",
            )
        finally:
            progress.close()
            assert fleet.stop(url) == [0] * WORKERS
        clean_counters = v.counters()
        check_usage(url, *clean_counters, v.remote_jobs(), exact_tokens=True)
    return time.monotonic() - started


class ChaosDriver:
    """Fires the plan's events as the chaos run progresses and samples completions."""

    def __init__(
        self,
        plan: ChaosPlan,
        report: ChaosReport,
        server: EmbeddedPostgres,
        pg_proxy: FaultProxy,
        fleet: Fleet,
        v: Vendors,
        url: str,
    ) -> None:
        self.plan, self.report, self.server = plan, report, server
        self.pg_proxy, self.fleet, self.vendors, self.url = pg_proxy, fleet, v, url
        self.rng = random.Random(plan.seed)
        self.started = time.monotonic()
        self.progress = Progress(url)
        self.outage_ends: float | None = None
        self.squeeze_ends: dict[str, float] = {}
        self.normal_limits: dict[str, Any] = {}
        self.limited_before: dict[str, float] = {}
        self.normal_faults = v.openai_state.behaviour.model_dump(mode="json")["faults"]

    def now(self) -> float:
        return time.monotonic() - self.started

    def mark(self, name: str) -> None:
        self.report.events[name] = round(self.now(), 2)

    def run(self, total: int) -> None:
        progress = self.progress
        try:
            self._loop(total, progress)
        finally:
            progress.close()
        self.mark("done")

    def _loop(self, total: int, progress: Progress) -> None:
        plan = self.plan
        next_kill, next_cut = plan.kill_every, plan.cut_every
        while True:
            counts = progress()
            terminal, done = counts if counts else (None, None)
            if done is not None:
                self.report.samples.append((round(self.now(), 2), done))
            if terminal == total:
                return
            assert self.now() < plan.deadline_seconds, f"not done after {plan.deadline_seconds}s"
            assert not self.fleet.died(), "a worker exited by itself"
            fraction = (done or 0) / plan.documents
            if self.now() >= next_kill and self.fleet.kill_one(self.rng, self.url):
                next_kill = self.now() + plan.kill_every
            if self.now() >= next_cut:
                self.report.connections_cut += self.pg_proxy.cut_all()
                self.report.cuts += 1
                next_cut = self.now() + plan.cut_every
            self._one_off_events(fraction)
            time.sleep(0.5)

    def _squeezes(self) -> None:
        for name, state in zip(self.vendors.names, self.vendors.states(), strict=True):
            key = f"squeeze_{name}"
            if key not in self.report.events and state.counters.get("requests") > 0:
                self.mark(key)
                normal = state.behaviour.model_dump(mode="json")["rate_limits"]
                state.patch_behaviour({"rate_limits": SQUEEZED[name]})
                self.squeeze_ends[name] = time.monotonic() + self.plan.squeeze_seconds
                self.normal_limits[name] = normal
                self.limited_before[name] = state.counters.get("rate_limited")
            ends = self.squeeze_ends.get(name)
            # It lasts squeeze_seconds, and until the vendor has refused a burst (however slow
            # the workers are), or at most a minute.
            refused = state.counters.get("rate_limited") - self.limited_before.get(name, 0)
            over = refused >= SQUEEZE_429S or time.monotonic() >= (ends or 0) + 60
            if ends is not None and time.monotonic() >= ends and over:
                state.patch_behaviour({"rate_limits": self.normal_limits[name]})
                del self.squeeze_ends[name]
                self.mark(f"{key}_over")

    def _breaker_opened(self) -> bool:
        """The outage lasts until the shared breaker has opened (a slow machine sends fewer
        requests than the breaker's minimum in a short outage)."""
        row = self.progress.row(
            "SELECT count(*) FROM breaker_events WHERE service = 'openai' AND to_state = 'open'"
        )
        return bool(row and row[0])

    def _one_off_events(self, fraction: float) -> None:
        events, plan = self.report.events, self.plan
        if "pg_restart" not in events and fraction >= plan.pg_restart_at:
            self.mark("pg_restart")
            assert self.server.stop(mode="fast")
            time.sleep(plan.pg_down_seconds)  # workers meet refused connections meanwhile
            self.server.ensure_running()
            self.mark("pg_back")
        self._squeezes()
        squeezed = all(f"squeeze_{name}_over" in events for name in self.vendors.names)
        if "outage" not in events and squeezed and fraction >= plan.outage_at:
            self.mark("outage")
            self.vendors.openai_state.patch_behaviour({"faults": [{"kind": "http_503"}]})
            self.outage_ends = time.monotonic() + plan.outage_seconds
        if (
            self.outage_ends is not None
            and time.monotonic() >= self.outage_ends
            and (self._breaker_opened() or time.monotonic() >= self.outage_ends + 120)
        ):
            self.vendors.openai_state.patch_behaviour({"faults": self.normal_faults})
            self.outage_ends = None
            self.mark("outage_over")
        if "blackhole" not in events and fraction >= plan.blackhole_at:
            self.mark("blackhole")
            self.pg_proxy.blackhole(plan.blackhole_seconds)


def chaos_run(plan: ChaosPlan, work: Path, pgdata: Path) -> ChaosReport:
    """Prepare, run clean, run chaos, check every invariant; the report of what happened.
    ``pgdata`` must be reachable by the server's system user when running as root (the
    ``pg_base`` fixture's folders are)."""
    report = ChaosReport(documents=plan.documents)
    total = plan.documents + len(poisons())
    write_chaos_corpus(work / "corpus", plan.documents)
    with ExitStack() as stack:
        server = EmbeddedPostgres(pgdata)
        server.ensure_running()
        stack.callback(server.stop, mode="immediate")
        home = work / "home"
        chaos_url, clean_url = prepare_databases(server, home, work / "corpus")
        report.clean_seconds = clean_run(run_settings(home, clean_url), work, total)

        v = stack.enter_context(vendors(*chaos_behaviours()))
        pg_proxy = stack.enter_context(FaultProxy(pg_socket(server)).running())
        oa_proxy = stack.enter_context(FaultProxy(("127.0.0.1", v.openai.port)).running())
        lp_proxy = stack.enter_context(FaultProxy(("127.0.0.1", v.llamaparse.port)).running())
        for proxy in (oa_proxy, lp_proxy):
            proxy.set_latency(0.01)
        settings = run_settings(home, tcp_url(server, "chaos", pg_proxy.port))
        secret = secrets.token_hex(16)
        env = vendor_env(
            f"http://127.0.0.1:{oa_proxy.port}", f"http://127.0.0.1:{lp_proxy.port}", None, secret
        )
        api = stack.enter_context(api_server(settings, env, work / "chaos-logs"))
        env = vendor_env(
            f"http://127.0.0.1:{oa_proxy.port}",
            f"http://127.0.0.1:{lp_proxy.port}",
            api + "/v1/webhooks/llamaparse",
            secret,
        )
        fleet = Fleet(settings, work / "chaos-logs", env, WORKERS)
        try:
            driver = ChaosDriver(plan, report, server, pg_proxy, fleet, v, chaos_url)
            driver.run(total)
            report.seconds = driver.now()
            exits = fleet.stop(chaos_url)
        finally:
            ensure_killed(*fleet.workers)
        report.kills = fleet.kills
        report.openai, report.llamaparse = v.counters()
        measure_recovery(report)
        try:
            assert exits == [0] * WORKERS, f"workers exited {exits}"
            check_invariants(chaos_url, clean_url, report, v.remote_jobs())
        finally:
            write_report(report, work / "chaos-report.json")
    return report


# -- checks ---------------------------------------------------------------------------------------


def check_invariants(
    chaos_url: str, clean_url: str, report: ChaosReport, mock_jobs: dict[str, MockJob]
) -> None:
    expected = {p.filename: (p.state, p.code) for p in poisons()}
    rows = query(
        chaos_url,
        "SELECT d.filename, j.state, j.last_error->>'code' FROM jobs j"
        " JOIN documents d ON d.id = j.document_id",
    )
    report.states = {}
    for _, state, _ in rows:
        report.states[state] = report.states.get(state, 0) + 1
    wrong = {
        name: (state, code)
        for name, state, code in rows
        if (expected.get(name, ("complete", None)) != (state, code if name in expected else None))
    }
    assert wrong == {}, f"documents that ended wrong: {wrong}"
    clean_states = query(clean_url, "SELECT state, count(*) FROM jobs GROUP BY 1 ORDER BY 1")
    assert dict(clean_states) == report.states  # type: ignore[arg-type]

    chunk_sql = (
        "SELECT id::text, document_id::text, ordinal, text, embedding::text FROM chunks ORDER BY id"
    )
    chaos_chunks, clean_chunks = query(chaos_url, chunk_sql), query(clean_url, chunk_sql)
    assert len(chaos_chunks) == len(clean_chunks) > 0
    assert chaos_chunks == clean_chunks, "chunks differ from the clean run"

    for sql, what in (
        (
            "SELECT count(*) FROM (SELECT job_id, from_state, to_state FROM job_events"
            " WHERE kind = 'transition' GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
            "a transition recorded twice",
        ),
        (
            "SELECT count(*) FROM jobs j WHERE j.state = 'complete' AND j.chunk_count <>"
            " (SELECT count(*) FROM chunks c WHERE c.document_id = j.document_id)",
            "a document whose chunks are missing or doubled",
        ),
        ("SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL", "a job still leased"),
        (
            "SELECT count(*) FROM document_chunk_buffer b JOIN jobs j ON j.id = b.job_id"
            " WHERE j.state = 'complete'",
            "a complete document's chunks left in the buffer",
        ),
        (
            "SELECT count(*) FROM document_vector_buffer b JOIN jobs j ON j.id = b.job_id"
            " WHERE j.state = 'complete'",
            "a complete document's vectors left in the buffer",
        ),
    ):
        assert query(chaos_url, sql) == [(0,)], what
    report.recorded = check_usage(
        chaos_url, report.openai, report.llamaparse, mock_jobs, exact_tokens=False
    )
    # Not "ledger >= the clean run's": the clean run may itself embed a slice twice (a lease
    # lost on a loaded machine), so its ledger is no lower bound (seen at 16,808 vs more).
    check_breaker(chaos_url)


def check_breaker(url: str) -> None:
    """The OpenAI outage opened the shared breaker, and it closed again afterwards."""
    moves = [
        (a, b)
        for a, b in query(
            url,
            "SELECT from_state, to_state FROM breaker_events WHERE service = 'openai' ORDER BY id",
        )
    ]
    opened = [i for i, (_, to) in enumerate(moves) if to == "open"]
    assert opened, f"the outage never opened the breaker: {moves}"
    assert any(to == "closed" for _, to in moves[opened[0] :]), f"never closed: {moves}"


def _remote_ids(url: str) -> set[str]:
    return {r for (r,) in query(url, "SELECT remote_job_id FROM jobs")}


def recorded_usage(url: str) -> dict[str, float]:
    row = query(
        url,
        "SELECT coalesce(sum((usage->>'embedding_tokens')::numeric), 0),"
        " coalesce(sum((usage->>'parse_pages')::numeric), 0),"
        " coalesce(sum((usage->>'parse_credits')::numeric), 0),"
        " (SELECT coalesce(sum(tokens), 0) FROM usage_ledger WHERE service = 'openai')"
        " FROM jobs",
    )[0]
    return {
        "embedding_tokens": float(row[0]),
        "parse_pages": float(row[1]),
        "parse_credits": float(row[2]),
        "ledger_tokens": float(row[3]),
    }


def check_remote_jobs(url: str, mock_jobs: dict[str, MockJob]) -> int:
    """Every document's remote job exists at the mock and its pages and credits are the ones
    recorded on the job; the mock's other jobs (orphans) each repeat a recorded job's name — a
    submit that a successor repeated because the first had not reached the vendor when it
    looked (a worker killed, or a lease lost, mid-upload) — and the mock's counters are the
    recorded usage plus the orphans'. Returns the number of orphans."""
    rows = query(
        url,
        "SELECT remote_job_id, coalesce((usage->>'parse_pages')::numeric, 0),"
        " coalesce((usage->>'parse_credits')::numeric, 0) FROM jobs",
    )
    assert all(remote_id for remote_id, _, _ in rows), "a document never reached LlamaParse"
    for remote_id, pages, credits in rows:
        job = mock_jobs[remote_id]
        assert (float(pages), float(credits)) == (len(job.pages), float(job.credits or 0))
    used = {remote_id for remote_id, _, _ in rows}
    names = {mock_jobs[remote_id].filename for remote_id in used}
    orphans = [job for job_id, job in mock_jobs.items() if job_id not in used]
    assert all(job.filename in names for job in orphans), "an upload that no document made"
    return len(orphans)


def check_usage(
    url: str,
    openai: dict[str, Any],
    llamaparse: dict[str, Any],
    mock_jobs: dict[str, MockJob],
    *,
    exact_tokens: bool,
) -> dict[str, float]:
    """Usage recorded against what the mocks say they served. Pages and credits are charged
    once per remote job: recorded plus orphan uploads' (see :func:`check_remote_jobs`) match
    the mock exactly. Embedding tokens go into the usage ledger in the
    transaction that stores their vectors, and onto the job when its stage ends; without
    SIGKILLs both equal what OpenAI served. A worker killed after OpenAI answered but before it
    committed leaves a request served and never recorded (a vendor bills it too), so under chaos
    recorded <= served."""
    recorded = recorded_usage(url)
    orphans = [j for j in mock_jobs.values() if j.id not in _remote_ids(url)]
    recorded["orphan_uploads"] = check_remote_jobs(url, mock_jobs)
    assert recorded["parse_pages"] + sum(len(j.pages) for j in orphans) == llamaparse["pages"]
    orphan_credits = sum(float(j.credits or 0) for j in orphans)
    assert recorded["parse_credits"] + orphan_credits == llamaparse["credits"]
    if exact_tokens:
        assert recorded["ledger_tokens"] == recorded["embedding_tokens"] == openai["tokens"]
    else:
        assert recorded["embedding_tokens"] <= recorded["ledger_tokens"] <= openai["tokens"]
    return recorded


# -- figures --------------------------------------------------------------------------------------


def rate(samples: list[tuple[float, int]], start: float, end: float) -> float | None:
    """Documents completed per second between two moments (from the nearest samples)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def recovery_seconds(
    samples: list[tuple[float, int]], before: float, after: float, window: float = 3.0
) -> tuple[float | None, float | None]:
    """(seconds from ``after`` until a ``window``-long stretch runs at >= 80 % of the rate of
    the 10 s before ``before``, that baseline rate)."""
    baseline = rate(samples, before - 10.0, before)
    if not baseline:
        return None, baseline
    for t, _ in samples:
        if t < after:
            continue
        current = rate(samples, t, t + window)
        if current is not None and current >= 0.8 * baseline:
            return round(t - after, 2), baseline
    return None, baseline


def measure_recovery(report: ChaosReport) -> None:
    e = report.events
    if "pg_restart" in e:
        report.pg_restart_to_full_throughput, _ = recovery_seconds(
            report.samples, e["pg_restart"], e["pg_back"]
        )
    if "outage_over" in e:
        report.outage_end_to_full_throughput, report.baseline_docs_per_second = recovery_seconds(
            report.samples, e["outage"], e["outage_over"]
        )


def write_report(report: ChaosReport, path: Path) -> None:
    path.write_text(json.dumps(report.summary(), indent=2, default=str) + "\n")
