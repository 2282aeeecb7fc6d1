"""Real ``ingestd`` processes for end-to-end and chaos tests, and waiting on conditions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from ingestd.config import Settings
from tests.conftest import worker_env
from tests.waiting import wait_until


class WorkerProcess:
    """``python -m ingestd worker`` as a subprocess; its JSON log lines go to a file."""

    def __init__(self, settings: Settings, log_dir: Path, *args: str, **env: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingestd", "worker", *args],
            env=worker_env(settings, **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    def saw(self, event: str) -> bool:
        return any(e.get("event") == event for e in self.log_events())

    def worker_id(self) -> str:
        for e in self.log_events():
            if e.get("event") == "worker.started":
                return str(e["worker_id"])
        raise AssertionError("the worker has not started yet")


def run_ingestd(
    settings: Settings, *args: str, timeout: float = 120, prefix: Sequence[str] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m ingestd ARGS`` to completion with ``settings``' environment (plus ``env``);
    output captured as text, the exit code left to the caller."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "ingestd", *args],
        env=worker_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def state_counts(url: str) -> dict[str, int]:
    return dict(query(url, "SELECT state, count(*) FROM jobs GROUP BY state"))  # type: ignore[arg-type]


def all_terminal(url: str, total: int) -> bool:
    rows = query(url, "SELECT count(*) FROM jobs WHERE completed_at IS NOT NULL")
    return rows[0][0] == total


def ensure_killed(*workers: WorkerProcess) -> None:
    """Every worker ended (a stopped one woken to die) and its log file closed."""
    for worker in workers:
        if worker.proc.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
        worker.kill()


class ServeProcess:
    """``python -m ingestd serve`` on a free loopback port, ready once ``/health/ready`` answers."""

    def __init__(self, settings: Settings, log_dir: Path, **env: str) -> None:
        from ingestd.mocks import free_port

        log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"serve-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingestd", "serve", "--port", str(self.port)],
            env=worker_env(settings, **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_until(self._ready, timeout=60, what=f"ingestd serve on {self.url}")

    def _ready(self) -> bool:
        import httpx

        if self.proc.poll() is not None:
            raise AssertionError(f"ingestd serve exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus endpoint's samples: (name, sorted labels) -> value."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def repeated_transitions(url: str) -> list[tuple[Any, ...]]:
    """(job, from, to) of every transition recorded more than once: [] when each stage of each
    job succeeded exactly once."""
    return query(
        url,
        "SELECT job_id, from_state, to_state FROM job_events WHERE kind = 'transition'"
        " GROUP BY 1, 2, 3 HAVING count(*) > 1",
    )
