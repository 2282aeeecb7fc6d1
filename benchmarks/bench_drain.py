"""Drain of a queued backlog: documents/s, MB/s, and database statements and time per document.

    python benchmarks/bench_drain.py [--corpus 5kb,100kb] [--workers 1] [--repeat 1] [--json]
                                     [--documents N] [--env NAME=VALUE ...]
                                     [--embedder hash|openai-mock] [--latency-ms 150]

For each corpus shape (``5kb``: 1,000 Markdown documents of ~5 KB; ``100kb``: 200 of ~100 KB,
both from ``scripts/gen_corpus.py --backlog``) and each worker count, a fresh embedded PostgreSQL
(with ``pg_stat_statements``) gets the corpus ingested, then ``ingestd worker --burst`` processes
drain it. Reported per run: wall seconds from starting the workers until the last exits (start-up
included) and the busy window (first claim to last completion); documents/s and MB/s over the wall
time (and the busy window); statements, commits and server-side execution time per document, from
``pg_stat_statements`` and ``pg_stat_database`` (reset after the ingest, so they count the drain
only). Embedder: ``hash`` at 384 dimensions, or ``openai-mock``: the OpenAI embedder against
``ingestd mock openai`` with ``--latency-ms`` per request, micro-batched; the workers' summary of
how full their requests were (``embed.batching`` log lines) is reported too.

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
    mean_request_fullness: float = 0.0
    full_request_share: float = 0.0
    peak_rss_mb: float = 0.0  # the largest worker's peak resident set


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


@contextlib.contextmanager
def openai_mock(latency_ms: float) -> Iterator[dict[str, str]]:
    """``ingestd mock openai`` in a subprocess; yields the workers' embedder settings."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "sk-bench-" + secrets.token_hex(8)
    argv = [sys.executable, "-m", "ingestd", "mock", "openai", "--port", str(port)]
    argv += ["--api-key", key, "--latency-ms", str(latency_ms), "--vectors", "token-hash"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(
                    f"{base}/models", headers={"Authorization": f"Bearer {key}"}
                ).is_success:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the OpenAI mock did not start")
            time.sleep(0.2)
        yield {
            "INGESTD_EMBEDDER__PROVIDER": "openai",
            "INGESTD_EMBEDDER__BASE_URL": base,
            "INGESTD_EMBEDDER__API_KEY": key,
            "INGESTD_LOG_LEVEL": "INFO",
            "INGESTD_LOG_FORMAT": "json",
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def batching_summary(log_path: Path) -> tuple[int, float, float]:
    """(requests, mean fullness, share of full requests) over the workers' ``embed.batching``."""
    requests = full = 0
    fullness = 0.0
    for line in log_path.read_text(errors="replace").splitlines():
        if '"embed.batching"' not in line:
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            requests += entry["requests"]
            fullness += entry["mean_fullness"] * entry["requests"]
            full += entry["full_requests"]
    if not requests:
        return 0, 0.0, 0.0
    return requests, round(fullness / requests, 4), round(full / requests, 4)


def run_drain(
    corpus: Path,
    workers: int,
    *,
    name: str = "",
    extra_env: dict[str, str] | None = None,
    top: int = 0,
    embedder: str = "hash",
    latency_ms: float = 150.0,
    profile_html: Path | None = None,
) -> DrainResult:
    """Ingest ``corpus`` into a fresh embedded PostgreSQL and drain it with ``workers``."""
    if embedder == "openai-mock":
        with openai_mock(latency_ms) as mock_env:
            result = run_drain(
                corpus, workers, name=name, extra_env={**mock_env, **(extra_env or {})}, top=top
            )
        result.embedder = embedder
        result.env = extra_env or {}
        return result
    extra_env = extra_env or {}
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
        started = time.perf_counter()
        command = [sys.executable, "-m", "ingestd", "worker", "--burst"]
        if profile_html is not None:  # one profiled worker: pyinstrument around the same command
            command[1:1] = ["-m", "pyinstrument", "-r", "html", "-o", str(profile_html)]
        with log_path.open("w") as log_file:
            procs = [
                subprocess.Popen(command, env=env, stderr=log_file, stdout=log_file)
                for _ in range(workers)
            ]
            codes, peak_rss_mb = wait_all(procs)
        wall = time.perf_counter() - started
        embed_requests, fullness, full_share = batching_summary(log_path)
        if codes != [0] * workers:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
        statements, commits, exec_ms, done, busy = read_stats(url)
        for calls, ms, query in top_statements(url, top):
            print(f"{calls:>8} calls {ms:>10.1f} ms  {query}", file=sys.stderr)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
    if codes != [0] * workers or done != len(files):
        raise SystemExit(f"drain failed: exit codes {codes}, {done}/{len(files)} complete")
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
        embed_requests=embed_requests,
        mean_request_fullness=fullness,
        full_request_share=full_share,
        peak_rss_mb=round(peak_rss_mb, 1),
    )


def wait_all(procs: list[subprocess.Popen[bytes]]) -> tuple[list[int], float]:
    """Exit codes of ``procs`` and the largest peak RSS (MB) among them, from wait4."""
    codes, peak = [], 0.0
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        codes.append(proc.returncode)
        peak = max(peak, usage.ru_maxrss / 1024)  # Linux: kilobytes
    return codes, peak


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
        f"{result.commits_per_doc:.2f} commits, {result.db_ms_per_doc:.2f} ms DB"
        + (
            f"; {result.embed_requests} embedding requests, "
            f"{result.mean_request_fullness:.0%} full on average, "
            f"{result.full_request_share:.0%} at least 90 % full"
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
    parser.add_argument("--embedder", choices=("hash", "openai-mock"), default="hash")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="openai-mock latency")
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
