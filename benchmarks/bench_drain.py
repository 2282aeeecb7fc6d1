"""Drain of a queued backlog: documents/s, MB/s, and database statements and time per document.

    python benchmarks/bench_drain.py [--corpus 5kb,100kb] [--workers 1] [--repeat 1] [--json]
                                     [--documents N] [--env NAME=VALUE ...]
                                     [--embedder hash|openai-mock] [--latency-ms 150]
                                     [--max-inputs N] [--embed-concurrency N]
                                     [--top N] [--profile worker.prof|worker.html|worker.txt]

For each corpus shape (``5kb``: 1,000 Markdown documents of ~5 KB; ``100kb``: 200 of ~100 KB,
both from ``scripts/gen_corpus.py --backlog``) and each worker count, a fresh embedded PostgreSQL
(with ``pg_stat_statements``) gets the corpus ingested, then ``ingestd worker --burst`` processes
drain it. Reported per run: wall seconds from starting the workers until the last exits (start-up
included) and the busy window (first claim to last completion); documents/s and MB/s over the wall
time (and the busy window); statements, commits and server-side execution time per document, from
``pg_stat_statements`` and ``pg_stat_database`` (reset after the ingest, so they count the drain
only). Embedder: ``hash`` at 384 dimensions, or ``openai-mock``: the OpenAI embedder against
``ingestd mock openai`` (in its own process) with ``--latency-ms`` per request, micro-batched;
the workers' summary of how full their requests were (``embed.batching`` log lines: inputs and
tokens per request as shares of the request limits) is reported too. The mock enforces no rate
limit, so the workers are given limits far above what they can send (``UNBOUND_LIMITS``): the
shared limiter still runs per request, but never makes them wait.

CPU per document is reported for the workers (their rusage), the database server (the postmaster,
its live children and the reaped ones) and the mock, and how idle the whole machine was while the
workers ran: on a machine with few cores, the sum says where the CPU-bound ceiling of a scenario
lies (cores / CPU seconds per document), and no idle time says the scenario hit it. The workers'
start-up (imports, settings, connections: about a second of CPU each, outside the busy window) is
measured after the drain by one more worker that finds the queue empty, and taken out of
``worker_busy_cpu_ms_per_doc`` (``cpu_ms_per_doc`` sums that, the database's and the mock's).

The machine may be shared: compare two code versions or settings back to back (``--env``, or
``PYTHONPATH`` at another checkout: the workers inherit it) and report ratios, not absolutes.
``run_drain`` and ``make_corpus`` are importable for other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.unit.parsers.corpus import load_generator  # noqa: E402

from ingestd.app import open_app  # noqa: E402
from ingestd.config import HashEmbedderSettings, Settings  # noqa: E402
from ingestd.db.embedded import EmbeddedPostgres  # noqa: E402
from ingestd.ingest import ingest_files  # noqa: E402

# Corpus shape -> (documents, KB per document), as in issue 11.
SHAPES = {"5kb": (1000, 5.0), "100kb": (200, 100.0)}
DIMENSIONS = 384
# The drain's own statements; the bench's queries on the side are not counted.
OWN_QUERY_MARK = "/* bench_drain */"
# The OpenAI mock has no rate limit; ingestd's default (OpenAI's first tier, 1M tokens a minute)
# would cap a whole fleet at about 11 documents/s of 5 KB, and measure the limiter, not the drain.
UNBOUND_LIMITS = json.dumps(
    {"openai": {"requests_per_minute": 10_000_000, "tokens_per_minute": 10_000_000_000}}
)
MAX_INPUTS, MAX_TOKENS = 2048, 300_000  # the embedder's request limits unless set
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class DrainResult:
    corpus: str
    workers: int
    documents: int
    megabytes: float
    wall_seconds: float
    busy_seconds: float
    docs_per_second: float
    mb_per_second: float
    mb_per_second_busy: float
    statements_per_doc: float
    commits_per_doc: float
    db_ms_per_doc: float
    env: dict[str, str]
    embedder: str = "hash"
    embed_requests: int = 0
    mean_request_fullness: float = 0.0  # per request max(inputs share, tokens share), averaged
    full_request_share: float = 0.0  # requests at least 90 % full
    partial_by_linger: int = 0  # partial requests sent when an input had waited the linger
    partial_by_idle: int = 0  # partial requests sent because the worker had nothing to add
    inputs_full: float = 0.0  # mean inputs per request / the per-request input limit
    tokens_full: float = 0.0  # mean tokens per request / the per-request token limit
    peak_rss_mb: float = 0.0  # the largest worker's peak resident set
    docs_per_second_busy: float = 0.0
    worker_cpu_ms_per_doc: float = 0.0  # all worker processes together
    db_cpu_ms_per_doc: float = 0.0
    mock_cpu_ms_per_doc: float = 0.0
    machine_idle: float = 0.0  # share of the machine's CPU time idle while the workers ran
    worker_startup_cpu_ms: float = 0.0  # one worker's start-up and exit, on an empty queue
    # the workers' CPU per document without their start-ups (what the busy window costs)
    worker_busy_cpu_ms_per_doc: float = 0.0

    @property
    def cpu_ms_per_doc(self) -> float:
        """CPU per document of the drain's own processes: workers (start-ups out), database,
        mock."""
        return self.worker_busy_cpu_ms_per_doc + self.db_cpu_ms_per_doc + self.mock_cpu_ms_per_doc


def make_corpus(shape: str, documents: int | None, into: Path) -> Path:
    """The backlog folder for ``shape`` (generated once into ``into``)."""
    count, kb = SHAPES[shape]
    count = documents or count
    folder = into / f"backlog-{count}x{kb:g}kb"
    if not folder.exists():
        load_generator().generate_backlog(into, count, kb)
    return folder


def enable_statement_stats(server: EmbeddedPostgres) -> str:
    """Start ``server`` with pg_stat_statements loaded; returns the database URL."""
    url = server.ensure_running().url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    server.stop()
    url = server.ensure_running().url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return url


def reset_stats(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"{OWN_QUERY_MARK} SELECT pg_stat_statements_reset()")
        conn.execute(f"{OWN_QUERY_MARK} SELECT pg_stat_reset()")


def top_statements(url: str, limit: int) -> list[tuple[int, float, str]]:
    """The ``limit`` statements that took the most execution time: (calls, ms, query)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            f"{OWN_QUERY_MARK} SELECT calls, total_exec_time, query FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = current_database() AND s.query NOT LIKE %s"
            " ORDER BY total_exec_time DESC LIMIT %s",
            (f"%{OWN_QUERY_MARK}%", limit),
        ).fetchall()
    return [(int(r[0]), float(r[1]), " ".join(str(r[2]).split())[:160]) for r in rows]


def read_stats(url: str) -> tuple[int, int, float, int, float]:
    """(statements, commits, execution ms, completed jobs, busy seconds) since the reset."""
    with psycopg.connect(url, autocommit=True) as conn:
        time.sleep(0.6)  # closed sessions flush their pg_stat_database counters within ~0.5 s
        statements = conn.execute(
            f"{OWN_QUERY_MARK} SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0)"
            " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = current_database() AND s.query NOT LIKE %s",
            (f"%{OWN_QUERY_MARK}%",),
        ).fetchone()
        commits = conn.execute(
            f"{OWN_QUERY_MARK} SELECT xact_commit FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
        jobs = conn.execute(
            f"{OWN_QUERY_MARK} SELECT count(*),"
            " extract(epoch FROM max(completed_at) - min(processing_started_at))"
            " FROM jobs WHERE state = 'complete'"
        ).fetchone()
    assert statements is not None and commits is not None and jobs is not None
    return (
        int(statements[0]),
        int(commits[0]),
        float(statements[1]),
        int(jobs[0]),
        float(jobs[1] or 0.0),
    )


async def ingest(settings: Settings, corpus: Path) -> None:
    async with open_app(settings) as app:  # the blob store the workers will read
        await ingest_files(app.db, app.blobs, [corpus], owner="bench")


def worker_env(settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTD_")}
    env.update(
        {
            "INGESTD_HOME": str(settings.home),
            "INGESTD_DATABASE_URL": settings.database_url or "",
            "INGESTD_EMBEDDER__PROVIDER": "hash",
            "INGESTD_EMBEDDER__DIMENSIONS": str(DIMENSIONS),
            "INGESTD_LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


@dataclass
class OpenAIMock:
    """``ingestd mock openai`` running in a subprocess."""

    process: subprocess.Popen[bytes]
    base_url: str
    key: str

    def counters(self) -> dict[str, Any]:
        answer = httpx.get(self.base_url.removesuffix("/v1") + "/_admin/counters")
        return dict(answer.raise_for_status().json())

    def worker_env(
        self, max_inputs: int | None = None, concurrency: int | None = None
    ) -> dict[str, str]:
        """The workers' settings: the OpenAI embedder against this mock, with request limits."""
        env = {
            "INGESTD_EMBEDDER__PROVIDER": "openai",
            "INGESTD_EMBEDDER__BASE_URL": self.base_url,
            "INGESTD_EMBEDDER__API_KEY": self.key,
            "INGESTD_TRAFFIC__LIMITS": UNBOUND_LIMITS,
            "INGESTD_LOG_LEVEL": "INFO",
            "INGESTD_LOG_FORMAT": "json",
        }
        if max_inputs:
            env["INGESTD_EMBEDDER__MAX_INPUTS_PER_REQUEST"] = str(max_inputs)
        if concurrency:
            env["INGESTD_EMBEDDER__CONCURRENCY"] = str(concurrency)
        return env


@contextlib.contextmanager
def openai_mock(latency_ms: float | None) -> Iterator[OpenAIMock]:
    """``ingestd mock openai`` in a subprocess (its CPU apart from the workers' and ours)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "sk-bench-" + secrets.token_hex(8)
    argv = [sys.executable, "-m", "ingestd", "mock", "openai", "--port", str(port)]
    argv += ["--api-key", key, "--vectors", "token-hash"]
    if latency_ms:
        argv += ["--latency-ms", str(latency_ms)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        mock = OpenAIMock(server, f"http://127.0.0.1:{port}/v1", key)
        wait_until_serving(mock)
        yield mock
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_serving(mock: OpenAIMock) -> None:
    """Wait for the mock to answer, then zero its counters (they count the drain only)."""
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            models = httpx.get(
                f"{mock.base_url}/models", headers={"Authorization": f"Bearer {mock.key}"}
            )
            if models.is_success:
                reset = mock.base_url.removesuffix("/v1") + "/_admin/reset"
                httpx.post(reset).raise_for_status()
                return
        if time.monotonic() > deadline or mock.process.poll() is not None:
            raise SystemExit("the OpenAI mock did not start")
        time.sleep(0.2)


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``: its own, its reaped children's and its live children's."""

    def stat(p: int) -> list[str]:
        text = Path(f"/proc/{p}/stat").read_text()
        return text[text.rindex(")") + 2 :].split()  # the fields from the 3rd (state) on

    own = stat(pid)
    ticks = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat(int(entry.name))
                if int(fields[1]) == pid:  # its parent
                    ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def machine_cpu() -> tuple[int, int]:
    """(idle, total) CPU ticks of the whole machine so far, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks[:8])  # idle + iowait; user .. steal


def postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().split()[0])


@dataclass
class Batching:
    """The workers' ``embed.batching`` summaries, added up."""

    requests: int = 0
    inputs: int = 0
    tokens: int = 0
    fullness_sum: float = 0.0
    full: int = 0
    by_linger: int = 0
    by_idle: int = 0

    def shares(self, max_inputs: int, max_tokens: int) -> dict[str, float]:
        n = self.requests or 1
        return {
            "mean_request_fullness": round(self.fullness_sum / n, 4),
            "full_request_share": round(self.full / n, 4),
            "inputs_full": round(self.inputs / n / max_inputs, 4),
            "tokens_full": round(self.tokens / n / max_tokens, 4),
        }


def batching_summary(log_path: Path) -> Batching:
    """The workers' ``embed.batching`` log lines (one per worker, at exit), added up."""
    total = Batching()
    for line in log_path.read_text(errors="replace").splitlines():
        if '"embed.batching"' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line)
            total.requests += entry["requests"]
            total.inputs += entry["inputs"]
            total.tokens += entry["tokens"]
            total.fullness_sum += entry["mean_fullness"] * entry["requests"]
            total.full += entry["full_requests"]
            total.by_linger += entry.get("by_linger", 0)
            total.by_idle += entry.get("by_idle", 0)
    return total


def run_drain(
    corpus: Path,
    workers: int,
    *,
    name: str = "",
    extra_env: dict[str, str] | None = None,
    top: int = 0,
    embedder: str = "hash",
    latency_ms: float | None = 150.0,
    max_inputs: int | None = None,
    embed_concurrency: int | None = None,
    profile_html: Path | None = None,
) -> DrainResult:
    """Ingest ``corpus`` into a fresh embedded PostgreSQL and drain it with ``workers``
    (``embedder="openai-mock"``: through the OpenAI mock, ``latency_ms`` per request, at most
    ``max_inputs`` per request and ``embed_concurrency`` requests in flight per worker).
    ``profile_html``: each worker runs under a profiler writing there (``profiler_argv``)."""
    if embedder != "openai-mock":
        return drain(corpus, workers, name, extra_env or {}, top, profile_html)
    with openai_mock(latency_ms) as mock:
        env = {**mock.worker_env(max_inputs, embed_concurrency), **(extra_env or {})}
        result = drain(corpus, workers, name, env, top, profile_html, mock=mock.process)
    result.embedder = embedder
    result.env = extra_env or {}
    return result


def drain(
    corpus: Path,
    workers: int,
    name: str,
    extra_env: dict[str, str],
    top: int,
    profile_html: Path | None,
    mock: subprocess.Popen[bytes] | None = None,
) -> DrainResult:
    files = [p for p in corpus.rglob("*") if p.is_file() and p.name != "manifest.json"]
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    base = Path(tempfile.mkdtemp(prefix="ingestd-drain-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "pgdata")
    try:
        url = enable_statement_stats(server)
        settings = Settings(
            home=base / "home",
            database_url=url,
            embedder=HashEmbedderSettings(dimensions=DIMENSIONS),
        )
        asyncio.run(ingest(settings, corpus))
        reset_stats(url)
        env = worker_env(settings, extra_env)
        log_path = base / "workers.log"
        cpu_of = [postmaster_pid(server)] + ([mock.pid] if mock else [])
        cpu_before = [process_cpu_seconds(pid) for pid in cpu_of]
        machine_before = machine_cpu()
        started = time.perf_counter()
        command = [sys.executable, "-m", "ingestd", "worker", "--burst"]
        if profile_html is not None:  # one profiled worker: a profiler around the same command
            command[1:1] = profiler_argv(profile_html)
        with log_path.open("w") as log_file:
            procs = [
                subprocess.Popen(command, env=env, stderr=log_file, stdout=log_file)
                for _ in range(workers)
            ]
            codes, peak_rss_mb, worker_cpu = wait_all(procs)
        wall = time.perf_counter() - started
        idle, total = (a - b for a, b in zip(machine_cpu(), machine_before, strict=True))
        batching = batching_summary(log_path)
        if codes != [0] * workers:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
        statements, commits, exec_ms, done, busy = read_stats(url)
        cpu = [process_cpu_seconds(pid) - b for pid, b in zip(cpu_of, cpu_before, strict=True)]
        startup_cpu = startup_cpu_seconds(env, base / "startup.log")
        for calls, ms, query in top_statements(url, top):
            print(f"{calls:>8} calls {ms:>10.1f} ms  {query}", file=sys.stderr)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
    if codes != [0] * workers or done != len(files):
        raise SystemExit(f"drain failed: exit codes {codes}, {done}/{len(files)} complete")
    limits = (
        int(extra_env.get("INGESTD_EMBEDDER__MAX_INPUTS_PER_REQUEST", MAX_INPUTS)),
        int(extra_env.get("INGESTD_EMBEDDER__MAX_TOKENS_PER_REQUEST", MAX_TOKENS)),
    )
    return DrainResult(
        corpus=name or corpus.name,
        workers=workers,
        documents=done,
        megabytes=round(megabytes, 3),
        wall_seconds=round(wall, 3),
        busy_seconds=round(busy, 3),
        docs_per_second=round(done / wall, 2),
        mb_per_second=round(megabytes / wall, 3),
        mb_per_second_busy=round(megabytes / busy, 3) if busy else 0.0,
        statements_per_doc=round(statements / done, 2),
        commits_per_doc=round(commits / done, 2),
        db_ms_per_doc=round(exec_ms / done, 3),
        env=extra_env,
        embed_requests=batching.requests,
        partial_by_linger=batching.by_linger,
        partial_by_idle=batching.by_idle,
        **(batching.shares(*limits) if batching.requests else {}),
        peak_rss_mb=round(peak_rss_mb, 1),
        docs_per_second_busy=round(done / busy, 2) if busy else 0.0,
        worker_cpu_ms_per_doc=round(worker_cpu * 1000 / done, 2),
        db_cpu_ms_per_doc=round(cpu[0] * 1000 / done, 2),
        mock_cpu_ms_per_doc=round(cpu[1] * 1000 / done, 2) if mock else 0.0,
        machine_idle=round(idle / total, 3) if total else 0.0,
        worker_startup_cpu_ms=round(startup_cpu * 1000, 1),
        worker_busy_cpu_ms_per_doc=round(
            max(worker_cpu - workers * startup_cpu, 0.0) * 1000 / done, 2
        ),
    )


# cProfile timed by the CPU time of the event loop's thread: wall time would charge a function
# for the GIL waits it spent while the chunking and blob threads ran, and for the machine's load.
LOOP_CPU_PROFILE = """
import cProfile, runpy, sys, time
out = sys.argv[1]  # then "-m ingestd worker ...": the worker's own arguments follow
sys.argv = ["ingestd", *sys.argv[4:]]
profile = cProfile.Profile(time.thread_time)
profile.enable()
try:
    runpy.run_module("ingestd", run_name="__main__", alter_sys=True)
finally:
    profile.disable()
    profile.dump_stats(out)
"""


def profiler_argv(out: Path) -> list[str]:
    """The profiler for ``out``: ``.prof``, a pstats file of cProfile timed by the event loop
    thread's CPU time; else pyinstrument (``.html``: its HTML page, ``.pyisession``: its session,
    to render later with ``pyinstrument --load``, any other suffix: its text tree), timed by wall
    clock."""
    if out.suffix == ".prof":
        return ["-c", LOOP_CPU_PROFILE, str(out)]
    renderer = {".html": "html", ".pyisession": "session"}.get(out.suffix, "text")
    return ["-m", "pyinstrument", "-r", renderer, "-o", str(out)]


def startup_cpu_seconds(env: dict[str, str], log_path: Path) -> float:
    """CPU seconds of one ``ingestd worker --burst`` that finds the queue empty (after the
    drain): its imports, settings, connections and exit, which every worker of the drain paid
    too, outside the busy window (the tokenizer is built there too). Whatever a worker sets up
    only on its first job is not in it, so the busy CPU derived from it errs on the high side."""
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingestd", "worker", "--burst"],
            env=env,
            stderr=log_file,
            stdout=log_file,
        )
        codes, _, cpu = wait_all([proc])
    if codes != [0]:
        sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
        raise SystemExit(f"the start-up worker failed: exit code {codes[0]}")
    return cpu


def wait_all(procs: list[subprocess.Popen[bytes]]) -> tuple[list[int], float, float]:
    """Exit codes of ``procs``, the largest peak RSS (MB) among them and their CPU seconds
    together, from wait4."""
    codes, peak, cpu = [], 0.0, 0.0
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        codes.append(proc.returncode)
        peak = max(peak, usage.ru_maxrss / 1024)  # Linux: kilobytes
        cpu += usage.ru_utime + usage.ru_stime
    return codes, peak, cpu


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env takes NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def show(result: DrainResult) -> str:
    return (
        f"{result.corpus} workers={result.workers}: {result.wall_seconds:.2f} s "
        f"(busy {result.busy_seconds:.2f} s) -> {result.docs_per_second:.1f} docs/s, "
        f"{result.mb_per_second:.2f} MB/s ({result.mb_per_second_busy:.2f} busy); "
        f"per doc {result.statements_per_doc:.1f} statements, "
        f"{result.commits_per_doc:.2f} commits, {result.db_ms_per_doc:.2f} ms DB; "
        f"CPU ms per doc: workers {result.worker_cpu_ms_per_doc:.1f} "
        f"({result.worker_busy_cpu_ms_per_doc:.1f} without the start-ups, "
        f"{result.worker_startup_cpu_ms:.0f} ms each), "
        f"database {result.db_cpu_ms_per_doc:.1f}, mock {result.mock_cpu_ms_per_doc:.1f}; "
        f"machine {result.machine_idle:.0%} idle"
        + (
            f"; {result.embed_requests} embedding requests, "
            f"{result.inputs_full:.0%} full by inputs and {result.tokens_full:.0%} by tokens "
            f"on average, {result.full_request_share:.0%} at least 90 % full "
            f"(partial: {result.partial_by_linger} by the linger, "
            f"{result.partial_by_idle} with nothing more to add)"
            if result.embed_requests
            else ""
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="5kb,100kb", help="shapes: 5kb, 100kb")
    parser.add_argument("--documents", type=int, default=None, help="override the count")
    parser.add_argument("--workers", default="1", help="comma-separated process counts")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the workers")
    parser.add_argument("--corpus-dir", type=Path, default=None, help="reuse generated corpora")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--top", type=int, default=0, help="print the N costliest statements")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="profile the worker (one): .prof for cProfile, .html or .txt for pyinstrument",
    )
    parser.add_argument("--embedder", choices=("hash", "openai-mock"), default="hash")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="openai-mock latency")
    parser.add_argument("--max-inputs", type=int, default=None, help="inputs per request")
    parser.add_argument(
        "--embed-concurrency", type=int, default=None, help="requests in flight per worker"
    )
    args = parser.parse_args(argv)
    into = args.corpus_dir or Path(tempfile.mkdtemp(prefix="ingestd-drain-corpus-"))
    extra = parse_env(args.env)
    results: list[dict[str, Any]] = []
    for shape in [s.strip() for s in args.corpus.split(",") if s.strip()]:
        corpus = make_corpus(shape, args.documents, into)
        for workers in [int(w) for w in args.workers.split(",")]:
            for _ in range(args.repeat):
                result = run_drain(
                    corpus,
                    workers,
                    name=shape,
                    extra_env=extra,
                    top=args.top,
                    embedder=args.embedder,
                    latency_ms=args.latency_ms,
                    max_inputs=args.max_inputs,
                    embed_concurrency=args.embed_concurrency,
                    profile_html=args.profile,
                )
                print(show(result), file=sys.stderr, flush=True)
                results.append(asdict(result))
    if args.corpus_dir is None:
        shutil.rmtree(into, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
