"""Traffic control: how much of a vendor's rate limit a fleet uses, how often it trips it, and how
fast it recovers from an outage.

    python benchmarks/bench_traffic.py [--documents 5000] [--workers 4] [--rpm 3000]
        [--tpm 1000000] [--window-seconds 60] [--batch-size 1] [--modes shared,process]
        [--outage-seconds 10] [--write]

The OpenAI mock enforces ``--rpm`` requests and ``--tpm`` tokens per ``--window-seconds`` (its
buckets hold a whole window's worth and refill continuously, like OpenAI's). ``--workers``
``ingestd worker`` processes drain ``--documents`` small documents (one chunk each; with
``--batch-size 1`` one request per document), configured with the same limits, in each
``traffic.mode``: ``shared`` (one limit in PostgreSQL for the fleet), ``process`` (each process
limits itself to the whole limit: per-process limiting) and ``off`` (no limiter: only the
vendor's 429s slow anything down). In ``shared`` mode an outage (every request answered 503) of
``--outage-seconds`` is injected once 40 % of the documents are complete.

``--chunk-tokens`` and ``--inputs-per-request`` make many small requests per document, so that on a
small machine the vendor's limit, not the pipeline, is what binds.

Figures, from the mock's own counters sampled every 0.25 s:
* achieved fraction of a limit: successful requests (tokens) per second while the mock's bucket
  for it was drained (under 10 % left, so refill is the only supply), over the refill rate;
* share of requests answered 429;
* recovery: from the end of the outage until successful requests per second (over 1 s) are back
  at 90 % of the rate before it.
Writes docs/benchmarks/traffic.md with ``--write``.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.factories import write_corpus  # noqa: E402

from ingestd.app import open_app  # noqa: E402
from ingestd.config import Settings  # noqa: E402
from ingestd.db.embedded import EmbeddedPostgres  # noqa: E402
from ingestd.ingest import ingest_files  # noqa: E402
from ingestd.mocks import BackgroundServer  # noqa: E402
from ingestd.mocks.faults import MockState  # noqa: E402
from ingestd.mocks.openai import OpenAIBehaviour, create_app  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "traffic.md"
SAMPLE_SECONDS = 0.25
DRAINED = 0.10  # a bucket with less than this share left is drained


@dataclass
class Sample:
    at: float
    requests: float
    limited: float
    errors: int
    tokens: float
    requests_left: float | None
    tokens_left: float | None
    complete: int  # terminal (complete or failed)

    @property
    def ok(self) -> float:
        return self.requests - self.limited - self.errors


@dataclass
class Result:
    mode: str
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    outage: tuple[float, float] | None = None


def sample(state: MockState[OpenAIBehaviour], conn: psycopg.Connection[Any], at: float) -> Sample:
    counters = state.counters.snapshot()
    buckets = state.rate_snapshot()
    row = conn.execute("SELECT count(*) FROM jobs WHERE completed_at IS NOT NULL").fetchone()
    return Sample(
        at,
        counters["requests"],
        counters["rate_limited"],
        sum(counters["errors"].values()) - int(counters["rate_limited"]),
        counters["tokens"],
        (buckets["requests"] or {}).get("remaining"),
        (buckets["tokens"] or {}).get("remaining"),
        int(row[0]) if row else 0,
    )


def worker_env(settings: Settings, url: str, args: argparse.Namespace, mode: str) -> dict[str, str]:
    return {
        **os.environ,
        "INGESTD_HOME": str(settings.home),
        "INGESTD_DATABASE_URL": settings.database_url or "",
        "INGESTD_LOG_LEVEL": "WARNING",
        "INGESTD_EMBEDDER__PROVIDER": "openai",
        "INGESTD_EMBEDDER__BASE_URL": url + "/v1",
        "INGESTD_EMBEDDER__API_KEY": "sk-bench",
        "INGESTD_EMBEDDER__DIMENSIONS": "64",
        "INGESTD_WORKER__BATCH_SIZE": str(args.batch_size),
        "INGESTD_WORKER__CONCURRENCY": "32",
        "INGESTD_CHUNKER__TOKENS": str(args.chunk_tokens),
        "INGESTD_CHUNKER__OVERLAP": "0",
        "INGESTD_EMBEDDER__MAX_INPUTS_PER_REQUEST": str(args.inputs_per_request),
        "INGESTD_EMBEDDER__CONCURRENCY": str(args.concurrency),
        "INGESTD_TRAFFIC__MODE": mode,
        "INGESTD_TRAFFIC__LIMITS__OPENAI__REQUESTS_PER_MINUTE": str(args.rpm),
        "INGESTD_TRAFFIC__LIMITS__OPENAI__TOKENS_PER_MINUTE": str(args.tpm),
        "INGESTD_TRAFFIC__LIMITS__OPENAI__WINDOW_SECONDS": str(args.window_seconds),
        "INGESTD_TRAFFIC__BREAKER__OPEN_SECONDS": "2",
    }


def run_mode(mode: str, args: argparse.Namespace, corpus: Path) -> Result:
    base = Path(tempfile.mkdtemp(prefix="ingestd-bench-traffic-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "pgdata")
    behaviour = OpenAIBehaviour.model_validate(
        {
            "vectors": "token-hash",
            "rate_limits": {
                "requests_per_minute": args.rpm,
                "tokens_per_minute": args.tpm,
                "window_seconds": args.window_seconds,
            },
        }
    )
    try:
        db_url = server.ensure_running().url()
        settings = Settings(home=base / "home", database_url=db_url)
        asyncio.run(ingest(settings, corpus))
        with BackgroundServer(create_app(behaviour)) as mock:
            state: MockState[OpenAIBehaviour] = mock.app.state.mock
            state.reset()  # full buckets from the first worker request on
            env = worker_env(settings, mock.url, args, mode)
            procs = [
                subprocess.Popen([sys.executable, "-m", "ingestd", "worker"], env=env)
                for _ in range(args.workers)
            ]
            try:
                return drive(mode, args, state, db_url)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(timeout=60)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def drive(
    mode: str, args: argparse.Namespace, state: MockState[OpenAIBehaviour], db_url: str
) -> Result:
    result = Result(mode, 0.0)
    outage_at = int(args.documents * 0.4) if mode == "shared" and args.outage_seconds else None
    started = None
    with psycopg.connect(db_url, autocommit=True) as conn:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            current = sample(state, conn, now)
            if started is None and current.requests:
                started = now
            if started is not None:
                result.samples.append(current)
            if outage_at is not None and current.complete >= outage_at and result.outage is None:
                state.patch_behaviour({"faults": [{"kind": "http_503"}]})
                time.sleep(args.outage_seconds)
                state.patch_behaviour({"faults": []})
                result.outage = (now, time.monotonic())
                continue
            if current.complete >= args.documents:
                break
            time.sleep(SAMPLE_SECONDS)
    first = result.samples[0].at if result.samples else 0.0
    result.seconds = (result.samples[-1].at - first) if result.samples else 0.0
    return result


async def ingest(settings: Settings, corpus: Path) -> None:
    async with open_app(settings) as app:  # the blob store the workers will read
        await ingest_files(app.db, app.blobs, [corpus], owner="bench")


def drained_fraction(result: Result, unit: str, limit: float, window: float) -> float | None:
    """Served units per second while the mock's bucket was drained, over its refill rate."""
    served = 0.0
    seconds = 0.0
    outage = result.outage
    for a, b in zip(result.samples, result.samples[1:], strict=False):
        left = a.requests_left if unit == "requests" else a.tokens_left
        if left is None or left > DRAINED * limit:
            continue
        if outage is not None and outage[0] - 2 <= a.at <= outage[1] + 10:
            continue
        served += (b.ok - a.ok) if unit == "requests" else (b.tokens - a.tokens)
        seconds += b.at - a.at
    if seconds < 2:
        return None  # the limit never bound long enough to tell
    return served / seconds / (limit / window)


def recovery_seconds(result: Result) -> tuple[float, float] | None:
    """(seconds from the outage's end to 90 % of the successful rate before it, that rate)."""
    if result.outage is None:
        return None
    begin, end = result.outage
    before = [s for s in result.samples if begin - 6 <= s.at <= begin]
    if len(before) < 2:
        return None
    rate = (before[-1].ok - before[0].ok) / (before[-1].at - before[0].at)
    after = [s for s in result.samples if s.at >= end]
    for i, s in enumerate(after):
        later = [x for x in after[i:] if x.at >= s.at + 1.0]
        if later and (later[0].ok - s.ok) / (later[0].at - s.at) >= 0.9 * rate:
            return s.at - end, rate
    return None


def describe(result: Result, args: argparse.Namespace) -> dict[str, Any]:
    last = result.samples[-1] if result.samples else None
    requests = last.requests if last else 0
    limited = last.limited if last else 0
    return {
        "mode": result.mode,
        "seconds": result.seconds,
        "requests": requests,
        "share_429": limited / requests if requests else 0.0,
        "requests_fraction": drained_fraction(result, "requests", args.rpm, args.window_seconds),
        "tokens_fraction": drained_fraction(result, "tokens", args.tpm, args.window_seconds),
        "recovery": recovery_seconds(result),
        "ok_per_second": (last.ok / result.seconds) if last and result.seconds else 0.0,
    }


def percent(value: float | None) -> str:
    return "did not bind" if value is None else f"{100 * value:.0f} %"


def report(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    load = os.getloadavg()[0]
    lines = [
        "# Traffic control: shared rate limits, 429s, outage recovery",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load average at the end "
        f"{load:.2f}. Command: `{command}`.",
        "",
        f"{args.documents} small Markdown documents ({args.paragraphs} paragraph(s), chunks of "
        f"up to {args.chunk_tokens} tokens, up to {args.inputs_per_request} input(s) per "
        f"request), {args.workers} `ingestd worker` processes (batch size {args.batch_size}, "
        f"{args.concurrency} requests in flight each), embedded PostgreSQL on the same "
        f"machine. The OpenAI mock enforces {args.rpm:,} requests and {args.tpm:,} tokens per "
        f"{args.window_seconds:g} s window (buckets of a whole window, refilled continuously, "
        "as OpenAI's); the workers are given the same figures, and correct them from the "
        "mock's `x-ratelimit-*` headers. Achieved fraction: successful units per second while "
        "the mock's bucket was drained (refill the only supply), over the refill rate; "
        "`did not bind` when the bucket never drained for 2 s.",
        "",
        "| mode | drain (s) | requests | answered 429 | requests limit used | tokens limit used "
        "| outage end → full rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        recovery = row["recovery"]
        shown = f"{recovery[0]:.1f} s" if recovery else "—"
        lines.append(
            f"| {row['mode']} | {row['seconds']:.1f} | {row['requests']:,.0f} | "
            f"{100 * row['share_429']:.2f} % | {percent(row['requests_fraction'])} | "
            f"{percent(row['tokens_fraction'])} | {shown} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rpm", type=int, default=3000)
    parser.add_argument("--tpm", type=int, default=1_000_000)
    parser.add_argument("--window-seconds", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--paragraphs", type=int, default=1, help="Per document.")
    parser.add_argument("--chunk-tokens", type=int, default=400)
    parser.add_argument("--inputs-per-request", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=4, help="Requests in flight/process.")
    parser.add_argument("--modes", default="shared,process")
    parser.add_argument("--outage-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    command = "python benchmarks/bench_traffic.py " + " ".join(sys.argv[1:])
    corpus = Path(tempfile.mkdtemp(prefix="ingestd-bench-corpus-"))
    write_corpus(corpus, args.documents, paragraphs=args.paragraphs)
    rows = []
    try:
        for mode in args.modes.split(","):
            row = describe(run_mode(mode, args, corpus), args)
            print(row, flush=True)
            rows.append(row)
    finally:
        shutil.rmtree(corpus, ignore_errors=True)
    text = report(rows, args, command)
    print(text)
    if args.write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)


if __name__ == "__main__":
    main()
