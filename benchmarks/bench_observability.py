"""Observability costs and speeds: throughput with and without metrics, ``/metrics`` scrape time
and dashboard reads with 100k jobs, dashboard first paint and live-update latency in Chromium.

    python benchmarks/bench_observability.py [--documents 600] [--repeat 3] [--jobs 100000]
        [--skip-throughput] [--skip-browser]

Throughput: ``ingestd worker --burst`` drains N small documents, metrics on and off in turn
(interleaved, so a busy machine hurts both alike), in a fresh database each run; documents/s from
the first claim to the last completion. Then a database is filled with ``--jobs`` synthetic jobs
(states, errors, usage, three events each within the last hour) and ``ingestd serve`` is timed.
Writes docs/benchmarks/observability.md and a screenshot under docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.factories import write_corpus  # noqa: E402

from ingestd.app import open_app  # noqa: E402
from ingestd.config import HashEmbedderSettings, Settings  # noqa: E402
from ingestd.db import Database  # noqa: E402
from ingestd.db.database import migrate_database  # noqa: E402
from ingestd.db.embedded import EmbeddedPostgres  # noqa: E402
from ingestd.ingest import ingest_files  # noqa: E402
from ingestd.mocks import free_port  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "observability.md"
SCREENSHOT = ROOT / "docs" / "benchmarks" / "observability-dashboard.png"

FILL_SQL = """
-- A synthetic fill: jobs are inserted in their final states, past the trigger that checks
-- transitions (the triggers that keep job_counts run as they would for real writes).
ALTER TABLE jobs DISABLE TRIGGER jobs_check_transition;
INSERT INTO documents (id, owner, filename, media_type, size_bytes, sha256, blob_key, created_at)
SELECT md5('d' || i)::uuid, 'owner-' || (i % 20), 'report-' || i || '.md', 'text/markdown', 5000,
       md5(i::text), 'k' || i, now() - make_interval(secs => i * 0.03)
FROM generate_series(1, %(n)s) AS i;
INSERT INTO jobs (id, document_id, owner, state, created_at, completed_at, last_error, usage,
                  state_changed_at, next_attempt_at)
SELECT md5('j' || i)::uuid, md5('d' || i)::uuid, 'owner-' || (i % 20),
       CASE WHEN i % 100 < 90 THEN 'complete' WHEN i % 100 < 93 THEN 'failed_parse'
            WHEN i % 100 < 95 THEN 'failed_embedding' WHEN i % 100 < 97 THEN 'uploaded'
            ELSE 'embedding_in_progress' END,
       now() - make_interval(secs => i * 0.03),
       CASE WHEN i % 100 < 95 THEN now() - make_interval(secs => i * 0.03) END,
       CASE WHEN i % 100 BETWEEN 90 AND 92 THEN '{"code": "parse.empty", "message": "empty"}'::jsonb
            WHEN i % 100 BETWEEN 93 AND 94 THEN '{"code": "embed.rejected", "message": "no"}'::jsonb
       END,
       jsonb_build_object('embedding_tokens', 300 + i % 50), now(), now()
FROM generate_series(1, %(n)s) AS i;
-- Appended in time order, as job events are (what the BRIN index on created_at relies on).
INSERT INTO job_events (job_id, kind, from_state, to_state, attempt, worker_id, correlation_id,
                        duration_ms, created_at)
SELECT id, 'transition', f, t, 1, 'bench', correlation_id, ms, at
FROM (SELECT j.id, s.f, s.t, j.correlation_id, s.ms,
             now() - make_interval(secs => (row_number() OVER ()) %% 3500) AS at
      FROM jobs j, (VALUES ('uploaded', 'parse_queued', NULL), ('parse_queued', 'parsed', 40),
                           ('embedding_in_progress', 'embeddings_stored', 120)) AS s(f, t, ms))
     AS e
ORDER BY at;
ALTER TABLE jobs ENABLE TRIGGER jobs_check_transition;
"""


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTD_")}
    env.update(
        {
            "INGESTD_HOME": str(settings.home),
            "INGESTD_DATABASE_URL": settings.database_url or "",
            "INGESTD_EMBEDDER__PROVIDER": "hash",
            "INGESTD_LOG_LEVEL": "WARNING",
        }
    )
    return env | extra


def new_database(server: EmbeddedPostgres, name: str) -> str:
    with psycopg.connect(server.status().url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = server.status().url(name)
    asyncio.run(migrate_database(url))
    return url


# -- throughput with and without metrics -------------------------------------------------------


async def _ingest(settings: Settings, corpus: Path) -> None:
    async with open_app(settings) as opened:  # the blob store the workers will read
        await ingest_files(opened.db, opened.blobs, [corpus], owner="bench")


def drain_rate(
    server: EmbeddedPostgres, base: Path, corpus: Path, n: int, on: bool, i: int
) -> float:
    url = new_database(server, f"tp_{i}")
    settings = Settings(home=base / f"home{i}", database_url=url, embedder=HashEmbedderSettings())
    asyncio.run(_ingest(settings, corpus))
    flag = "true" if on else "false"
    env = env_for(settings, INGESTD_OBSERVABILITY__METRICS_ENABLED=flag)
    subprocess.run([sys.executable, "-m", "ingestd", "worker", "--burst"], env=env, check=True)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(completed_at) - min(processing_started_at))"
            " FROM jobs WHERE state = 'complete'"
        ).fetchone()
    assert row is not None and row[0] == n, row
    return n / float(row[1])


def throughput(server: EmbeddedPostgres, base: Path, n: int, repeat: int) -> dict[str, list[float]]:
    corpus = base / "corpus"
    write_corpus(corpus, n, paragraphs=2)
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(repeat):
        for label in ("on", "off") if i % 2 == 0 else ("off", "on"):
            rate = drain_rate(
                server, base, corpus, n, label == "on", len(rates["on"]) * 2 + len(rates["off"])
            )
            rates[label].append(rate)
            print(f"metrics {label}: {rate:.0f} documents/s", flush=True)
    return rates


# -- 100k jobs: scrape, dashboard reads, browser -----------------------------------------------


def timed_gets(client: httpx.Client, path: str, times: int) -> list[float]:
    out = []
    for _ in range(times):
        started = time.perf_counter()
        response = client.get(path)
        out.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return out


def admin_key(url: str, settings: Settings) -> str:
    from ingestd.service.keys import create_key

    async def make() -> str:
        async with Database(url) as db:
            created = await create_key(db, owner="bench-admin", name="bench", admin=True)
            return created.token

    return asyncio.run(make())


def browser(base_url: str, key: str, url: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    out: dict[str, Any] = {"fcp": [], "data": [], "update": []}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = b.new_context(viewport={"width": 1300, "height": 1400})
        page = context.new_page()
        page.goto(base_url)
        page.fill("#api-key", key)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#count-complete")
        for _ in range(7):
            # The previous load settled (jobs table and charts drawn): nothing of it in flight.
            page.wait_for_function(
                "() => document.querySelector('#jobs tbody tr')"
                " && document.querySelector('#throughput-chart').children.length"
            )
            page.reload()
            page.wait_for_selector("#count-complete")
            nav = page.evaluate(
                "() => ({fcp: (performance.getEntriesByName('first-contentful-paint')[0]"
                " || {}).startTime,"
                " data: Number(document.body.dataset.updated) - performance.timeOrigin})"
            )
            out["fcp"].append(nav["fcp"])
            out["data"].append(nav["data"])
        page.wait_for_function("() => document.getElementById('connection').textContent === 'live'")
        for _ in range(5):
            before = page.inner_text("#count-uploaded strong")
            started = time.perf_counter()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "WITH j AS (UPDATE jobs SET state = 'parse_queued' WHERE id = (SELECT id FROM"
                    " jobs WHERE state = 'uploaded' LIMIT 1) RETURNING id, correlation_id)"
                    " INSERT INTO job_events (job_id, from_state, to_state, attempt,"
                    " correlation_id) SELECT id, 'uploaded', 'parse_queued', 1, correlation_id"
                    " FROM j"
                )
            page.wait_for_function(
                "b => document.querySelector('#count-uploaded strong').textContent !== b",
                arg=before,
            )
            out["update"].append((time.perf_counter() - started) * 1000)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        b.close()
    return out


def big_database(
    server: EmbeddedPostgres, base: Path, jobs: int, skip_browser: bool
) -> dict[str, Any]:
    url = new_database(server, "big")
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL_SQL.replace("%(n)s", str(jobs)).replace("%%", "%"))
        conn.execute("VACUUM ANALYZE")  # what autovacuum does to a table this size soon after
    print(f"filled {jobs} jobs in {time.perf_counter() - started:.1f}s", flush=True)
    settings = Settings(home=base / "home-big", database_url=url, embedder=HashEmbedderSettings())
    key = admin_key(url, settings)
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "ingestd", "serve", "--port", str(port)], env=env_for(settings)
    )
    figures: dict[str, Any] = {}
    try:
        base_url = f"http://127.0.0.1:{port}"
        with httpx.Client(
            base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {key}"}
        ) as c:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if c.get("/health/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            figures["series_first"] = timed_gets(c, "/v1/dashboard/series", 1)
            figures["metrics"] = timed_gets(c, "/metrics", 10)
            figures["summary"] = timed_gets(c, "/v1/dashboard/summary", 10)
            figures["series"] = timed_gets(c, "/v1/dashboard/series", 10)
            figures["jobs"] = timed_gets(c, "/v1/dashboard/jobs", 10)
            figures["jobs_filtered"] = timed_gets(
                c, "/v1/dashboard/jobs?state=failed_parse&q=report-9", 10
            )
            figures["index"] = timed_gets(c, "/", 10)
        with httpx.Client(base_url=base_url, timeout=60) as browser_like:
            browser_like.post("/v1/dashboard/session", json={"key": key}).raise_for_status()
            figures["index_signed_in"] = timed_gets(browser_like, "/", 10)
        if not skip_browser:
            figures["browser"] = browser(base_url, key, url)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    return figures


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}"


def write_report(
    args: argparse.Namespace, rates: dict[str, list[float]] | None, big: dict[str, Any]
) -> None:
    load = os.getloadavg()[0]
    command = " ".join(sys.argv[1:])
    lines = [
        "# Observability: costs and speeds",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}; load average at the end {load:.2f} (the "
        "machine is shared: compare figures within a table, not across reports). Command: "
        f"`python benchmarks/bench_observability.py {command}`.",
        "",
    ]
    if rates:
        on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
        lines += [
            "## Throughput with and without metrics",
            "",
            f"{args.documents} small Markdown documents drained by one `ingestd worker --burst` "
            "(hash embedder), metrics on and off alternately, a fresh database each run; "
            "documents/s from the first claim to the last completion.",
            "",
            "| metrics | runs (documents/s) | median |",
            "|---|---|---:|",
            f"| on | {', '.join(f'{r:.0f}' for r in rates['on'])} | {on:.0f} |",
            f"| off | {', '.join(f'{r:.0f}' for r in rates['off'])} | {off:.0f} |",
            "",
            f"Cost of the instrumentation: {(off - on) / off * 100:+.1f} % of throughput "
            "(negative: on was faster, i.e. within the noise).",
            "",
        ]
    lines += [
        f"## `ingestd serve` with {args.jobs:,} jobs",
        "",
        f"{args.jobs:,} jobs (90 % complete, 5 % failed, 5 % pending) and {3 * args.jobs:,} job "
        "events within the last hour. Milliseconds over loopback, median (and max) of 10.",
        "",
        "| request | median ms | max ms |",
        "|---|---:|---:|",
    ]
    for key, label in (
        ("metrics", "`GET /metrics` (fleet figures from the database)"),
        ("summary", "`GET /v1/dashboard/summary`"),
        ("series_first", "`GET /v1/dashboard/series`, first (rolls up every event)"),
        ("series", "`GET /v1/dashboard/series`, later (recent minutes only)"),
        ("jobs", "`GET /v1/dashboard/jobs` (first page)"),
        ("jobs_filtered", "`GET /v1/dashboard/jobs?state=failed_parse&q=report-9`"),
        ("index", "`GET /` (the page, no session: sign-in form)"),
        ("index_signed_in", "`GET /` with a session (the page with its summary inlined)"),
    ):
        if key in big:
            lines.append(f"| {label} | {med(big[key])} | {max(big[key]):.0f} |")
    if "browser" in big:
        b = big["browser"]
        lines += [
            "",
            "## The dashboard in Chromium (headless, Playwright)",
            "",
            "| figure | median ms | runs |",
            "|---|---:|---|",
            f"| first contentful paint | {med(b['fcp'])} | "
            f"{', '.join(f'{v:.0f}' for v in b['fcp'])} |",
            f"| state counts drawn with data (from navigation start) | {med(b['data'])} | "
            f"{', '.join(f'{v:.0f}' for v in b['data'])} |",
            f"| live update: a job moves in the database → its count changes on the page | "
            f"{med(b['update'])} | {', '.join(f'{v:.0f}' for v in b['update'])} |",
            "",
            f"Screenshot: [{SCREENSHOT.name}]({SCREENSHOT.name}).",
        ]
    lines.append("")
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ingestd-bench-obs-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "pgdata")
    server.ensure_running()
    try:
        rates = (
            None if args.skip_throughput else throughput(server, base, args.documents, args.repeat)
        )
        big = big_database(server, base, args.jobs, args.skip_browser)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
    write_report(args, rates, big)


if __name__ == "__main__":
    main()
