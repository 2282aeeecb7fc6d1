#!/usr/bin/env python
"""How fast ``/health/ready`` answers 503 while the database hangs.

    .venv/bin/python benchmarks/bench_ready.py [--requests N] [--concurrent N] [--write]

The database is a TCP port that accepts connections and never answers (what a hung server or a
black-holed network looks like). The app is served in this process through httpx's ASGI
transport, as tests/integration/test_api_hardening.py serves it; that test only checks that the
probe answers 503 instead of hanging, and this script measures how long the answer takes: one
request at a time, then a burst of concurrent ones (a load balancer probing from several
places). ``READY_TIMEOUT_SECONDS`` is the bound every answer should stay near. ``--write``
replaces docs/benchmarks/ready.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from ingestd.api.app import READY_TIMEOUT_SECONDS, create_app
from ingestd.config import BlobSettings, HashEmbedderSettings, Settings
from ingestd.db import Database
from ingestd.testing.silent import silent_database

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "ready.md"


async def measure(requests: int, concurrent: int) -> dict[str, list[float]]:
    with silent_database() as url, tempfile.TemporaryDirectory() as home:
        settings = Settings(
            home=Path(home),
            database_url=url,
            embedder=HashEmbedderSettings(dimensions=64),
            blobs=BlobSettings(backend="local"),
            log_level="ERROR",
        )
        db = Database(url)
        await db.open(migrate=False)
        api = create_app(settings, db=db)
        try:
            async with api.router.lifespan_context(api):
                transport = httpx.ASGITransport(app=api)
                async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:

                    async def one() -> float:
                        started = time.perf_counter()
                        answer = await client.get("/health/ready")
                        assert answer.status_code == 503, answer.text
                        return time.perf_counter() - started

                    sequential = [await one() for _ in range(requests)]
                    burst = list(await asyncio.gather(*(one() for _ in range(concurrent))))
        finally:
            await db.close()
    return {"one at a time": sequential, f"{concurrent} at once": burst}


def report(figures: dict[str, list[float]], command: str) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# /health/ready with the database hanging",
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load} (1, 5, 15 min), with:",
        "",
        f"    {command}",
        "",
        "The database is a port that accepts connections and never answers; each request must be "
        f"answered 503 near `READY_TIMEOUT_SECONDS` = {READY_TIMEOUT_SECONDS:g} s. The test "
        "(tests/integration/test_api_hardening.py) only fails on a hang (ten times that bound).",
        "",
        "| requests | count | median (s) | max (s) |",
        "| --- | --- | --- | --- |",
    ]
    for name, seconds in figures.items():
        lines.append(
            f"| {name} | {len(seconds)} | {statistics.median(seconds):.3f} | {max(seconds):.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10, help="One at a time (default 10).")
    parser.add_argument("--concurrent", type=int, default=20, help="Then at once (default 20).")
    parser.add_argument("--write", action="store_true", help=f"Replace {DOC.name}.")
    args = parser.parse_args()
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)  # one warning per failed connect
    figures = asyncio.run(measure(args.requests, args.concurrent))
    command = "python benchmarks/bench_ready.py" + (
        f" --requests {args.requests} --concurrent {args.concurrent}"
        if (args.requests, args.concurrent) != (10, 20)
        else ""
    )
    text = report(figures, command)
    print(text)
    if args.write:
        DOC.write_text(text)


if __name__ == "__main__":
    main()
