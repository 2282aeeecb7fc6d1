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
    through_mock = bench_suite.run_drain(
        corpus,
        1,
        name="5kb",
        embedder="openai-mock",
        latency_ms=5,
        max_inputs=8,
        embed_concurrency=1,
    )
    assert drain.documents == through_mock.documents == 3
    assert through_mock.embed_requests >= 1 and 0 < through_mock.inputs_full <= 1
    assert 0 < through_mock.tokens_full <= 1 and through_mock.worker_cpu_ms_per_doc > 0
    peer = bench_suite.PeerResult("5kb", 3, drain.megabytes, 9, 1.0, drain.megabytes)
    plots = bench_suite.plot(tmp_path, [drain], [peer])
    text = bench_suite.report(
        tmp_path,
        quick=True,
        drains=[drain],
        peers=[peer],
        latency=[through_mock],
        full=through_mock,
        big=drain,
        plots=plots,
        profile=None,
        seconds=1.0,
    )
    assert (tmp_path / "drain-5kb.png").stat().st_size > 1000
    assert "| 5kb | 1 | 3 |" in text and "LlamaIndex" in text and "scaling efficiency" in text
    assert "by tokens" in text
