"""benchmarks/bench_blobs.py measures every store on a tiny scenario, so it cannot rot (figures
are not asserted: benchmarks measure, tests check behaviour)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingestd.ports import BlobStore
from tests.factories import load_benchmark


@pytest.mark.parametrize("kind", ["local", "postgres", "s3"])
def test_a_tiny_run_reports_every_figure(kind: str, make_store: Callable[[str], BlobStore]) -> None:
    bench = load_benchmark("bench_blobs")
    figure = bench.measure(make_store(kind), kind, 5 * 1024, 3)
    assert figure.megabytes == pytest.approx(3 * 5 * 1024 / 1e6)
    assert figure.put_seconds > 0 and figure.get_seconds > 0
    report = bench.report([figure], "python benchmarks/bench_blobs.py --quick")
    assert f"| {kind} | 5 KB | 3 |" in report
