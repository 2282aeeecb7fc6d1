"""benchmarks/bench_drain.py runs end to end on a tiny backlog, so it cannot rot (figures are
not asserted: benchmarks measure, tests check behaviour)."""

from __future__ import annotations

from pathlib import Path

from tests.factories import load_benchmark


def test_a_tiny_drain_reports_every_figure(tmp_path: Path) -> None:
    bench = load_benchmark("bench_drain")
    corpus = bench.make_corpus("5kb", 4, tmp_path)
    result = bench.run_drain(corpus, 1, name="tiny", top=3)
    assert result.documents == 4
    assert result.megabytes > 0.015
    assert result.docs_per_second > 0 and result.mb_per_second > 0
    assert result.statements_per_doc > 0 and result.commits_per_doc > 0
    assert result.db_ms_per_doc > 0
