"""Every format of the generated corpus parses to Markdown with its known headings, cells, text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingestd.parsers.detect import detect_media_type
from ingestd.parsers.local import LocalParser
from ingestd.parsers.validate import validate_parsed
from ingestd.ports import ParsedDocument
from tests.unit.parsers.corpus import heading_texts, load_generator, normalise

FORMATS = load_generator().FORMATS
PAGED = {"pdf", "pptx", "xlsx"}


def _entry(corpus: tuple[Path, dict[str, Any]], fmt: str) -> tuple[bytes, dict[str, Any]]:
    root, manifest = corpus
    entry = next(d for d in manifest["documents"] if d["format"] == fmt)
    return (root / entry["file"]).read_bytes(), entry


def _parse(data: bytes, name: str) -> ParsedDocument:
    return LocalParser().parse(data, detect_media_type(data, name), name)


@pytest.mark.parametrize("fmt", FORMATS)
def test_document_parses_to_markdown_with_its_known_content(
    small_corpus: tuple[Path, dict[str, Any]], fmt: str
) -> None:
    data, entry = _entry(small_corpus, fmt)
    assert detect_media_type(data, entry["file"]) == entry["media_type"]
    doc = _parse(data, entry["file"])
    validate_parsed(doc)
    text = normalise(doc.markdown)
    assert set(entry["headings"]) <= heading_texts(doc.markdown)
    assert [cell for cell in entry["table_cells"] if cell not in text] == []
    assert [phrase for phrase in entry["phrases"] if normalise(phrase) not in text] == []
    assert entry["topic"] in text.lower()
    assert doc.language == "en"
    if fmt != "csv":
        assert doc.title == entry["title"]


@pytest.mark.parametrize("fmt", sorted(PAGED))
def test_paged_formats_keep_page_boundaries(
    small_corpus: tuple[Path, dict[str, Any]], fmt: str
) -> None:
    data, entry = _entry(small_corpus, fmt)
    doc = _parse(data, entry["file"])
    assert doc.page_count is not None and doc.page_count >= 2
    assert len(doc.page_starts) == doc.page_count - 1
    assert list(doc.page_starts) == sorted(doc.page_starts)
    assert doc.page_starts[0] > 0 and doc.page_starts[-1] < len(doc.markdown)
    if fmt in ("pptx", "xlsx"):  # every slide and sheet starts with its own heading
        assert all(doc.markdown.startswith("## ", start) for start in doc.page_starts)


def test_html_drops_scripts_and_styles(small_corpus: tuple[Path, dict[str, Any]]) -> None:
    data, entry = _entry(small_corpus, "html")
    markdown = _parse(data, entry["file"]).markdown
    assert "SCRIPT_MARKER" not in markdown
    assert "hidden-style-marker" not in markdown
    assert "| --- |" in markdown  # tables became pipe tables


def test_tables_become_pipe_tables(small_corpus: tuple[Path, dict[str, Any]]) -> None:
    for fmt in ("docx", "pptx", "xlsx", "html", "csv"):
        data, entry = _entry(small_corpus, fmt)
        markdown = _parse(data, entry["file"]).markdown
        header = " | ".join(entry["table_cells"][:2])
        assert f"| {header} |" in markdown, fmt


def test_a_pdf_named_txt_is_detected_and_parsed_as_pdf(
    small_corpus: tuple[Path, dict[str, Any]],
) -> None:
    data, entry = _entry(small_corpus, "pdf")
    assert detect_media_type(data, "notes.txt") == "application/pdf"
    doc = _parse(data, "notes.txt")
    assert entry["title"] in heading_texts(doc.markdown)


def test_the_generator_is_deterministic(tmp_path: Path) -> None:
    generator = load_generator()
    first = generator.generate(tmp_path / "a", ["small"])
    second = generator.generate(tmp_path / "b", ["small"])
    assert first == second
    for entry in first["documents"]:
        name = entry["file"]
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        assert entry["bytes"] < 100_000


def test_the_committed_samples_match_the_generator(tmp_path: Path) -> None:
    from tests.unit.parsers.corpus import ROOT

    manifest = load_generator().generate_demo(tmp_path)
    for entry in manifest["documents"]:
        committed = ROOT / "samples" / entry["file"]
        assert committed.read_bytes() == (tmp_path / entry["file"]).read_bytes(), entry["file"]


def test_pdfs_can_be_parsed_from_several_threads(
    small_corpus: tuple[Path, dict[str, Any]],
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data, entry = _entry(small_corpus, "pdf")
    with ThreadPoolExecutor(4) as pool:
        outputs = set(pool.map(lambda _: _parse(data, entry["file"]).markdown, range(12)))
    assert len(outputs) == 1
