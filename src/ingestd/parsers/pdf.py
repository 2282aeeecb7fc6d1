"""PDF text layer to Markdown with pypdfium2 (PDFium), one page at a time.

PDFium returns each page's text with a line break after every line, and can tell the font size
and baseline of any character. One look-up per *line* (not per character) is enough to mark lines
in a font clearly larger than the body text as headings, and to start a new paragraph where the
gap between lines is wider than the line spacing. Page boundaries are kept as ``page_starts``.
Scanned PDFs (no text layer) fail as ``parse.empty``: they need OCR (LlamaParse). PDFium is not
thread-safe, so parses in one process take turns (the worker parses in a process pool anyway).
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections import Counter
from dataclasses import dataclass

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]

from ingestd.errors import PermanentError
from ingestd.parsers.limits import DEFAULT_MAX_PDF_INFLATED_BYTES
from ingestd.parsers.markdown import MarkdownBuilder, clean_inline, finish_document
from ingestd.parsers.pdfguard import check_pdf_streams
from ingestd.ports import ParsedDocument

_FIRST_WORD_CHAR = re.compile(r"\w")
_BULLET = re.compile(r"^\s*[\u2022\u25e6\u25aa\u25cf\u25cb\u25a0\u25a1\u2013*-]\s+")
_HEADING_RATIOS = ((1.6, 1), (1.3, 2), (1.15, 3))
_MAX_HEADING_CHARS = 200
_PARAGRAPH_GAP = 1.5  # baseline gap, in font sizes, above which a new paragraph starts
_SAME_COLUMN = 2.0  # points: lines starting closer than this share a left edge
_EOF_TAIL_BYTES = 2048
_PDFIUM = threading.Lock()  # PDFium must not be entered from two threads at once


@dataclass(slots=True)
class _Line:
    text: str
    size: float
    left: float
    baseline: float


def parse_pdf(
    data: bytes, *, max_pages: int, max_inflated_bytes: int = DEFAULT_MAX_PDF_INFLATED_BYTES
) -> ParsedDocument:
    """A PDF's text layer as Markdown, with headings and paragraphs recovered from layout."""
    _check_not_truncated(data)
    check_pdf_streams(data, max_inflated_bytes)
    with _PDFIUM:
        return _parse_locked(data, max_pages)


def _parse_locked(data: bytes, max_pages: int) -> ParsedDocument:
    document = _open(data)
    try:
        page_count = len(document)
        if page_count > max_pages:
            raise PermanentError(
                "parse.too_large",
                f"this PDF has {page_count} pages (limit {max_pages}); split it into parts",
                limit="pages",
            )
        builder = _PdfMarkdown()
        for index in range(page_count):
            builder.add_page(_page_lines(document, index))
        title = document.get_metadata_dict(skip_empty=True).get("Title")
    finally:
        document.close()
    doc = finish_document(builder.markdown, title=title, paged=True, metadata={"format": "pdf"})
    if _FIRST_WORD_CHAR.search(doc.markdown) is None:
        raise PermanentError(
            "parse.empty",
            f"this PDF has {page_count} page(s) but no text layer (a scan or images of text); "
            "run OCR on it first, or use the LlamaParse parser",
        )
    return doc


def _check_not_truncated(data: bytes) -> None:
    if b"%%EOF" not in data[-_EOF_TAIL_BYTES:]:
        raise PermanentError(
            "parse.corrupt",
            "this PDF is incomplete (it has no end-of-file marker): it was probably cut off "
            "during download or upload; get a complete copy and upload it again",
        )


def _open(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise PermanentError(
                "parse.encrypted",
                "this PDF is password-protected; remove the password (for example, print it to "
                "a new PDF) and upload it again",
            ) from exc
        raise PermanentError(
            "parse.corrupt",
            f"this PDF cannot be opened ({exc}); it is damaged or not really a PDF",
        ) from exc


def _page_lines(document: pdfium.PdfDocument, index: int) -> list[_Line]:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            return _lines_of(textpage)
        finally:
            textpage.close()
    finally:
        page.close()


def _lines_of(textpage: pdfium.PdfTextPage) -> list[_Line]:
    text = textpage.get_text_range()
    lines: list[_Line] = []
    offset = 0
    x, y = ctypes.c_double(), ctypes.c_double()
    for raw_line in text.split("\r\n"):
        match = _FIRST_WORD_CHAR.search(raw_line)
        if match is not None:
            char = offset + match.start()
            size = pdfium_c.FPDFText_GetFontSize(textpage.raw, char)
            pdfium_c.FPDFText_GetCharOrigin(textpage.raw, char, x, y)
            lines.append(_Line(raw_line.replace("\x02", "-"), size, x.value, y.value))
        elif raw_line.strip():
            baseline = lines[-1].baseline if lines else 0.0
            lines.append(_Line(raw_line, 0.0, 0.0, baseline))
        offset += len(raw_line) + 2
    return lines


class _PdfMarkdown:
    """Turns a page's lines into headings, list items and paragraphs."""

    def __init__(self) -> None:
        self.markdown = MarkdownBuilder()
        self._sizes: Counter[float] = Counter()

    def add_page(self, lines: list[_Line]) -> None:
        self.markdown.start_page()
        for line in lines:
            if line.size:
                self._sizes[round(line.size * 2) / 2] += len(line.text)
        body = self._sizes.most_common(1)[0][0] if self._sizes else 0.0
        paragraph: list[_Line] = []
        heading: list[str] = []
        heading_level = 0
        for line in lines:
            level = _heading_level(line, body)
            if level != heading_level or (level == 0 and _breaks(paragraph, line)):
                self._emit(paragraph, heading, heading_level)
                paragraph, heading = [], []
            heading_level = level
            if level:
                heading.append(line.text)
            else:
                paragraph.append(line)
        self._emit(paragraph, heading, heading_level)

    def _emit(self, paragraph: list[_Line], heading: list[str], level: int) -> None:
        if heading:
            self.markdown.heading(" ".join(heading), level)
        if not paragraph:
            return
        text = _join_lines([line.text for line in paragraph])
        if _BULLET.match(text):
            self.markdown.list_item(_BULLET.sub("", text, count=1))
        else:
            self.markdown.paragraph(text)


def _heading_level(line: _Line, body: float) -> int:
    if not body or not line.size or len(line.text) > _MAX_HEADING_CHARS:
        return 0
    for ratio, level in _HEADING_RATIOS:
        if line.size >= body * ratio:
            return level
    return 0


def _breaks(paragraph: list[_Line], line: _Line) -> bool:
    """Whether ``line`` starts a new paragraph rather than continuing ``paragraph``."""
    if not paragraph or _BULLET.match(line.text):
        return True
    first, previous = paragraph[0], paragraph[-1]
    if abs(line.size - previous.size) > 0.5:
        return True
    if _BULLET.match(first.text) and abs(line.left - first.left) > _SAME_COLUMN:
        return True  # a list item's wrapped lines start where its text starts
    if len(paragraph) > 1 and abs(line.left - previous.left) > _SAME_COLUMN:
        return True  # wrapped lines share a left edge (only the first may be indented)
    gap = previous.baseline - line.baseline
    return gap < 0 or gap > _PARAGRAPH_GAP * max(line.size, previous.size, 1.0)


def _join_lines(lines: list[str]) -> str:
    """One paragraph from wrapped lines; a hyphen at a line's end joins the next word directly."""
    parts: list[str] = []
    for line in lines:
        line = clean_inline(line)
        if parts and parts[-1].endswith("-") and line[:1].islower():
            parts[-1] += line
        else:
            parts.append(line)
    return " ".join(parts)
