"""The benchmark suite runs on a tiny scenario, so it cannot rot (figures are not asserted)."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
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
    # the CPU accounting: the workers' start-up is measured and taken out (on three documents
    # the start-up is most of a worker's CPU and its spread can swallow the rest: at least 0),
    # the server's is counted
    assert 0 <= drain.worker_busy_cpu_ms_per_doc < drain.worker_cpu_ms_per_doc
    assert drain.worker_startup_cpu_ms > 0 and drain.db_cpu_ms_per_doc > 0
    assert through_mock.mock_cpu_ms_per_doc > 0
    assert bench_suite.drain_ceiling(drain) > 0 and bench_suite.cores_used(drain) > 0
    python = bench_suite.ensure_peer_venv()
    peer = bench_suite.run_peer(python, corpus, "5kb")
    assert peer.documents == 3 and peer.nodes >= 3 and peer.mb_per_second > 0
    assert peer.cpu_ms_per_doc > 0 and peer.db_cpu_ms_per_doc > 0
    assert peer.process_cpu_seconds * 1000 > peer.cpu_ms_per_doc * 3  # imports are outside
    two = bench_suite.DrainResult(**{**asdict(drain), "workers": 2})
    plots = bench_suite.plot(tmp_path, [drain, two], [peer])
    text = bench_suite.report(
        tmp_path,
        quick=True,
        drains=[drain, two],
        peers=[peer],
        latency=[through_mock, bench_suite.DrainResult(**{**asdict(through_mock), "workers": 8})],
        full=through_mock,
        big=drain,
        plots=plots,
        profile=None,
        seconds=1.0,
    )
    assert (tmp_path / "drain-5kb.png").stat().st_size > 1000
    assert "| 5kb | 1 | 3 |" in text and "LlamaIndex" in text and "scaling efficiency" in text
    assert "by tokens" in text and "CPU ceiling MB/s" in text
    assert "### What bounds each figure" in text and "The LlamaIndex peer spent" in text
    # every target is a row, with a verdict from the figures (the 100 KB corpus was not run)
    rows = {r.name: r for r in bench_suite.targets([drain, two], [peer], [], through_mock, drain)}
    assert len(rows) == 9
    one_vs_peer = rows["one worker, 5kb corpus: ≥ 3x the LlamaIndex peer's MB/s"]
    assert one_vs_peer.met == (drain.mb_per_second_busy >= 3 * peer.mb_per_second)
    assert one_vs_peer.reachable.startswith(("yes: ceiling", "no: ceiling"))
    assert rows["two processes, 100kb corpus: ≥ 4.5 MB/s"].met is None
    assert rows["peak RSS < 500 MB on a 10 MB document"].met is (drain.peak_rss_mb < 500)
    assert "| peak RSS < 500 MB on a 10 MB document | 500 MB |" in text


def test_the_targets_against_the_ceiling() -> None:
    """A target above the CPU ceiling is said to be so, by how much; one below, within it."""
    assert bench_suite.reachable(3.0, 1.5, "MB/s").startswith("no: ceiling 1.50 MB/s (2.0x")
    assert bench_suite.reachable(1.0, 2.0, "MB/s") == "yes: ceiling 2.00 MB/s (50% of it)"
    assert bench_suite.reachable(1.0, None, "MB/s") == "-"
