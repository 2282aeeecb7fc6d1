"""benchmarks/bench_vector_rebuild.py runs end to end on a few rows, so it cannot rot (figures
are not asserted: benchmarks measure, tests check behaviour)."""

from __future__ import annotations

import asyncio

from ingestd.db.database import HNSW_M
from tests.factories import load_benchmark


def test_the_rebuild_benchmark_reports_the_rebuild_and_loses_no_row() -> None:
    bench = load_benchmark("bench_vector_rebuild")
    result = asyncio.run(bench.run(300))
    assert result["rebuild"]["action"] == "rebuilt"
    assert result["rebuild"]["old"]["m"] == 16 and result["rebuild"]["new"]["m"] == HNSW_M
    assert result["rows_total"] == result["rows_expected"] >= 2300
    assert result["during"]["search"]["count"] > 0
