"""Chunking and embedding throughput: the MarkdownChunker, and the hash and local embedders.

    .venv/bin/python benchmarks/bench_chunk_embed.py [--quick] [--write]

Chunking: many small generated documents, real Markdown (the Node.js API docs, when the machine
has them under /usr/share/doc/nodejs/api), one 10 MB generated document and three pathological
5 MB single lines; each large case runs in its own process so its peak RSS is its own. The splitter
comparison (semantic-text-splitter vs. hand-written greedy packing) backs
docs/decisions/0003-chunking-and-embedders.md. Embedding: texts/s and tokens/s of ``hash`` and
``local`` on short texts and on chunk-sized texts. ``--write`` replaces
docs/benchmarks/chunking-embedding.md with the results.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import glob
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ingestd import tokens
from ingestd.chunking import MarkdownChunker
from ingestd.ports import ParsedDocument

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "chunking-embedding.md"
NODE_DOCS = "/usr/share/doc/nodejs/api/*.md"
WORDS = [
    "the",
    "install",
    "guide",
    "linux",
    "windows",
    "kernel",
    "package",
    "server",
    "client",
    "token",
    "chunk",
    "embed",
    "vector",
    "search",
    "database",
    "worker",
    "queue",
    "retry",
    "backoff",
    "lease",
    "heading",
    "table",
    "list",
    "paragraph",
    "document",
    "parse",
    "café",
    "naïve",
    "données",
    "東京",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "with",
    "on",
    "as",
]
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]")

Row = dict[str, object]


# -- inputs ------------------------------------------------------------------------------------


def generated_markdown(n_bytes: int, seed: int) -> str:
    """Deterministic Markdown with headings, paragraphs, lists, tables and code blocks."""
    rng = random.Random(seed)
    blocks: list[str] = []
    size = 0
    while size < n_bytes:
        roll = rng.random()
        if roll < 0.08:
            block = "#" * rng.randint(1, 4) + " " + " ".join(rng.choices(WORDS, k=3)).title()
        elif roll < 0.18:
            block = "\n".join(
                "- " + " ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(4)
            )
        elif roll < 0.24:
            rows = [f"| {rng.choice(WORDS)} | {rng.randint(0, 9999)} |" for _ in range(6)]
            block = "| name | value |\n|---|---|\n" + "\n".join(rows)
        elif roll < 0.27:
            lines = [f"x_{i} = compute({rng.randint(0, 999)})" for i in range(rng.randint(2, 15))]
            block = "```python\n" + "\n".join(lines) + "\n```"
        else:
            block = " ".join(rng.choices(WORDS, k=rng.randint(20, 160))) + "."
        blocks.append(block)
        size += len(block.encode()) + 2
    return "\n\n".join(blocks)


def single_line(kind: str, n_chars: int = 5_000_000) -> str:
    rng = random.Random(5)
    if kind == "words":
        return " ".join(rng.choices(WORDS, k=n_chars // 5))[:n_chars]
    if kind == "letters":
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=n_chars))
    return base64.b64encode(rng.randbytes(n_chars * 3 // 4)).decode()


LARGE_CASES: dict[str, Callable[[], str]] = {
    "10 MB Markdown": lambda: generated_markdown(10_000_000, seed=10),
    "5 MB single line, words": lambda: single_line("words"),
    "5 MB single line, letters only": lambda: single_line("letters"),
    "5 MB single line, base64": lambda: single_line("base64"),
}


def node_docs() -> list[str]:
    return [Path(path).read_text() for path in sorted(glob.glob(NODE_DOCS))]


# -- chunking ----------------------------------------------------------------------------------


def run_large_case(name: str) -> Row:
    """In a child process: chunk one large input, report time and this process's peak RSS."""
    text = LARGE_CASES[name]()
    before = _peak_rss_mb()
    chunker = MarkdownChunker()
    started = time.perf_counter()
    chunks = chunker.chunk(ParsedDocument(text))
    seconds = time.perf_counter() - started
    return {
        "case": name,
        "MB": round(len(text.encode()) / 1e6, 1),
        "chunks": len(chunks),
        "seconds": round(seconds, 2),
        "chunks/s": round(len(chunks) / seconds),
        "MB/s": round(len(text.encode()) / 1e6 / seconds, 2),
        "max tokens": max(c.token_count for c in chunks),
        "peak RSS MB (input built)": round(before),
        "peak RSS MB (after chunking)": round(_peak_rss_mb()),
    }


def large_case_in_child(name: str) -> Row:
    out = subprocess.run(
        [sys.executable, __file__, "--case", name], capture_output=True, text=True, check=True
    )
    row: Row = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def bench_many(name: str, docs: list[str]) -> Row:
    chunker = MarkdownChunker()
    started = time.perf_counter()
    count = sum(len(chunker.chunk(ParsedDocument(doc))) for doc in docs)
    seconds = time.perf_counter() - started
    megabytes = sum(len(doc.encode()) for doc in docs) / 1e6
    return {
        "case": name,
        "docs": len(docs),
        "MB": round(megabytes, 2),
        "chunks": count,
        "docs/s": round(len(docs) / seconds),
        "chunks/s": round(count / seconds),
        "MB/s": round(megabytes / seconds, 2),
    }


# -- splitter comparison -------------------------------------------------------------------------


def handwritten_chunks(markdown: str, capacity: int, break_level: int) -> list[tuple[int, str]]:
    """The hand-written alternative: blocks (fenced code atomic, blank-line paragraphs, headings
    alone), packed greedily; a new chunk at every heading of level <= ``break_level``; a block
    above the limit is cut by lines, then by tokens. One tokenizer pass per block."""
    chunks: list[tuple[int, str]] = []
    current: tuple[int, int] | None = None
    used = 0

    def emit(start: int, end: int) -> None:
        text = markdown[start:end]
        if text.strip():
            chunks.append((start + len(text) - len(text.lstrip()), text.strip()))

    for start, end, level in _blocks(markdown):
        count = tokens.count_tokens(markdown[start:end])
        if current and (0 < level <= break_level or used + count + 1 > capacity):
            emit(*current)
            current, used = None, 0
        if count > capacity:
            for piece in _cut_block(markdown, start, end, capacity):
                emit(*piece)
            continue
        current = (current[0], end) if current else (start, end)
        used += count + 1
    if current:
        emit(*current)
    return chunks


def _blocks(markdown: str) -> list[tuple[int, int, int]]:
    blocks: list[tuple[int, int, int]] = []
    start: int | None = None
    fence: str | None = None
    offset = 0
    for line in markdown.splitlines(keepends=True):
        stripped, line_start = line.strip(), offset
        offset += len(line)
        if fence:
            if stripped.startswith(fence):
                fence = None
                blocks.append((start or line_start, offset, 0))
                start = None
            continue
        if stripped.startswith(("```", "~~~")) or not stripped or _HEADING.match(line):
            if start is not None:
                blocks.append((start, line_start, 0))
            start = None
            if stripped.startswith(("```", "~~~")):
                start, fence = line_start, stripped[:3]
            elif stripped:
                blocks.append((line_start, offset, len(stripped.split()[0])))
            continue
        start = line_start if start is None else start
    if start is not None:
        blocks.append((start, len(markdown), 0))
    return blocks


def _cut_block(markdown: str, start: int, end: int, capacity: int) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    offsets = [start + o for o in tokens.token_offsets(markdown[start:end])] + [end]
    for first in range(0, len(offsets) - 1, capacity):
        pieces.append((offsets[first], offsets[min(first + capacity, len(offsets) - 1)]))
    return pieces


def quality(markdown: str, chunks: list[tuple[int, str]], capacity: int) -> dict[str, float]:
    counts = [tokens.count_tokens(text) for _, text in chunks]
    mixed = orphan = code = 0
    for _, text in chunks:
        lines = [line for line in text.splitlines() if line.strip()]
        mixed += any(_HEADING.match(line) for line in lines[1:])
        orphan += bool(lines) and bool(_HEADING.match(lines[-1]))
        code += text.count("```") % 2
    return {
        "chunks": len(chunks),
        "over": sum(c > capacity for c in counts),
        "fill": sum(counts) / len(chunks) / capacity,
        "mixed": mixed / len(chunks),
        "orphan": orphan / len(chunks),
        "split_code": code / len(chunks),
    }


def compare_splitters(docs: list[str], capacity: int = 400) -> list[Row]:
    candidates: dict[str, Callable[[str], list[tuple[int, str]]]] = {
        "semantic-text-splitter (MarkdownChunker, overlap 0)": lambda md: _ours(md, capacity, 0),
        "semantic-text-splitter (MarkdownChunker, overlap 40)": lambda md: _ours(md, capacity, 40),
        "hand-written, new chunk at every heading": lambda md: handwritten_chunks(md, capacity, 6),
        "hand-written, new chunk at H1/H2": lambda md: handwritten_chunks(md, capacity, 2),
        "hand-written, headings ignored": lambda md: handwritten_chunks(md, capacity, 0),
    }
    rows: list[Row] = []
    for name, split in candidates.items():
        started = time.perf_counter()
        results = [(doc, split(doc)) for doc in docs]
        seconds = time.perf_counter() - started
        scores = [quality(doc, chunks, capacity) for doc, chunks in results if chunks]
        total = sum(score["chunks"] for score in scores)

        def weighted(
            key: str, scores: list[dict[str, float]] = scores, total: float = total
        ) -> str:
            return f"{sum(s[key] * s['chunks'] for s in scores) / total:.1%}"

        rows.append(
            {
                "splitter": name,
                "chunks": int(total),
                "chunks/s": round(total / seconds),
                "above limit": int(sum(s["over"] for s in scores)),
                "mean fill": weighted("fill"),
                "chunks holding a 2nd heading": weighted("mixed"),
                "ending on a heading": weighted("orphan"),
                "splitting a code fence": weighted("split_code"),
            }
        )
    return rows


def _ours(markdown: str, capacity: int, overlap: int) -> list[tuple[int, str]]:
    chunks = MarkdownChunker(capacity, overlap).chunk(ParsedDocument(markdown))
    return [(c.start_offset, c.text) for c in chunks]


# -- embedding ---------------------------------------------------------------------------------


def embedding_inputs(quick: bool) -> dict[str, list[str]]:
    rng = random.Random(3)
    short = [" ".join(rng.choices(WORDS, k=12)) for _ in range(2_000 if quick else 10_000)]
    chunker = MarkdownChunker(256, 0)
    doc = generated_markdown(300_000 if quick else 1_000_000, seed=4)
    chunk_texts = [c.text for c in chunker.chunk(ParsedDocument(doc))]
    return {"short (12 words)": short, "chunks (<= 256 tokens)": chunk_texts}


def bench_embedder(name: str, embed: Callable[[list[str]], object], texts: list[str]) -> Row:
    cl100k = sum(tokens.count_tokens(text) for text in texts)
    started = time.perf_counter()
    embed(texts)
    seconds = time.perf_counter() - started
    return {
        "embedder": name,
        "texts": len(texts),
        "seconds": round(seconds, 2),
        "texts/s": round(len(texts) / seconds),
        "cl100k tokens/s": round(cl100k / seconds),
    }


def bench_embedders(quick: bool) -> tuple[list[Row], list[str]]:
    import torch

    from ingestd.embedders.hash import HashEmbedder
    from ingestd.embedders.local import LocalEmbedder

    notes: list[str] = []
    inputs = embedding_inputs(quick)
    hashing = HashEmbedder(256)
    rows = [bench_embedder(f"hash-v1-256, {k}", hashing.embed_sync, v) for k, v in inputs.items()]
    local = LocalEmbedder()
    started = time.perf_counter()
    local.load()
    loading = time.perf_counter() - started
    notes.append(f"local model load (imports and weights): {loading:.1f} s, once per process")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for key, texts in inputs.items():
            sample = texts[: 256 if quick else 512]
            started = time.perf_counter()
            name = f"{local.model} ({threads} torch thread{'s' * (threads > 1)}), {key}"
            row = bench_embedder(name, local.embed_sync, sample)
            seconds = time.perf_counter() - started
            row["word pieces/s"] = round(sum(local.count_tokens(sample)) / seconds)
            rows.append(row)
    torch.set_num_threads(local.num_threads)
    notes.append(_truncation_note(local, inputs["chunks (<= 256 tokens)"]))
    return rows, notes


def _truncation_note(local: object, texts: list[str]) -> str:
    from ingestd.embedders.local import LocalEmbedder

    assert isinstance(local, LocalEmbedder)
    pieces = local.input_token_counter.count_batch(texts)
    cl100k = [tokens.count_tokens(text) for text in texts]
    ratio = sum(pieces) / sum(cl100k)
    over = sum(p > local.max_input_tokens for p in pieces) / len(pieces)
    return (
        f"all-MiniLM-L6-v2 reads {ratio:.2f} word pieces per cl100k token on these chunks; "
        f"{over:.0%} of chunks of <= 256 cl100k tokens exceed its 256-piece limit "
        "(hence `hard_limit_counter`)"
    )


# -- report ------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    headers = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row.get(h, "")) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def report(sections: list[tuple[str, str]], command: str) -> str:
    load = os.getloadavg()
    head = [
        "# Chunking and embedding throughput",
        "",
        f"Measured {dt.date.today().isoformat()} with `{command}` on {platform.platform()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs "
        f"(load average {load[0]:.2f} at the start; the machine is shared, so treat figures "
        "as +-20 %). Chunker settings: 400 tokens, 40 overlap, cl100k_base.",
    ]
    body = [f"\n## {title}\n\n{text}" for title, text in sections]
    notes = [
        "\n## Reading the figures\n",
        "- Chunk counts include overlap; `max tokens` is the largest chunk (the limit is 400).",
        "- Peak RSS is the whole child process (interpreter, numpy, tokenizer, the input text);",
        "  the growth during chunking is the chunks themselves plus one 64 k window.",
        "- Torch threads are process-wide; the local embedder defaults to half the cores. Under",
        "  load (other jobs on the same 2 cores) two threads can be far slower than one.",
        "- Why semantic-text-splitter, and what the comparison columns mean:",
        "  docs/decisions/0003-chunking-and-embedders.md.",
    ]
    return "\n".join(head + body + notes) + "\n"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, no large cases")
    parser.add_argument("--write", action="store_true", help=f"write {DOC.name}")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_large_case(args.case)))
        return
    command = "python benchmarks/bench_chunk_embed.py" + (" --quick" if args.quick else "")
    sections = run_all(args.quick)
    text = report(sections, command)
    print(text)
    if args.write:
        DOC.write_text(text)
        print(f"wrote {DOC}")


def run_all(quick: bool) -> list[tuple[str, str]]:
    small = [generated_markdown(3_000, seed=i) for i in range(200 if quick else 1_000)]
    chunk_rows = [bench_many("small generated docs (~3 KB)", small)]
    real = node_docs()
    if real:
        chunk_rows.append(bench_many("Node.js API docs (real Markdown)", real))
    large = [] if quick else [large_case_in_child(name) for name in LARGE_CASES]
    sections = [("Chunking", table(chunk_rows))]
    if large:
        sections.append(("Large inputs (one process each)", table(large)))
    corpus = real or [generated_markdown(50_000, seed=i) for i in range(20)]
    source = "the Node.js API docs" if real else "generated Markdown"
    comparison = table(compare_splitters(corpus[:16] if quick else corpus))
    sections.append((f"Splitter comparison on {source} (400 tokens)", comparison))
    rows, notes = bench_embedders(quick)
    sections.append(("Embedding", table(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes)))
    return sections


if __name__ == "__main__":
    main()
