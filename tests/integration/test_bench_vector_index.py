"""benchmarks/bench_vector_index.py runs end to end on a few rows, so it cannot rot (figures are
not asserted: benchmarks measure, tests check behaviour)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    path = ROOT / "benchmarks/bench_vector_index.py"
    spec = importlib.util.spec_from_file_location("bench_vector_index", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_vector_index"] = module
    spec.loader.exec_module(module)
    return module


def test_each_variant_reports_its_insert_cost_and_recall() -> None:
    bench = load_bench()
    results = bench.run(120, ["vector-m16-ef64", "halfvec-m16-ef64", "none"])
    assert [r["variant"] for r in results] == ["vector-m16-ef64", "halfvec-m16-ef64", "none"]
    assert all(r["rows"] == 120 and r["insert_ms_per_row"] > 0 for r in results)
    assert all(r["wal_bytes_per_row"] > 0 for r in results)
    # On 120 rows the graph is small enough for the search to be almost exact.
    assert all(0.5 <= r["recall_at_10"] <= 1.0 for r in results[:2])
    assert results[2]["recall_at_10"] is None
