"""Whole-pipeline memory: a worker process's peak RSS while it takes one large document of each
format (1-10 MB) through parse, validate, chunk, embed (hash) and store.

    python benchmarks/bench_pipeline_memory.py

The worker's own peak RSS (VmHWM, sampled every 20 ms) holds the parsed text, the chunks and the
vectors; the parse itself runs in the worker's parser processes (their memory is measured by
bench_parsers.py). A baseline run with nothing to do shows the interpreter and libraries alone.
Writes docs/benchmarks/pipeline-memory.md.
"""

from __future__ import annotations

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

from tests.unit.parsers.corpus import load_generator  # noqa: E402

from ingestd.blobs import open_blob_store  # noqa: E402
from ingestd.config import HashEmbedderSettings, Settings  # noqa: E402
from ingestd.db import Database  # noqa: E402
from ingestd.db.embedded import EmbeddedPostgres  # noqa: E402
from ingestd.ingest import ingest_files  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "pipeline-memory.md"


async def ingest_one(settings: Settings, path: Path, owner: str) -> None:
    async with Database.from_settings(settings) as db:
        with open_blob_store(settings, db.url) as blobs:
            await ingest_files(db, blobs, [path], owner=owner)


def run_worker(settings: Settings) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS in MB) of one ``ingestd worker --burst``."""
    env = {
        **os.environ,
        "INGESTD_HOME": str(settings.home),
        "INGESTD_DATABASE_URL": settings.database_url or "",
        "INGESTD_EMBEDDER__PROVIDER": "hash",
        "INGESTD_LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ingestd", "worker", "--burst"], env=env)
    peak_kb = 0
    while proc.poll() is None:
        peak_kb = max(peak_kb, high_water_kb(proc.pid))
        time.sleep(0.02)
    return time.perf_counter() - started, proc.returncode, peak_kb // 1024


def high_water_kb(pid: int) -> int:
    """VmHWM: the process's peak RSS since its exec (``ru_maxrss`` would include the RSS it
    inherited from this, much larger, benchmark process)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="ingestd-bench-mem-"))
    base.chmod(0o755)
    manifest = load_generator().generate(base / "corpus", ("large",))
    server = EmbeddedPostgres(base / "pgdata")
    rows = []
    try:
        url = server.ensure_running().url()
        settings = Settings(home=base / "home", database_url=url, embedder=HashEmbedderSettings())
        # Baseline: a worker that took one tiny document (libraries and tokenizer loaded).
        tiny = base / "tiny" / "tiny.md"
        tiny.parent.mkdir()
        tiny.write_text("# Tiny\n\nA tiny document to warm the worker up.\n")
        asyncio.run(ingest_one(settings, tiny.parent, owner="tiny"))
        _, _, baseline = run_worker(settings)
        for doc in manifest["documents"]:
            path = base / "corpus" / doc["file"]
            fmt = path.suffix.lstrip(".")
            asyncio.run(ingest_one(settings, path, owner=fmt))
            seconds, code, peak = run_worker(settings)
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT j.state, j.chunk_count, (j.parse_metadata->>'chars')::bigint"
                    " FROM jobs j WHERE j.owner = %s",
                    (fmt,),
                ).fetchone()
            assert row is not None and code == 0, (fmt, code, row)
            rows.append(
                (fmt, path.stat().st_size / 2**20, row[2] or 0, row[1] or 0, row[0], seconds, peak)
            )
            print(f"{fmt}: {row[0]} {row[1]} chunks in {seconds:.1f}s, peak {peak} MB", flush=True)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
    write_report(baseline, rows)


def write_report(baseline: int, rows: list[tuple[str, float, int, int, str, float, int]]) -> None:
    lines = [
        "# Whole-pipeline memory for large documents",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.2f}. Command: "
        "`python benchmarks/bench_pipeline_memory.py`.",
        "",
        "One `ingestd worker --burst` per document (the large set of `scripts/gen_corpus.py`), "
        "`hash` embedder, chunks of 400 tokens. *Peak RSS* is the worker process (parsed text, "
        "chunks, vectors, database I/O); the parse itself runs in its parser processes, "
        f"measured in [parsers.md](parsers.md). A worker that took one tiny document (every "
        f"library and the tokenizer loaded) peaks at {baseline} MB.",
        "",
        "| format | file MB | Markdown chars | chunks | state | seconds | peak RSS MB | "
        "above idle MB | above idle / text MB |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for fmt, mb, chars, chunks, state, seconds, peak in rows:
        text_mb = max(chars / 2**20, 0.01)
        lines.append(
            f"| {fmt} | {mb:.2f} | {chars:,} | {chunks} | {state} | {seconds:.1f} | "
            f"{peak} | {peak - baseline} | {(peak - baseline) / text_mb:.1f}x |"
        )
    lines.append("")
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
