"""``make bench``: every benchmark, each writing its figures under docs/benchmarks/.

    python benchmarks/run_all.py [--quick]

Benchmarks measure and report; tests assert behaviour. Run on a quiet machine: the figures are
only as good as the load average each report records.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES: list[tuple[str, list[str], list[str]]] = [
    # (script, full arguments, --quick arguments)
    ("bench_suite.py", ["--profile"], ["--quick", "--no-peer"]),
    (
        "bench_pipeline.py",
        ["--documents", "1000", "--repeat", "2"],
        ["--documents", "300", "--repeat", "1"],
    ),
    ("bench_remote_pipeline.py", ["--documents", "50"], ["--documents", "10"]),
    ("bench_pipeline_memory.py", [], []),
    ("bench_api.py", ["--write"], ["--small", "100", "--large", "8", "--seconds", "5"]),
    ("bench_chunk_embed.py", ["--write"], ["--quick", "--write"]),
    ("bench_local_embedder.py", ["--write"], ["--quick"]),
    ("bench_parsers.py", [], []),
    ("bench_mock_openai.py", ["--write"], ["--seconds", "2", "--write"]),
    ("bench_mock_llamaparse.py", ["--write"], ["--seconds", "2", "--write"]),
    ("bench_blobs.py", ["--write"], ["--quick", "--write"]),
    ("bench_ready.py", ["--write"], ["--requests", "3", "--concurrent", "5"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Smaller runs, for a smoke test.")
    args = parser.parse_args()
    failed = []
    # a smoke run's report never replaces the committed RESULTS.md and its plots
    scratch = Path(tempfile.mkdtemp(prefix="ingestd-bench-quick-"))
    for script, full, quick in BENCHES:
        extra = ["--out", str(scratch)] if args.quick and script == "bench_suite.py" else []
        argv = [sys.executable, str(HERE / script), *(quick if args.quick else full), *extra]
        print(f"== {script}", flush=True)
        started = time.monotonic()
        if subprocess.run(argv, check=False).returncode != 0:
            failed.append(script)
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
