#!/usr/bin/env python
"""What starting an ``ingestd`` process costs: CPU (user + sys) and wall time per command.

    .venv/bin/python benchmarks/bench_startup.py [--runs N] [--home DIR] [--src DIR]

Each command runs ``--runs`` times as a fresh ``python -m ingestd`` subprocess (the way
``ingestd run --processes N`` and the tests start workers); the table gives the median and the
range. ``worker --burst`` runs against an empty, already-started embedded PostgreSQL (JSON logs,
hash embedder, as tests/conftest.py ``worker_env``), so it measures start-up and one empty claim;
"to first claim" is the wall time from spawning the process to its ``worker.started`` line, which
the worker logs just before it claims. ``python -c pass`` is the interpreter's own floor.

Byte code is written and reused (``PYTHONDONTWRITEBYTECODE`` is dropped from the children's
environment): a first warm-up run of every command fills ``__pycache__`` of each ``--src``
(give an exported copy, e.g. ``git archive main src | tar -x -C /tmp/a``, rather than a checkout
someone else works in). ``--src A --src B`` runs the two alternately, command by command.
``python -X importtime`` (not run here) shows where an import's time goes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child_env(home: Path, src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTD_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "PYTHONPATH": str(src),
            "INGESTD_HOME": str(home),
            "INGESTD_EMBEDDER__PROVIDER": "hash",
            "INGESTD_EMBEDDER__DIMENSIONS": "64",
            "INGESTD_LOG_FORMAT": "json",
            "INGESTD_LOG_LEVEL": "INFO",
        }
    )
    return env


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float | None]:
    """(wall seconds, seconds to the worker.started line or None) of one run."""
    started_wall = time.time()
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}:\n{out}")
    first_claim = None
    for line in out.splitlines():
        if line.startswith("{") and '"worker.started"' in line:
            stamp = dt.datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
            first_claim = stamp.timestamp() - started_wall
    return wall, first_claim


def measure(argv: list[str], env: dict[str, str], runs: int) -> dict[str, list[float]]:
    cpu: list[float] = []
    wall: list[float] = []
    claim: list[float] = []
    for _ in range(runs):
        before = os.times()
        w, c = run_once(argv, env)
        after = os.times()
        cpu.append(
            (after.children_user - before.children_user)
            + (after.children_system - before.children_system)
        )
        wall.append(w)
        if c is not None:
            claim.append(c)
    return {"cpu": cpu, "wall": wall, "claim": claim}


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--home", type=Path, help="an ingestd home to reuse (default: a new one)")
    parser.add_argument(
        "--src",
        type=Path,
        action="append",
        help="the ingestd sources to run (default: this checkout's); give it twice for an A/B "
        "comparison, run alternately so both see the same machine",
    )
    args = parser.parse_args()
    sources: list[Path] = args.src or [ROOT / "src"]
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp)
        envs = {src: child_env(home, src) for src in sources}
        py = [sys.executable]
        ingestd = [*py, "-m", "ingestd"]
        first = envs[sources[0]]
        subprocess.run([*ingestd, "db", "start"], env=first, check=True, capture_output=True)
        commands = {
            "python -c pass": [*py, "-c", "pass"],
            "ingestd --help": [*ingestd, "--help"],
            "ingestd worker --help": [*ingestd, "worker", "--help"],
            "ingestd status": [*ingestd, "status"],
            "ingestd worker --burst (empty)": [*ingestd, "worker", "--burst"],
        }
        results: dict[Path, dict[str, dict[str, list[float]]]] = {src: {} for src in sources}
        try:
            for env in envs.values():  # warm-up: byte code, page cache
                for argv in commands.values():
                    measure(argv, env, 1)
            for _ in range(args.runs):
                for name, argv in commands.items():
                    for src, env in envs.items():
                        one = measure(argv, env, 1)
                        into = results[src].setdefault(name, {"cpu": [], "wall": [], "claim": []})
                        for key, values in one.items():
                            into[key] += values
        finally:
            if args.home is None:
                subprocess.run([*ingestd, "db", "stop"], env=first, capture_output=True)
    load = os.getloadavg()
    print(f"{args.runs} runs each; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for src, by_command in results.items():
        print(f"\n{src}\n")
        print("| command | CPU s (user+sys) | wall s | to first claim s |")
        print("|---|---|---|---|")
        for name, r in by_command.items():
            print(f"| `{name}` | {fmt(r['cpu'])} | {fmt(r['wall'])} | {fmt(r['claim'])} |")


if __name__ == "__main__":
    main()
