"""benchmarks/bench_blobs.py measures every store on a tiny scenario, so it cannot rot (figures
are not asserted: benchmarks measure, tests check behaviour)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from ingestd.ports import BlobStore

ROOT = Path(__file__).resolve().parents[3]


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_blobs", ROOT / "benchmarks/bench_blobs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_blobs"] = module  # dataclasses look their module up while built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["local", "postgres", "s3"])
def test_a_tiny_run_reports_every_figure(kind: str, make_store: Callable[[str], BlobStore]) -> None:
    bench = load_bench()
    figure = bench.measure(make_store(kind), kind, 5 * 1024, 3)
    assert figure.megabytes == pytest.approx(3 * 5 * 1024 / 1e6)
    assert figure.put_seconds > 0 and figure.get_seconds > 0
    report = bench.report([figure], "python benchmarks/bench_blobs.py --quick")
    assert f"| {kind} | 5 KB | 3 |" in report
