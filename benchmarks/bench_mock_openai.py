"""Capacity of the mock OpenAI server on loopback: requests/s and embeddings/s at zero latency.

The mock runs in its own process (``ingestd.mocks.openai.serve``, one uvicorn worker), so the
client's CPU does not count against it; a few concurrent clients post fixed-size requests with the
official SDK's default encoding (base64) for a fixed time. The point is to know that benchmarks of
ingestd are never limited by the mock.

    .venv/bin/python benchmarks/bench_mock_openai.py [--seconds 5] [--clients 4] [--write]

``--write`` replaces the "## OpenAI mock" section of docs/benchmarks/mocks.md with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ingestd.mocks import free_port
from ingestd.tokens import count_tokens

KEY = "sk-bench"
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "mocks.md"
SECTION = "## OpenAI mock"
SERVER_CODE = (
    "import sys; from ingestd.mocks.openai import build_behaviour, serve; "
    "serve(port=int(sys.argv[1]), behaviour=build_behaviour(api_key='sk-bench'), "
    "log_level='warning')"
)


@dataclass(frozen=True)
class Scenario:
    name: str
    inputs: int  # per request
    words: int  # per input
    encoding: str = "base64"
    dimensions: int | None = None
    vectors: str = "hash"  # OpenAIBehaviour.vectors, set through PATCH /_admin/behaviour


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    requests: int
    seconds: float
    errors: int

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def embeddings_per_second(self) -> float:
        return self.requests * self.scenario.inputs / self.seconds


SCENARIOS = [
    Scenario("100 inputs, 1536 dims, base64, hash", 100, 100),
    Scenario("100 inputs, 1536 dims, base64, token-hash", 100, 100, vectors="token-hash"),
    Scenario("100 inputs, 1536 dims, float, token-hash", 100, 100, "float", vectors="token-hash"),
    Scenario("1 input, 1536 dims, base64, hash", 1, 100),
    Scenario(
        "2048 inputs, 256 dims, base64, token-hash", 2048, 10, dimensions=256, vectors="token-hash"
    ),
]


def start_server(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", SERVER_CODE, str(port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_admin/counters", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the mock did not start")


def request_body(scenario: Scenario, client: int) -> dict[str, object]:
    texts = [
        " ".join(f"word{(client * 7919 + i * 31 + w) % 5000}" for w in range(scenario.words))
        for i in range(scenario.inputs)
    ]
    body: dict[str, object] = {
        "model": "text-embedding-3-small",
        "input": texts,
        "encoding_format": scenario.encoding,
    }
    if scenario.dimensions:
        body["dimensions"] = scenario.dimensions
    return body


async def run_client(url: str, scenario: Scenario, client: int, stop_at: float) -> tuple[int, int]:
    body = request_body(scenario, client)
    done = errors = 0
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        while time.monotonic() < stop_at:
            answer = await http.post("/v1/embeddings", json=body)
            answer.read()
            done += 1
            errors += answer.status_code != 200
    return done, errors


async def measure(url: str, scenario: Scenario, clients: int, seconds: float) -> Result:
    async with httpx.AsyncClient(base_url=url) as admin:
        answer = await admin.patch("/_admin/behaviour", json={"vectors": scenario.vectors})
        answer.raise_for_status()
    await run_client(url, scenario, 0, time.monotonic() + 0.5)  # warm up
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(run_client(url, scenario, c, started + seconds) for c in range(clients))
    )
    elapsed = time.monotonic() - started
    return Result(scenario, sum(o[0] for o in outcomes), elapsed, sum(o[1] for o in outcomes))


def tokens_per_input(scenario: Scenario) -> int:
    texts = request_body(scenario, 1)["input"]
    assert isinstance(texts, list)
    return round(sum(count_tokens(t) for t in texts) / len(texts))


def report(results: list[Result], clients: int, seconds: float) -> str:
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; the mock in its own process "
        f"(one uvicorn worker, h11), {clients} concurrent httpx clients on loopback, zero "
        f"latency, {seconds:g} s per scenario; 1-minute load average at the end "
        f"{os.getloadavg()[0]:.1f} (other work on the machine lowers these figures). Command:",
        "",
        "    .venv/bin/python benchmarks/bench_mock_openai.py --write",
        "",
        "| scenario | tokens/input | requests/s | embeddings/s | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.scenario.name} | {tokens_per_input(r.scenario)} | "
            f"{r.requests_per_second:,.0f} | {r.embeddings_per_second:,.0f} | {r.errors} |"
        )
    lines += [
        "",
        "What bounds it: every input is tokenised with cl100k_base to report `usage` exactly "
        "(the same cost for every vector source), then vectors are made: `hash` is ingestd's "
        "HashEmbedder (word and n-gram features; the same space as `provider=hash`), "
        "`token-hash` hashes the token ids already counted and is the choice for capacity runs "
        '(`PATCH /_admin/behaviour {"vectors": "token-hash"}` or `build_behaviour(vectors=...)`). '
        "`float` answers spend most of their time in JSON; the SDK asks for base64 by default "
        "and so does ingestd's client. A benchmark whose embedding rate nears these figures "
        "should run the mock on its own core, with `token-hash`.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str, path: Path = DOC) -> None:
    """Replace (or add) the OpenAI section, leaving every other section as it is."""
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
    server = start_server(port)
    try:
        results = []
        for scenario in SCENARIOS:
            result = await measure(f"http://127.0.0.1:{port}", scenario, args.clients, args.seconds)
            print(
                f"{scenario.name}: {result.requests_per_second:,.1f} req/s, "
                f"{result.embeddings_per_second:,.0f} embeddings/s, {result.errors} errors",
                flush=True,
            )
            results.append(result)
    finally:
        server.terminate()
        server.wait(10)
    section = report(results, args.clients, args.seconds)
    if args.write:
        write_section(section)
    print(section)


if __name__ == "__main__":
    asyncio.run(main())
