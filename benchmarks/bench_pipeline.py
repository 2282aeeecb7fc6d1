"""Pipeline throughput: documents per second draining N small documents with 1 and 2 workers.

    python benchmarks/bench_pipeline.py [--documents 1000] [--workers 1,2] [--repeat 2]

Each run uses a fresh embedded PostgreSQL in a temporary folder, ingests the documents, then
times ``ingestd worker --burst`` processes from start until every job is complete (process start
included). Writes docs/benchmarks/pipeline.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.factories import write_corpus  # noqa: E402

from ingestd.blobs import open_blob_store  # noqa: E402
from ingestd.config import HashEmbedderSettings, Settings  # noqa: E402
from ingestd.db import Database  # noqa: E402
from ingestd.db.embedded import EmbeddedPostgres  # noqa: E402
from ingestd.ingest import ingest_files  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "pipeline.md"


async def ingest(settings: Settings, corpus: Path) -> float:
    started = time.perf_counter()
    async with Database.from_settings(settings) as db:
        with open_blob_store(settings, db.url) as blobs:
            await ingest_files(db, blobs, [corpus], owner="bench")
    return time.perf_counter() - started


def drain(settings: Settings, workers: int, total: int) -> tuple[float, float]:
    """(wall seconds including process start-up, seconds from first claim to last completion)."""
    env = {
        **os.environ,
        "INGESTD_HOME": str(settings.home),
        "INGESTD_DATABASE_URL": settings.database_url or "",
        "INGESTD_EMBEDDER__PROVIDER": "hash",
        "INGESTD_LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-m", "ingestd", "worker", "--burst"], env=env)
        for _ in range(workers)
    ]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - started
    with psycopg.connect(settings.database_url or "") as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(completed_at) - min(processing_started_at))"
            " FROM jobs WHERE state = 'complete'"
        ).fetchone()
    done, busy = (row[0], float(row[1])) if row else (0, 0.0)
    if codes != [0] * workers or done != total:
        raise SystemExit(f"run failed: exit codes {codes}, {done}/{total} complete")
    return elapsed, busy


def one_run(documents: int, workers: int, corpus: Path) -> tuple[float, float, float]:
    base = Path(tempfile.mkdtemp(prefix="ingestd-bench-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "pgdata")
    try:
        url = server.ensure_running().url()
        settings = Settings(home=base / "home", database_url=url, embedder=HashEmbedderSettings())
        ingest_seconds = asyncio.run(ingest(settings, corpus))
        return (ingest_seconds, *drain(settings, workers, documents))
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    corpus = Path(tempfile.mkdtemp(prefix="ingestd-bench-corpus-"))
    write_corpus(corpus, args.documents, paragraphs=2)
    size_kb = sum(p.stat().st_size for p in corpus.iterdir()) / args.documents / 1024
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        best = None
        for _ in range(args.repeat):
            ingest_s, drain_s, busy_s = one_run(args.documents, workers, corpus)
            print(
                f"workers={workers} ingest={ingest_s:.2f}s drain={drain_s:.2f}s "
                f"-> {args.documents / drain_s:.0f} documents/s "
                f"({args.documents / busy_s:.0f}/s after start-up)",
                flush=True,
            )
            if best is None or drain_s < best[1]:
                best = (ingest_s, drain_s, busy_s)
        assert best is not None
        rows.append((workers, *best))
    shutil.rmtree(corpus, ignore_errors=True)
    write_report(args, size_kb, rows)


def write_report(
    args: argparse.Namespace, size_kb: float, rows: list[tuple[int, float, float, float]]
) -> None:
    load = os.getloadavg()[0]
    lines = [
        "# Pipeline throughput",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load average at the end "
        f"{load:.2f}. Command: `python benchmarks/bench_pipeline.py --documents {args.documents} "
        f"--workers {args.workers} --repeat {args.repeat}` (best of {args.repeat}).",
        "",
        f"{args.documents} small Markdown documents (~{size_kb:.1f} KB each, 1 chunk each), "
        "local parser, `hash` embedder (256 dims), embedded PostgreSQL 18 on the same machine. "
        "Drain time runs from starting the `ingestd worker --burst` processes (start-up "
        'included, about 0.7 s) until the last one exits with every job `complete`; "after '
        'start-up" counts from the first claim to the last completion.',
        "",
        "| worker processes | ingest (s) | drain (s) | documents/s | after start-up |",
        "|---:|---:|---:|---:|---:|",
    ]
    for workers, ingest_s, drain_s, busy_s in rows:
        lines.append(
            f"| {workers} | {ingest_s:.2f} | {drain_s:.2f} | {args.documents / drain_s:.0f} | "
            f"{args.documents / busy_s:.0f} |"
        )
    lines.append("")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
