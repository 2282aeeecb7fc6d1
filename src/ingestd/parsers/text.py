"""Plain text and Markdown: decode, normalise line endings, and name the title.

Markdown passes through unchanged apart from line endings. In plain text, "underlined" headings
(a line followed by ``====`` or ``----``) become ``#``/``##`` headings, so the chunker sees the
document's structure; everything else is kept as written.
"""

from __future__ import annotations

import re

from ingestd.parsers.encoding import decode_text
from ingestd.parsers.markdown import MarkdownBuilder, clean_inline, finish_document
from ingestd.ports import ParsedDocument

# Linear in the line length (no nested quantifiers): a 5 MB single line must not backtrack.
_SETEXT_HEADING = re.compile(r"^([^\n]+)\n(=+|-+)[ \t]*$", re.MULTILINE)
_FRONT_MATTER_TITLE = re.compile(r"\A---\n(?:.*\n)*?title:[ \t]*[\"']?(.+?)[\"']?[ \t]*\n", re.M)
_MAX_TITLE_CHARS = 120


def parse_text(data: bytes) -> ParsedDocument:
    """A plain-text file as Markdown (underlined headings become ``#`` headings)."""
    text, encoding = decode_text(data)
    text = _SETEXT_HEADING.sub(_setext_to_atx, _normalise_newlines(text))
    return _document(text, title=_first_line(text), kind="text", encoding=encoding)


def parse_markdown(data: bytes) -> ParsedDocument:
    """A Markdown file, kept as written; the title comes from front matter or the first heading."""
    text, encoding = decode_text(data)
    text = _normalise_newlines(text)
    match = _FRONT_MATTER_TITLE.match(text[:4096])
    return _document(
        text, title=match.group(1) if match else None, kind="markdown", encoding=encoding
    )


def _document(text: str, *, title: str | None, kind: str, encoding: str) -> ParsedDocument:
    builder = MarkdownBuilder()
    builder.paragraph(text)
    del text
    return finish_document(
        builder, title=title, paged=False, metadata={"format": kind, "encoding": encoding}
    )


def _normalise_newlines(text: str) -> str:
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _setext_to_atx(match: re.Match[str]) -> str:
    line = match.group(1)
    starts_block = line.lstrip().startswith(("-", "*", "+", "#", ">", "|"))
    if not line.strip() or starts_block or line.startswith(("    ", "\t")):
        return match.group(0)
    level = "#" if match.group(2).startswith("=") else "##"
    return f"{level} {line.strip()}"


def _first_line(text: str) -> str | None:
    for line in text[:4096].splitlines():
        line = clean_inline(line.lstrip("#"))
        if line:
            return line if len(line) <= _MAX_TITLE_CHARS else None
    return None
