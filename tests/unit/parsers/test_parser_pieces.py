"""The parsers' building blocks: Markdown output, decoding, limits and error translation."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from ingestd.errors import PermanentError
from ingestd.parsers.encoding import decode_text
from ingestd.parsers.limits import ParseLimits
from ingestd.parsers.local import LocalParser
from ingestd.parsers.markdown import MarkdownBuilder, markdown_table
from ingestd.parsers.zipguard import ZipLimits, check_office_container


def _parse(data: bytes, media_type: str, **limits: object) -> str:
    return LocalParser(ParseLimits(**limits)).parse(data, media_type, "x").markdown  # type: ignore[arg-type]


def _code(data: bytes, media_type: str, filename: str = "x", **limits: object) -> str:
    with pytest.raises(PermanentError) as caught:
        LocalParser(ParseLimits(**limits)).parse(data, media_type, filename)  # type: ignore[arg-type]
    return caught.value.code


def test_markdown_table_pads_escapes_and_keeps_overflow() -> None:
    table = markdown_table([["Region"], ["North", "a|b"], ["South", "1", "2"]])
    assert table.splitlines() == [
        "| Region |  |  |",
        "| --- | --- | --- |",
        "| North | a\\|b |  |",
        "| South | 1 | 2 |",
    ]
    # The width comes from the first 100 rows; a wider row later keeps its text in the last cell.
    rows = [["a", "b"]] * 100 + [["x", "y", "z"]]
    assert markdown_table(rows).splitlines()[-1] == "| x | y z |"


def test_builder_tracks_page_starts_including_empty_pages() -> None:
    builder = MarkdownBuilder()
    for page in ("one", "", "three"):
        builder.start_page()
        builder.paragraph(page)
    markdown, starts = builder.build()
    assert builder.page_count == 3
    assert [markdown[start:] for start in starts] == ["three", "three"]


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        ("naïve café".encode(), "naïve café", "utf-8"),
        ("\ufeffbom".encode(), "bom", "utf-8-sig"),
        ("utf16 text".encode("utf-16"), "utf16 text", "utf-16"),
    ],
)
def test_decode_text(data: bytes, text: str, encoding: str) -> None:
    assert decode_text(data) == (text, encoding)


def test_decode_legacy_and_slightly_broken_text() -> None:
    french = ("Le café est très bon à Montréal, où il fait froid. " * 20).encode("cp1252")
    assert decode_text(french) == (french.decode("cp1252"), "cp1252")
    stray = ("mostly valid UTF-8 text " * 100).encode() + b"\xff"
    text, encoding = decode_text(stray)
    assert encoding == "utf-8 (repaired)" and text.endswith("\ufffd")
    with pytest.raises(PermanentError) as caught:
        decode_text(bytes(range(0x80, 0x100)) * 100)
    assert caught.value.code == "parse.invalid_encoding"


def test_text_underlined_headings_become_atx_and_a_huge_line_is_linear() -> None:
    markdown = _parse(b"Title\n=====\n\nbody\n\nPart\n----\nmore\n", "text/plain")
    assert markdown.startswith("# Title\n\nbody\n\n## Part\nmore")
    line = b"word " * 1_000_000  # 5 MB, one line: the heading regex must not backtrack
    assert len(_parse(line, "text/plain")) == len(line) - 1


def test_html_lists_nesting_breaks_and_code() -> None:
    html = (
        b"<html><head><title>T</title></head><body><h2>Head <b>bold</b></h2>"
        b"<p>one<br>two</p><ol><li>first<ul><li>inner</li></ul></li><li>second</li></ol>"
        b"<pre>x = 1\n  y</pre><table><tr><th>A</th><th colspan=2>B</th></tr>"
        b"<tr><td><p>x</p><p>y</p></td><td>1</td><td>2</td></tr></table></body></html>"
    )
    assert _parse(html, "text/html").split("\n\n") == [
        "## Head bold",
        "one\ntwo",
        "1. first\n  - inner\n1. second",
        "```\nx = 1\n  y\n```",
        "| A | B |  |\n| --- | --- | --- |\n| x y | 1 | 2 |",
    ]


def test_html_depth_limit() -> None:
    deep = b"<div>" * 3000 + b"deep text" + b"</div>" * 3000
    assert _parse(deep, "text/html", max_html_depth=5000) == "deep text"
    assert _code(deep, "text/html", max_html_depth=1000) == "parse.too_large"


def test_json_records_become_a_table_and_objects_a_list() -> None:
    records = json.dumps([{"city": "Oslo", "temp": 3}, {"city": "Rome", "temp": 17}]).encode()
    assert _parse(records, "application/json").splitlines()[2] == "| Oslo | 3 |"
    nested = json.dumps({"title": "T", "meta": {"tags": ["a", "b"], "deep": {"k": True}}})
    assert _parse(nested.encode(), "application/json").split("\n\n") == [
        "- title: T",
        "## meta",
        "- tags:\n  - a\n  - b\n- deep:\n  - k: true",
    ]
    assert _code(b'{"a": [1, 2,', "application/json") == "parse.corrupt"
    assert _code(b"[" * 200_000 + b"]" * 200_000, "application/json") == "parse.too_large"


def test_csv_delimiter_is_sniffed() -> None:
    assert _parse(b"a\tb\n1\t2\n", "text/csv").splitlines()[2] == "| 1 | 2 |"
    assert _parse(b'a;b\n"x;y";2\n', "text/csv").splitlines()[2] == "| x;y | 2 |"


def _docx_like(size: int, compressible: bool) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"0" * size if compressible else b"")
    return out.getvalue()


def test_zip_guard_limits() -> None:
    limits = ZipLimits(max_total_uncompressed=10_000_000, ratio_applies_above=1_000_000)
    check_office_container(_docx_like(100_000, True), "DOCX", limits)  # ratio of a small part
    with pytest.raises(PermanentError) as caught:
        check_office_container(_docx_like(5_000_000, True), "DOCX", limits)
    assert caught.value.details["limit"] == "compression_ratio"
    with pytest.raises(PermanentError) as caught:
        check_office_container(_docx_like(20_000_000, True), "DOCX", limits)
    assert caught.value.details["limit"] == "uncompressed_bytes"
    with pytest.raises(PermanentError) as caught:
        check_office_container(b"PK\x03\x04 not really a zip", "DOCX", limits)
    assert caught.value.code == "parse.corrupt"


def test_parser_limits_and_types() -> None:
    assert _code(b"x" * 100, "text/plain", max_bytes=10) == "parse.too_large"
    assert _code(b"\x89PNG\r\n\x1a\n", "image/png") == "parse.unsupported_type"
    assert _code(b"\x00\x01junk", "application/octet-stream", "a.docx") == "parse.corrupt"
    assert _code(b"\x00\x01junk", "application/octet-stream", "a.bin") == "parse.unsupported_type"


def test_library_errors_are_translated_with_their_cause() -> None:
    with pytest.raises(PermanentError) as caught:
        LocalParser().parse(b"PK\x03\x04" + b"\x00" * 100, "application/vnd.ms-excel", "a.xls")
    assert caught.value.code == "parse.unsupported_type"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<w:document><unclosed>")
    broken_docx = out.getvalue()
    with pytest.raises(PermanentError) as caught:
        LocalParser().parse(
            broken_docx,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "a.docx",
        )
    assert caught.value.code == "parse.corrupt"
    assert caught.value.__cause__ is not None
    assert caught.value.details["library_error"]


def test_office_files_without_text_are_empty() -> None:
    import openpyxl
    import pptx

    workbook, buffer = openpyxl.Workbook(), io.BytesIO()
    workbook.save(buffer)
    assert _code(buffer.getvalue(), XLSX) == "parse.empty"
    deck, buffer = pptx.Presentation(), io.BytesIO()
    deck.slides.add_slide(deck.slide_layouts[6])
    deck.save(buffer)
    assert _code(buffer.getvalue(), PPTX) == "parse.empty"


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def test_pptx_groups_untitled_slides_and_reading_order() -> None:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[6])  # blank: no title placeholder
    lower = slide.shapes.add_textbox(Inches(1), Inches(4), Inches(4), Inches(1))
    lower.text_frame.text = "lower text"
    group = slide.shapes.add_group_shape()
    inner = group.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))
    inner.text_frame.text = "grouped upper text"
    buffer = io.BytesIO()
    deck.save(buffer)
    assert _parse(buffer.getvalue(), PPTX).split("\n\n") == [
        "## Slide 1",
        "grouped upper text",
        "lower text",
    ]
