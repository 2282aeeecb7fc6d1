#!/usr/bin/env python
"""Memory of ``ingestd serve`` when a 200 MB unsigned body is posted to the LlamaParse webhook.

    python benchmarks/bench_webhook_body.py [--src DIR] [--mb 200]

Starts ``python -m ingestd serve`` (its own embedded PostgreSQL in a temporary home, a webhook
secret configured), reads its resident memory, posts ``--mb`` MB of unsigned junk twice — once
with a ``Content-Length`` header, once chunked (no length) — and reports the answer and the
server's RSS and peak RSS (``VmHWM``) after each. ``--src`` points the server at another
checkout's ``src`` (to measure an older version: ``git archive 15c0bf8 src | tar -x -C
/tmp/base``, then ``--src /tmp/base/src``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHUNK = b"x" * (1024 * 1024)


def memory_mb(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) // 1024
    return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(url + "/health/live", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start")


def post(url: str, megabytes: int, *, chunked: bool) -> str:
    def body() -> Iterator[bytes]:
        for _ in range(megabytes):
            yield CHUNK

    headers = {"content-type": "application/json"}
    if not chunked:
        headers["content-length"] = str(megabytes * len(CHUNK))
    try:
        response = httpx.post(url, content=body(), headers=headers, timeout=300)
    except httpx.HTTPError as exc:  # the server may close the connection mid-upload
        return f"connection ended: {type(exc).__name__}"
    return f"{response.status_code} {response.text[:120]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="ingestd-webhook-bench-") as home:
        os.chmod(home, 0o755)  # the embedded server's own user must reach its data folder
        env = {
            **os.environ,
            "PYTHONPATH": str(args.src),
            "INGESTD_HOME": home,
            "INGESTD_LOG_LEVEL": "WARNING",
            "INGESTD_PARSER__PROVIDER": "llamaparse",
            "INGESTD_PARSER__API_KEY": "llx-bench",
            "INGESTD_PARSER__WEBHOOK_SECRET": "whsec-bench",
        }
        env.pop("INGESTD_DATABASE_URL", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "ingestd", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_ready(url, server)
            report: dict[str, object] = {"idle": memory_mb(server.pid)}
            for chunked in (False, True):
                answer = post(url + "/v1/webhooks/llamaparse", args.mb, chunked=chunked)
                name = "chunked" if chunked else "with_content_length"
                report[name] = {"answer": answer, **memory_mb(server.pid)}
            print(json.dumps(report, indent=2))
        finally:
            server.terminate()
            server.wait(timeout=60)
            subprocess.run(
                [sys.executable, "-m", "ingestd", "db", "stop"],
                env=env,
                check=False,
                capture_output=True,
            )


if __name__ == "__main__":
    main()
