"""Local embedder throughput: all-MiniLM-L6-v2 on torch vs ONNX Runtime, threads x batch size.

    .venv/bin/python benchmarks/bench_local_embedder.py [--quick] [--write] [--texts N]

Inputs are real Markdown (this repository's docs/, chunked as the pipeline chunks for the local
model: <= 200 cl100k tokens and <= 256 word pieces; and the same docs in 512-token chunks, of
which the model reads its first 256 word pieces). For each backend, thread count and batch size
it reports chunks/s, and the ratio to torch at the same threads and batch size; then how close the
ONNX vectors are to the torch ones (cosine of every chunk) and whether top-k search results over
the chunks agree for a set of queries. The runs alternate between backends so that a change in the
machine's load hits both. ``--write`` replaces docs/benchmarks/local-embedder.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ingestd.chunking import MarkdownChunker
from ingestd.embedders.local import LocalEmbedder, TorchEncoder, resolve_model_path
from ingestd.embedders.local_onnx import OnnxEncoder, ensure_onnx_model
from ingestd.ports import ParsedDocument

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks" / "local-embedder.md"
QUERIES = [
    "how do workers claim jobs and renew their lease",
    "embedded PostgreSQL security and passwords",
    "retry with exponential backoff after a transient error",
    "chunk size and overlap of the Markdown chunker",
    "rate limits and 429 responses from the embedding API",
    "where are uploaded files stored",
    "benchmark results compared with LlamaIndex",
    "PDF parsing of encrypted documents",
]
TOP_K = 5
Row = dict[str, object]
Encode = Callable[[list[str], int], np.ndarray]


def markdown_docs() -> list[str]:
    return [path.read_text() for path in sorted((ROOT / "docs").rglob("*.md"))]


def chunk_sets(embedder: LocalEmbedder, count: int) -> dict[str, list[str]]:
    """Two chunk shapes of the same Markdown, ``count`` chunks each, spread over the docs."""
    docs = markdown_docs()
    pipeline = MarkdownChunker(
        max_tokens=200,
        overlap_tokens=20,
        hard_limit_tokens=embedder.max_input_tokens,
        hard_limit_counter=embedder.input_token_counter,
    )
    large = MarkdownChunker(max_tokens=512, overlap_tokens=0)
    sets = {}
    for name, chunker in (("pipeline chunks", pipeline), ("512-token chunks", large)):
        texts = [c.text for doc in docs for c in chunker.chunk(ParsedDocument(doc))]
        step = max(1, len(texts) // count)
        sets[name] = texts[::step][:count]
    return sets


def timed(encode: Encode, texts: list[str], batch_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared machine the CPU time is the
    steadier measure of the work, the wall time what a worker sees."""
    started, cpu_started = time.perf_counter(), time.process_time()
    encode(texts, batch_size)
    return time.perf_counter() - started, time.process_time() - cpu_started


def bench_speed(
    model_path: Path,
    onnx_path: Path,
    texts: list[str],
    threads: list[int],
    batches: list[int],
    repeats: int,
) -> list[Row]:
    import torch

    rows: list[Row] = []
    torch_encoder = TorchEncoder(model_path, "cpu", 1)
    for count in threads:
        torch.set_num_threads(count)
        onnx_encoder = OnnxEncoder(onnx_path, model_path, count)
        onnx_encoder.encode(texts[:2], 2)  # the session's first run allocates
        for batch in batches:
            best: dict[str, tuple[float, float]] = {}
            for _ in range(repeats):  # alternating, so a change of load hits both
                for backend, encoder in (("torch", torch_encoder), ("onnx", onnx_encoder)):
                    wall, cpu = timed(encoder.encode, texts, batch)
                    old = best.get(backend, (wall, cpu))
                    best[backend] = (min(wall, old[0]), min(cpu, old[1]))
            for backend, (wall, cpu) in best.items():
                rows.append(
                    {
                        "backend": backend,
                        "threads": count,
                        "batch": batch,
                        "chunks": len(texts),
                        "chunks/s": round(len(texts) / wall, 1),
                        "x torch": round(best["torch"][0] / wall, 2),
                        "chunks per CPU s": round(len(texts) / cpu, 1),
                        "x torch (CPU)": round(best["torch"][1] / cpu, 2),
                        "load": round(os.getloadavg()[0], 2),
                    }
                )
    return rows


def agreement(model_path: Path, onnx_path: Path, texts: list[str]) -> Row:
    """Cosine of every chunk's ONNX vector to its torch vector, and top-k agreement."""
    torch_encoder = TorchEncoder(model_path, "cpu", 1)
    onnx_encoder = OnnxEncoder(onnx_path, model_path, 1)
    reference = torch_encoder.encode(texts, 16)
    candidate = onnx_encoder.encode(texts, 16)
    cosines = (reference * candidate).sum(axis=1)
    same_top = 0
    for query_ref, query_new in zip(
        torch_encoder.encode(QUERIES, 16), onnx_encoder.encode(QUERIES, 16), strict=True
    ):
        top_ref = np.argsort(-(reference @ query_ref))[:TOP_K].tolist()
        top_new = np.argsort(-(candidate @ query_new))[:TOP_K].tolist()
        same_top += top_ref == top_new
    return {
        "chunks": len(texts),
        "min cosine": f"{cosines.min():.6f}",
        "mean cosine": f"{cosines.mean():.6f}",
        "max abs difference": f"{np.abs(reference - candidate).max():.2e}",
        f"queries with the same top {TOP_K} (in order)": f"{same_top}/{len(QUERIES)}",
    }


def table(rows: list[Row]) -> str:
    headers = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row.get(h, "")) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def report(sections: list[tuple[str, str]], command: str, load: float, notes: list[str]) -> str:
    head = [
        "# Local embedder: torch vs ONNX Runtime",
        "",
        f"Measured {dt.date.today().isoformat()} with `{command}` on {platform.platform()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs (load average {load:.2f} "
        "at the start; the machine is shared, so compare the ratios of one run rather than "
        "absolute figures across runs). Model all-MiniLM-L6-v2 (384 dimensions, 256 word "
        "pieces), the chunks of this repository's docs/.",
    ]
    body = [f"\n## {title}\n\n{text}" for title, text in sections]
    tail = ["\n## Notes\n", *(f"- {note}" for note in notes)]
    return "\n".join(head + body + tail) + "\n"


def run(
    texts_per_case: int, threads: list[int], batches: list[int], cache: Path, repeats: int = 1
) -> tuple[list[tuple[str, str]], list[str]]:
    embedder = LocalEmbedder()
    model_path = resolve_model_path("all-MiniLM-L6-v2")
    reused = any(cache.glob("*/model.onnx"))
    started = time.perf_counter()
    onnx_path = ensure_onnx_model(model_path, cache, "all-MiniLM-L6-v2")
    export_seconds = time.perf_counter() - started
    sets = chunk_sets(embedder, texts_per_case)
    sections: list[tuple[str, str]] = []
    for name, texts in sets.items():
        pieces = embedder.count_tokens(texts)
        title = f"Throughput, {name} (mean {np.mean(pieces):.0f} word pieces read)"
        rows = bench_speed(model_path, onnx_path, texts, threads, batches, repeats)
        sections.append((title, table(rows)))
    agreements = [
        {"chunks of": name, **agreement(model_path, onnx_path, texts)}
        for name, texts in sets.items()
    ]
    sections.append(("ONNX vs torch vectors", table(agreements)))
    export = "an earlier export found in the cache" if reused else "exported and checked"
    notes = [
        f"ONNX model ({export}): {export_seconds:.1f} s, once per machine (under `<home>/models`)",
        f"Each row is the best of {repeats} runs, alternating torch and onnx. `x torch` is "
        "torch's time over this row's at the same threads and batch size; `chunks per CPU s` "
        "counts this process's CPU time (all its threads), the steadier figure when other "
        "jobs share the cores.",
        "Top-k: cosine search over the chunks of each set, queries and chunks both embedded by "
        "the same backend.",
    ]
    return sections, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few chunks, one thread")
    parser.add_argument("--write", action="store_true", help=f"write {DOC.name}")
    parser.add_argument("--texts", type=int, default=64, help="chunks per case")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row (the best counts)")
    parser.add_argument("--cache", type=Path, help="where the ONNX export goes (default: temp)")
    args = parser.parse_args()
    threads, batches = ([1], [4]) if args.quick else ([1, 2], [8, 16, 64])
    texts = 8 if args.quick else args.texts
    command = "python benchmarks/bench_local_embedder.py" + " --quick" * args.quick
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as temporary:
        cache = args.cache or Path(temporary)
        sections, notes = run(texts, threads, batches, cache, 1 if args.quick else args.repeats)
    text = report(sections, command, load, notes)
    print(text)
    if args.write:
        DOC.write_text(text)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
