"""The benchmark suite runs on a tiny scenario, so it cannot rot (figures are not asserted)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.factories import load_benchmark

bench_suite = load_benchmark("bench_suite")


def test_a_tiny_suite_writes_its_report_and_plots(tmp_path: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="ingestd-suite-test-", dir=tmp_path))
    work.chmod(0o755)
    corpus = bench_suite.make_corpus("5kb", 3, work)
    drain = bench_suite.run_drain(corpus, 1, name="5kb")
    through_mock, counters = bench_suite.drain_through_mock(
        corpus, 1, name="5kb", latency_ms=5, max_inputs=8, concurrency=1
    )
    full = bench_suite.fullness(counters, max_inputs=8)
    assert drain.documents == through_mock.documents == 3
    assert counters["requests"] >= 1 and 0 < full["inputs_full"] <= 1
    peer = bench_suite.PeerResult("5kb", 3, drain.megabytes, 9, 1.0, drain.megabytes)
    plots = bench_suite.plot(tmp_path, [drain], [peer])
    text = bench_suite.report(
        tmp_path,
        quick=True,
        drains=[drain],
        peers=[peer],
        latency=[through_mock],
        full=full,
        big=drain,
        plots=plots,
        profile=None,
        seconds=1.0,
    )
    assert (tmp_path / "drain-5kb.png").stat().st_size > 1000
    assert "| 5kb | 1 | 3 |" in text and "LlamaIndex" in text and "scaling efficiency" in text
