"""Capacity of the mock LlamaParse server on loopback: uploads/s and status polls/s at zero latency,
and the time one document takes through it at its default latency.

The mock runs in its own process (``ingestd.mocks.llamaparse.serve``, one uvicorn worker), so the
clients' CPU does not count against it; a few concurrent httpx clients hammer one route for a fixed
time. Uploads include the work they cause on the server: every accepted upload is parsed there
(ingestd's local parser, in a thread) and completed, so "jobs completed/s" is reported beside
"uploads/s". The upload rate limit is switched off. The point is to know that benchmarks of ingestd
are never limited by the mock.

    .venv/bin/python benchmarks/bench_mock_llamaparse.py [--seconds 5] [--clients 4] [--write]

``--write`` replaces the "## LlamaParse mock" section of docs/benchmarks/mocks.md with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from reportlab.pdfgen import canvas

from ingestd.mocks import free_port
from ingestd.parsers.llamaparse import LlamaParseClient

KEY = "llx-bench"
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "mocks.md"
SECTION = "## LlamaParse mock"
UNLIMITED = json.dumps({"rate_limits": {"requests_per_minute": None}})
SERVER_CODE = (
    "import sys; from ingestd.mocks.llamaparse import build_behaviour, serve; "
    "serve(port=int(sys.argv[1]), log_level='warning', behaviour=build_behaviour(sys.argv[2], "
    "api_key='llx-bench', latency_ms=float(sys.argv[3]), per_page_ms=float(sys.argv[4])))"
)
MARKDOWN = ("# Quarterly notes\n\n" + "Revenue grew in every region this quarter. " * 40).encode()

Call = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


def pdf_pages(count: int) -> bytes:
    out = io.BytesIO()
    pdf = canvas.Canvas(out)
    for number in range(1, count + 1):
        pdf.drawString(72, 720, f"Chapter {number}")
        for line in range(30):
            pdf.drawString(72, 690 - 14 * line, f"Line {line} of page {number}: some body text.")
        pdf.showPage()
    pdf.save()
    return out.getvalue()


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    seconds: float
    errors: int
    completed: int | None = None  # jobs the server finished during the run (upload scenarios)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def start_server(port: int, latency_ms: float, per_page_ms: float) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", SERVER_CODE, str(port), UNLIMITED, str(latency_ms)]
    process = subprocess.Popen([*args, str(per_page_ms)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_admin/counters", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the mock did not start")


def upload_v2(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    config = json.dumps({"tier": "fast", "version": "latest"})
    files = {"file": ("notes.md", MARKDOWN)}
    return http.post("/api/v2/parse/upload", files=files, data={"configuration": config})


def upload_v1(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return http.post("/api/parsing/upload", files={"file": ("notes.md", MARKDOWN)})


async def run_client(url: str, call: Call, stop_at: float) -> tuple[int, int]:
    done = errors = 0
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        while time.monotonic() < stop_at:
            answer = await call(http)
            done += 1
            errors += answer.status_code != 200
    return done, errors


async def counter(url: str, name: str) -> int:
    async with httpx.AsyncClient(base_url=url) as admin:
        return int((await admin.get("/_admin/counters")).json().get(name, 0))


async def measure(url: str, name: str, call: Call, clients: int, seconds: float) -> Result:
    await run_client(url, call, time.monotonic() + 0.3)  # warm up
    before = await counter(url, "jobs_completed")
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(run_client(url, call, started + seconds) for _ in range(clients))
    )
    elapsed = time.monotonic() - started
    completed = await counter(url, "jobs_completed") - before
    requests, errors = sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)
    return Result(name, requests, elapsed, errors, completed if "upload" in name else None)


async def capacity(url: str, clients: int, seconds: float) -> list[Result]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        job_id = (await upload_v2(http)).json()["id"]
        await asyncio.sleep(0.5)  # let it complete
    scenarios: list[tuple[str, Call]] = [
        ("v2 upload (1-page Markdown)", upload_v2),
        ("v1 upload (1-page Markdown)", upload_v1),
        ("v2 status poll", lambda h: h.get(f"/api/v2/parse/{job_id}")),
        ("v2 result (expand=markdown)", lambda h: h.get(f"/api/v2/parse/{job_id}?expand=markdown")),
        ("v1 status poll", lambda h: h.get(f"/api/parsing/job/{job_id}")),
    ]
    results = []
    for name, call in scenarios:
        result = await measure(url, name, call, clients, seconds)
        print(f"{name}: {result.per_second:,.0f} req/s, {result.errors} errors", flush=True)
        results.append(result)
        await asyncio.sleep(1.0)  # let queued parses drain before the next scenario
    return results


async def end_to_end(url: str, pages: int, runs: int) -> float:
    """Median seconds from submit to Markdown in hand (ingestd's client, polling every 20 ms)."""
    data = pdf_pages(pages) if pages > 1 else MARKDOWN
    name = "doc.pdf" if pages > 1 else "notes.md"
    timings = []
    async with httpx.AsyncClient() as http:
        client = LlamaParseClient(http, api_key=KEY, base_url=url)
        for _ in range(runs):
            started = time.monotonic()
            job_id = await client.submit(data, name, tier="cost_effective")
            while not (await client.status(job_id)).is_terminal:
                await asyncio.sleep(0.02)
            result = await client.fetch_result(job_id)
            assert result.usage.pages == pages, result.usage
            timings.append(time.monotonic() - started)
    return statistics.median(timings)


def report(results: list[Result], e2e: dict[int, float], clients: int, seconds: float) -> str:
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; the mock in its own process "
        f"(one uvicorn worker, h11), {clients} concurrent httpx clients on loopback, zero "
        f"latency, upload rate limit off, {seconds:g} s per scenario. Command:",
        "",
        "    .venv/bin/python benchmarks/bench_mock_llamaparse.py --write",
        "",
        "| scenario | requests/s | jobs completed/s | errors |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        completed = "" if r.completed is None else f"{r.completed / r.seconds:,.0f}"
        lines.append(f"| {r.name} | {r.per_second:,.0f} | {completed} | {r.errors} |")
    lines += [
        "",
        "End to end at the default latency (100 ms per job + 50 ms per page), ingestd's client "
        "submitting, polling every 20 ms and fetching the Markdown (median of 5):",
        "",
        "| document | seconds |",
        "|---|---:|",
        *(f"| {pages} page(s) | {secs:.2f} |" for pages, secs in e2e.items()),
        "",
        "What bounds it: an upload is a multipart parse plus a job whose local parse runs in a "
        "thread of the same process, so upload capacity is shared with parsing (the GIL); status "
        "polls are a dictionary lookup and JSON. A real LlamaParse account allows 50 uploads per "
        "10 s, far below these figures. End-to-end time is the configured latency plus the local "
        "parse plus up to one poll interval; set `latency` to 0 for tests.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str, path: Path = DOC) -> None:
    """Replace (or add) the LlamaParse section, leaving every other section as it is."""
    text = path.read_text("utf-8") if path.exists() else "# Mock server capacity\n\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        tail = text[end + 1 :] if end >= 0 else ""
        text = text[:start] + section + ("\n" + tail if tail else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--write", action="store_true", help=f"update {DOC}")
    args = parser.parse_args()
    port = free_port()
    server = start_server(port, latency_ms=0, per_page_ms=0)
    try:
        results = await capacity(f"http://127.0.0.1:{port}", args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(10)
    port = free_port()
    server = start_server(port, latency_ms=100, per_page_ms=50)  # the defaults
    try:
        e2e = {pages: await end_to_end(f"http://127.0.0.1:{port}", pages, 5) for pages in (1, 10)}
    finally:
        server.terminate()
        server.wait(10)
    section = report(results, e2e, args.clients, args.seconds)
    if args.write:
        write_section(section)
    print(section)


if __name__ == "__main__":
    asyncio.run(main())
