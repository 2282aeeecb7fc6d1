#!/usr/bin/env python
"""Parser throughput, peak memory, isolation overhead and library comparisons.

    python benchmarks/bench_parsers.py [--corpus DIR] [--out docs/benchmarks/parsers.md] [--compare]

Generates the test corpus (small, medium and large sizes; or reuses ``--corpus``), then measures:

- throughput per format: MB/s (and pages/s for paged formats) of ``LocalParser`` in-process;
- peak RSS of parsing the largest document of each format, in a fresh child process each;
- the per-call overhead of ``ParserPool`` (process isolation) for tiny and small documents;
- with ``--compare``: the candidate libraries per format on the same documents (time, and the
  share of the manifest's headings, cells and phrases found in their output).

Writes a Markdown report (with the command, date and machine) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ingestd.parsers.detect import detect_media_type  # noqa: E402
from ingestd.parsers.isolation import ParserPool, parse_in_process  # noqa: E402
from ingestd.parsers.local import LocalParser  # noqa: E402
from ingestd.parsers.testing import EchoParser  # noqa: E402

MB = 1_000_000

_PEAK_RSS = """
import gc, sys, time
from pathlib import Path
from ingestd.parsers.detect import detect_media_type
from ingestd.parsers.local import FORMAT_MODULES, LocalParser
import importlib
for module in FORMAT_MODULES:
    importlib.import_module(module)
path = Path(sys.argv[1])
data = path.read_bytes()
gc.collect()
def peak():  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent process
    lines = open("/proc/self/status").read().splitlines()
    return next(int(l.split()[1]) * 1024 for l in lines if l.startswith("VmHWM"))
base = peak()
started = time.perf_counter()
doc = LocalParser().parse(data, detect_media_type(data, path.name), path.name)
seconds = time.perf_counter() - started
print(base, peak(), seconds, len(doc.markdown))
"""


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_corpus", ROOT / "scripts" / "gen_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_corpus"] = module
    spec.loader.exec_module(module)
    return module


def corpus(path: Path | None) -> tuple[Path, dict[str, Any]]:
    if path is not None and (path / "manifest.json").exists():
        return path, json.loads((path / "manifest.json").read_text())
    root = path or Path(tempfile.mkdtemp(prefix="ingestd-bench-corpus-"))
    print(f"generating the corpus in {root} (about 2 minutes) ...", file=sys.stderr)
    return root, load_generator().generate(root, ["small", "medium", "large"])


def timed(function: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best of ``repeat`` runs (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


# ---- throughput and memory -----------------------------------------------------------------


def throughput(root: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    parser = LocalParser()
    rows = []
    for entry in manifest["documents"]:
        data = (root / entry["file"]).read_bytes()
        media_type = detect_media_type(data, entry["file"])
        repeat = {"small": 5, "medium": 3}.get(entry["size_class"], 1)
        parser.parse(data, media_type, entry["file"])  # warm up imports and caches
        seconds, doc = timed(
            lambda d=data, m=media_type, f=entry["file"]: parser.parse(d, m, f),  # type: ignore[misc]
            repeat,
        )
        rows.append(
            {
                "file": entry["file"],
                "format": entry["format"],
                "size": entry["size_class"],
                "bytes": len(data),
                "seconds": seconds,
                "pages": doc.page_count,
                "chars": len(doc.markdown),
            }
        )
        print(f"  {entry['file']:48} {seconds * 1000:9.1f} ms", file=sys.stderr)
    return rows


def peak_rss(root: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    largest: dict[str, dict[str, Any]] = {}
    for entry in manifest["documents"]:
        if entry["bytes"] > largest.get(entry["format"], {"bytes": -1})["bytes"]:
            largest[entry["format"]] = entry
    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for fmt, entry in largest.items():
        output = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, str(root / entry["file"])],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout.split()
        base, peak, seconds, chars = (
            int(output[0]),
            int(output[1]),
            float(output[2]),
            int(output[3]),
        )
        rows.append(
            {
                "format": fmt,
                "file": entry["file"],
                "bytes": entry["bytes"],
                "chars": chars,
                "seconds": seconds,
                "base_rss": base,
                "peak_rss": peak,
            }
        )
    return rows


async def isolation_overhead(root: Path, manifest: dict[str, Any]) -> dict[str, float]:
    pool = ParserPool()
    started = time.perf_counter()
    await pool.start()
    startup = time.perf_counter() - started
    small = next(
        e for e in manifest["documents"] if e["size_class"] == "small" and e["format"] == "md"
    )
    data = (root / small["file"]).read_bytes()
    parser, echo = LocalParser(), EchoParser()
    results: dict[str, float] = {"pool_start_s": startup, "pool_size": pool.size}
    try:
        for label, call in (
            ("echo_ms", lambda: pool.parse(echo, b"x", "text/plain", timeout=30)),
            (
                "md_isolated_ms",
                lambda: pool.parse(parser, data, "text/markdown", "a.md", timeout=30),
            ),
        ):
            samples = []
            for _ in range(300):
                begun = time.perf_counter()
                await call()
                samples.append(time.perf_counter() - begun)
            results[label] = statistics.median(samples) * 1000
        in_process, _ = timed(lambda: parse_in_process(parser, data, "text/markdown", "a.md"), 300)
        results["md_in_process_ms"] = in_process * 1000
        begun = time.perf_counter()
        await asyncio.gather(
            *(pool.parse(parser, data, "text/markdown", "a.md", timeout=30) for _ in range(1000))
        )
        results["md_concurrent_docs_per_s"] = 1000 / (time.perf_counter() - begun)
    finally:
        pool.close()
    return results


# ---- library comparison --------------------------------------------------------------------


def _score(text: str, entry: dict[str, Any]) -> float:
    text = re.sub(r"\s+", " ", text)
    wanted = entry["headings"] + entry["table_cells"] + entry["phrases"]
    return sum(1 for item in wanted if re.sub(r"\s+", " ", item) in text) / len(wanted)


def _pdfminer(data: bytes) -> str:
    from pdfminer.high_level import extract_text

    return str(extract_text(io.BytesIO(data)))


def _pdfium_plain(data: bytes) -> str:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data)
    return "\n".join(document[i].get_textpage().get_text_range() for i in range(len(document)))


def _mammoth(data: bytes) -> str:
    import mammoth

    from ingestd.parsers.html import parse_html

    html = mammoth.convert_to_html(io.BytesIO(data)).value
    return parse_html(html.encode(), max_depth=10_000).markdown


def _python_docx_api(data: bytes) -> str:
    import docx

    document = docx.Document(io.BytesIO(data))
    parts = [p.text for p in document.paragraphs]
    parts += [c.text for t in document.tables for r in t.rows for c in r.cells]
    return "\n".join(parts)


def _python_pptx(data: bytes) -> str:
    import pptx

    parts = []
    for slide in pptx.Presentation(io.BytesIO(data)).slides:
        for shape in slide.shapes:
            if shape.has_text_frame:
                parts.append(shape.text_frame.text)
            elif getattr(shape, "has_table", False) and shape.has_table:
                parts += [cell.text for row in shape.table.rows for cell in row.cells]
        if slide.has_notes_slide:
            parts.append(slide.notes_slide.notes_text_frame.text)
    return "\n".join(parts)


def _openpyxl(data: bytes) -> str:
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    lines = [ws.title for ws in book.worksheets]
    for sheet in book.worksheets:
        for row in sheet.iter_rows(values_only=True):
            lines.append(" | ".join("" if v is None else str(v) for v in row))
    return "\n".join(lines)


def _lxml_html(data: bytes) -> str:
    import lxml.html

    return str(lxml.html.document_fromstring(data).text_content())


def _ours(data: bytes, media_type: str) -> str:
    return LocalParser().parse(data, media_type, "x").markdown


CANDIDATES: dict[str, list[tuple[str, Callable[[bytes], str]]]] = {
    "pdf": [
        ("pypdfium2 + layout (ours)", lambda d: _ours(d, "application/pdf")),
        ("pypdfium2 plain text", _pdfium_plain),
        ("pdfminer.six extract_text", _pdfminer),
    ],
    "docx": [
        ("lxml iterparse, streaming (ours)", lambda d: _ours(d, detect_media_type(d))),
        ("python-docx API (paragraph.text, cell.text)", _python_docx_api),
        ("mammoth -> HTML -> our HTML converter", _mammoth),
    ],
    "pptx": [
        ("lxml, slide by slide (ours)", lambda d: _ours(d, detect_media_type(d))),
        ("python-pptx API (shapes, text frames, tables)", _python_pptx),
    ],
    "xlsx": [
        ("python-calamine (ours)", lambda d: _ours(d, detect_media_type(d))),
        ("openpyxl read-only", _openpyxl),
    ],
    "html": [
        ("selectolax/lexbor walk (ours)", lambda d: _ours(d, "text/html")),
        ("lxml.html text_content", _lxml_html),
    ],
}


def compare(root: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in manifest["documents"]:
        if entry["format"] not in CANDIDATES or entry["size_class"] == "small":
            continue
        data = (root / entry["file"]).read_bytes()
        for name, function in CANDIDATES[entry["format"]]:
            function(data) if entry["size_class"] == "medium" else None  # warm up
            seconds, text = timed(lambda f=function, d=data: f(d), 1)  # type: ignore[misc]
            rows.append(
                {
                    "format": entry["format"],
                    "size": entry["size_class"],
                    "library": name,
                    "bytes": len(data),
                    "seconds": seconds,
                    "score": _score(text, entry),
                }
            )
            print(f"  {entry['file']:42} {name:45} {seconds:7.2f} s", file=sys.stderr)
    return rows


# ---- report --------------------------------------------------------------------------------


def report(
    command: str,
    tput: list[dict[str, Any]],
    rss: list[dict[str, Any]],
    overhead: dict[str, float],
    comparison: list[dict[str, Any]],
) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "# Parser benchmarks",
        "",
        f"Command: `{command}`  ",
        f"Date: {dt.date.today().isoformat()}  ",
        f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        "shared with other work (figures are indicative; compare rows, not runs).",
        "",
        "Corpus: `scripts/gen_corpus.py` (seeded), sizes small < 100 KB, medium 100 KB-1 MB, "
        "large 1-10 MB. Times are in-process `LocalParser.parse` (best of 5/3/1 runs for "
        "small/medium/large), after a warm-up parse.",
        "",
        "## Throughput per format",
        "",
        "| format | size | file MB | seconds | MB/s | pages | pages/s | Markdown chars |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in tput:
        pages = row["pages"] or 0
        pages_per_s = f"{pages / row['seconds']:.0f}" if pages else ""
        lines.append(
            f"| {row['format']} | {row['size']} | {row['bytes'] / MB:.2f} | {row['seconds']:.3f} "
            f"| {row['bytes'] / MB / row['seconds']:.1f} | {pages or ''} | {pages_per_s} "
            f"| {row['chars']:,} |"
        )
    lines += [
        "",
        "## Peak memory for the largest document of each format",
        "",
        "Each parse runs in a fresh process; *growth* is peak RSS minus the RSS after the "
        "libraries were imported and the file read.",
        "",
        "| format | file MB | Markdown chars | seconds | peak RSS MB | growth MB | growth / file |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rss:
        growth = row["peak_rss"] - row["base_rss"]
        lines.append(
            f"| {row['format']} | {row['bytes'] / MB:.2f} | {row['chars']:,} "
            f"| {row['seconds']:.2f} | {row['peak_rss'] / MB:.0f} | {growth / MB:.0f} "
            f"| {growth / row['bytes']:.1f}x |"
        )
    lines += [
        "",
        "## Process isolation (`ParserPool`)",
        "",
        f"- Pool of {overhead['pool_size']:.0f} processes started (imports included) in "
        f"{overhead['pool_start_s']:.2f} s.",
        f"- Round trip with a parser that does nothing: median {overhead['echo_ms']:.2f} ms.",
        f"- A small Markdown document: {overhead['md_isolated_ms']:.2f} ms isolated against "
        f"{overhead['md_in_process_ms']:.2f} ms in-process (overhead "
        f"{overhead['md_isolated_ms'] - overhead['md_in_process_ms']:.2f} ms).",
        f"- 1,000 such documents submitted at once: {overhead['md_concurrent_docs_per_s']:.0f} "
        "documents/s through the pool.",
    ]
    if comparison:
        lines += [
            "",
            "## Library comparison",
            "",
            "*score*: share of the manifest's headings, table cells and phrases found in the "
            "output (whitespace-normalised).",
            "",
            "| format | size | library | seconds | MB/s | score |",
            "| --- | --- | --- | ---: | ---: | ---: |",
        ]
        for row in comparison:
            lines.append(
                f"| {row['format']} | {row['size']} | {row['library']} | {row['seconds']:.3f} | "
                f"{row['bytes'] / MB / row['seconds']:.2f} | {row['score']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=None, help="reuse (or create) this corpus")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "parsers.md")
    parser.add_argument("--compare", action="store_true", help="also compare candidate libraries")
    args = parser.parse_args()
    root, manifest = corpus(args.corpus)
    print("throughput ...", file=sys.stderr)
    tput = throughput(root, manifest)
    print("peak RSS ...", file=sys.stderr)
    rss = peak_rss(root, manifest)
    print("isolation overhead ...", file=sys.stderr)
    overhead = asyncio.run(isolation_overhead(root, manifest))
    comparison = compare(root, manifest) if args.compare else []
    command = "python benchmarks/bench_parsers.py " + " ".join(sys.argv[1:])
    text = report(command.strip(), tput, rss, overhead, comparison)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
