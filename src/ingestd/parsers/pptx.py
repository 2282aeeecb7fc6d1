"""PPTX to Markdown with python-pptx: one section per slide, and each slide is a page.

A slide becomes ``## <slide title>`` (or ``## Slide N`` when it has none), then its shapes in
reading order (top to bottom, left to right): text frames as paragraphs, or as list items when
they come from a body placeholder or are indented; tables as pipe tables; grouped shapes are
opened. Speaker notes follow as a paragraph. The container is checked against zip bombs first.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE, PP_PLACEHOLDER

from ingestd.errors import PermanentError
from ingestd.parsers.markdown import MarkdownBuilder, clean_inline, finish_document
from ingestd.parsers.zipguard import ZipLimits, check_office_container
from ingestd.ports import ParsedDocument

_TITLE_PLACEHOLDERS = frozenset({PP_PLACEHOLDER.TITLE, PP_PLACEHOLDER.CENTER_TITLE})
_LIST_PLACEHOLDERS = frozenset({PP_PLACEHOLDER.BODY, PP_PLACEHOLDER.OBJECT})


def parse_pptx(data: bytes, *, zip_limits: ZipLimits, max_pages: int) -> ParsedDocument:
    """A PowerPoint deck as Markdown, one section (and page) per slide."""
    check_office_container(data, "PPTX", zip_limits)
    presentation = pptx.Presentation(io.BytesIO(data))
    slides = presentation.slides
    if len(slides) > max_pages:
        raise PermanentError(
            "parse.too_large",
            f"this presentation has {len(slides)} slides (limit {max_pages}); split it",
            limit="pages",
        )
    builder = MarkdownBuilder()
    first_title = None
    for number, slide in enumerate(slides, start=1):
        title = _write_slide(builder, slide, number)
        first_title = first_title or title
    title = presentation.core_properties.title or first_title
    if builder.content_blocks == len(slides):  # nothing but the "## Slide N" headings
        raise PermanentError(
            "parse.empty",
            f"this presentation's {len(slides)} slide(s) hold no text (images only?); "
            "OCR needs the LlamaParse parser",
        )
    return finish_document(builder, title=title, paged=True, metadata={"format": "pptx"})


def _write_slide(builder: MarkdownBuilder, slide: Any, number: int) -> str | None:
    """Write one slide; return its title, if it has one."""
    builder.start_page()
    title_shape = slide.shapes.title
    title = clean_inline(title_shape.text_frame.text) if title_shape is not None else ""
    builder.heading(title or f"Slide {number}", 2)
    title_id = title_shape.shape_id if title_shape is not None else None
    for shape in _reading_order(slide.shapes):
        if shape.shape_id != title_id:  # python-pptx returns a new proxy object on every access
            _write_shape(builder, shape)
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        if notes is not None and notes.text.strip():
            builder.paragraph("Notes: " + notes.text.strip())
    return title or None


def _reading_order(shapes: Any) -> Iterator[Any]:
    """Shapes top to bottom, left to right, with the members of groups in place of the group."""
    ordered = sorted(shapes, key=lambda shape: (shape.top or 0, shape.left or 0))
    for shape in ordered:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _reading_order(shape.shapes)
        else:
            yield shape


def _write_shape(builder: MarkdownBuilder, shape: Any) -> None:
    if getattr(shape, "has_table", False) and shape.has_table:
        builder.table([cell.text for cell in row.cells] for row in shape.table.rows)
        return
    if not getattr(shape, "has_text_frame", False) or not shape.has_text_frame:
        return
    as_list = _is_list_placeholder(shape)
    for paragraph in shape.text_frame.paragraphs:
        text = clean_inline(paragraph.text)
        if not text:
            continue
        if as_list or paragraph.level > 0:
            builder.list_item(text, depth=paragraph.level)
        else:
            builder.paragraph(text)


def _is_list_placeholder(shape: Any) -> bool:
    if not shape.is_placeholder:
        return False
    try:
        return shape.placeholder_format.type in _LIST_PLACEHOLDERS
    except ValueError:
        return False
