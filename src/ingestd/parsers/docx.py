"""DOCX to Markdown with python-docx: headings, lists, paragraphs and tables in body order.

python-docx opens the package (parts, styles, core properties); the body's XML is then walked
directly with lxml, because python-docx's own ``paragraph.text`` and ``paragraph.style`` compile an
XPath expression or search the styles part on every call (10 s for a 1 MB document, against
under 1 s this way). Headings come from the "Title" and "Heading N" styles,
list items from numbering properties or "List ..." styles. Headers, footers, comments and text
boxes are not read. The container is checked against zip bombs before python-docx opens it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import docx
from docx.oxml.ns import qn

from ingestd.parsers.markdown import MarkdownBuilder, finish_document
from ingestd.parsers.zipguard import ZipLimits, check_office_container
from ingestd.ports import ParsedDocument

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)
_LIST_STYLE = re.compile(r"^list\s*(bullet|number|paragraph|continue)?\s*(\d)?$", re.I)
_P = qn("w:p")
_TBL = qn("w:tbl")
_SDT = qn("w:sdt")
_SDT_CONTENT = qn("w:sdtContent")
_NUM_PR = qn("w:numPr")
_PPR = qn("w:pPr")
_TR = qn("w:tr")
_TC = qn("w:tc")
_ILVL = qn("w:ilvl")
_VAL = qn("w:val")
_T = qn("w:t")
_TAB = qn("w:tab")
_BR = qn("w:br")
_CR = qn("w:cr")
_P_STYLE = qn("w:pStyle")
_TEXT_TAGS = (_T, _TAB, _BR, _CR)


def parse_docx(data: bytes, *, zip_limits: ZipLimits) -> ParsedDocument:
    """A Word document as Markdown."""
    check_office_container(data, "DOCX", zip_limits)
    document = docx.Document(io.BytesIO(data))
    styles = {style.style_id: style.name or "" for style in document.styles}
    builder = MarkdownBuilder()
    writer = _DocxWriter(builder, styles)
    for element in _body_blocks(document.element.body):
        writer.write(element)
    title = document.core_properties.title
    del document
    return finish_document(builder, title=title, paged=False, metadata={"format": "docx"})


def _body_blocks(body: Any) -> Iterator[Any]:
    """Paragraphs and tables of the body in order, looking inside content controls."""
    stack = list(reversed(list(body.iterchildren())))
    while stack:
        element = stack.pop()
        if element.tag in (_P, _TBL):
            yield element
        elif element.tag == _SDT:
            content = element.find(_SDT_CONTENT)
            if content is not None:
                stack.extend(reversed(list(content.iterchildren())))


class _DocxWriter:
    def __init__(self, builder: MarkdownBuilder, styles: dict[str, str]) -> None:
        self._builder = builder
        self._styles = styles

    def write(self, element: Any) -> None:
        if element.tag == _TBL:
            self._builder.table(_table_rows(element))
            return
        text = paragraph_text(element)
        if not text.strip():
            return
        style = self._styles.get(_style_id(element), "")
        level = _heading_level(style)
        if level:
            self._builder.heading(text, level)
            return
        list_depth = _list_depth(element, style)
        if list_depth is not None:
            self._builder.list_item(text, depth=list_depth, ordered="number" in style.lower())
        else:
            self._builder.paragraph(text)


def _heading_level(style: str) -> int:
    if style.lower() == "title":
        return 1
    match = _HEADING_STYLE.match(style)
    return min(int(match.group(1)) + 1, 6) if match else 0


def _list_depth(paragraph: Any, style: str) -> int | None:
    """Nesting depth when ``paragraph`` is a list item, else None."""
    properties = paragraph.find(_PPR)
    numbering = properties.find(_NUM_PR) if properties is not None else None
    if numbering is not None:
        level = numbering.find(_ILVL)
        return int(level.get(_VAL, "0")) if level is not None else 0
    match = _LIST_STYLE.match(style)
    if match is None:
        return None
    return int(match.group(2)) - 1 if match.group(2) else 0


def _table_rows(table: Any) -> Iterator[list[str]]:
    for row in table.iterchildren(_TR):
        yield [_cell_text(cell) for cell in row.iterchildren(_TC)]


def _cell_text(cell: Any) -> str:
    return " ".join(paragraph_text(p) for p in cell.iter(_P))


def paragraph_text(paragraph: Any) -> str:
    """The text of a ``w:p``: its runs' text, tabs and line breaks (deleted text excluded)."""
    parts = []
    for node in paragraph.iter(*_TEXT_TAGS):
        if node.tag == _T:
            parts.append(node.text or "")
        else:
            parts.append("\t" if node.tag == _TAB else "\n")
    return "".join(parts)


def _style_id(paragraph: Any) -> str:
    properties = paragraph.find(_PPR)
    style = properties.find(_P_STYLE) if properties is not None else None
    return str(style.get(_VAL, "")) if style is not None else ""
