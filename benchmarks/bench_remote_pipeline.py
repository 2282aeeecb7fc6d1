"""End to end through both mocks: parser=llamaparse and embedder=openai at the mocks' default
latency (LlamaParse: 100 ms + 50 ms per page; OpenAI: none), webhooks on, one worker.

    python benchmarks/bench_remote_pipeline.py [--documents 20]

Per-document time runs from the job's creation to ``complete``. Writes
docs/benchmarks/remote-pipeline.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.factories import markdown_document  # noqa: E402

from ingestd.api.app import create_app as create_api  # noqa: E402
from ingestd.app import App, open_app  # noqa: E402
from ingestd.config import LlamaParseSettings, OpenAIEmbedderSettings, Settings  # noqa: E402
from ingestd.db.embedded import EmbeddedPostgres  # noqa: E402
from ingestd.ingest import Upload, ingest_uploads  # noqa: E402
from ingestd.mocks import BackgroundServer, free_port  # noqa: E402
from ingestd.mocks.llamaparse import create_app as create_llamaparse  # noqa: E402
from ingestd.mocks.openai import create_app as create_openai  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "remote-pipeline.md"


SINGLE_RUNS = 5


async def ingest_and_wait(app: App, uploads: list[Upload], complete: int) -> None:
    await ingest_uploads(app.db, app.blobs, uploads, owner="bench")
    while True:
        rows = await app.db.fetch_all("SELECT count(*) AS n FROM jobs WHERE state = 'complete'")
        if rows[0]["n"] >= complete:
            return
        await asyncio.sleep(0.01)


def document(name: str, index: int) -> Upload:
    return Upload(f"{name}.md", markdown_document(index, 6, seed=9).encode())


async def measure(app: App, documents: int) -> tuple[list[float], float]:
    """Single documents one after another (latency), then ``documents`` at once (throughput)."""
    single = []
    for i in range(SINGLE_RUNS):
        started = time.perf_counter()
        await ingest_and_wait(app, [document(f"s{i}", 1000 + i)], i + 1)
        single.append(time.perf_counter() - started)
    started = time.perf_counter()
    batch = [document(f"b{i}", i) for i in range(documents)]
    await ingest_and_wait(app, batch, documents + SINGLE_RUNS)
    return single, time.perf_counter() - started


async def run(documents: int, base: Path) -> tuple[list[float], float, dict[str, float]]:
    server = EmbeddedPostgres(base / "pgdata")
    url = server.ensure_running().url()
    port = free_port("127.0.0.1")
    hook = f"http://127.0.0.1:{port}/v1/webhooks/llamaparse"
    try:
        with (
            BackgroundServer(create_openai()) as oa,
            BackgroundServer(create_llamaparse(), lifespan="on") as lp,
        ):
            settings = Settings(
                home=base / "home",
                database_url=url,
                log_level="WARNING",
                parser=LlamaParseSettings(
                    base_url=lp.url, api_key="llx-bench", webhook_secret="bench", webhook_url=hook
                ),
                embedder=OpenAIEmbedderSettings(base_url=oa.url + "/v1", api_key="sk-bench"),
            )
            async with open_app(settings) as app:
                api = BackgroundServer(create_api(settings), port=port, lifespan="on")
                with api:
                    worker = app.worker()
                    task = asyncio.create_task(worker.run())
                    single, total = await measure(app, documents)
                    worker.request_stop()
                    await task
                stages = await app.db.fetch_all(
                    "SELECT from_state, avg(duration_ms) AS ms FROM job_events"
                    " WHERE kind IN ('transition', 'wait') GROUP BY 1"
                )
        return single, total, {r["from_state"]: float(r["ms"] or 0) for r in stages}
    finally:
        server.stop(mode="immediate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=20)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ingestd-bench-remote-"))
    base.chmod(0o755)
    try:
        single, total, stages = asyncio.run(run(args.documents, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    latency = statistics.median(single)
    print(f"one document alone: median {latency:.2f}s; {args.documents} at once: {total:.2f}s")
    lines = [
        "# End to end through both mocks",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.2f}. Command: "
        f"`python benchmarks/bench_remote_pipeline.py --documents {args.documents}`.",
        "",
        "parser=llamaparse (mock, default latency: 100 ms + 50 ms per page, webhooks signed and "
        "delivered to `ingestd serve`), embedder=openai (mock, text-embedding-3-small, 1536 "
        "dimensions), one in-process worker, embedded PostgreSQL, small Markdown documents "
        "(one page each).",
        "",
        "| scenario | time (s) | documents/s |",
        "|---|---:|---:|",
        f"| one document alone, upload to `complete` (median of {SINGLE_RUNS}) | {latency:.2f} | "
        f"{1 / latency:.1f} |",
        f"| {args.documents} documents uploaded at once, until all are `complete` | {total:.2f} | "
        f"{args.documents / total:.1f} |",
        "",
        "Average time per stage step (ms, from job_events; a batch's step is shared by its jobs):",
        "",
        "| from state | ms |",
        "|---|---:|",
        *[f"| {state} | {ms:.0f} |" for state, ms in sorted(stages.items())],
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
