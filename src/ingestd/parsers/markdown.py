"""Building blocks every local parser shares to write Markdown.

``MarkdownBuilder`` collects blocks (headings, paragraphs, list items, tables) in order, keeps the
character offsets where pages start, and joins everything once at the end, so a document's text is
held at most twice (the parts and the joined string). ``markdown_table`` renders rows of cells as a
pipe table; ``clean_inline`` collapses the whitespace of a run of text.

Inside ``char_limit(n)`` every builder stops the parse (``parse.too_large``) as soon as its text
passes ``n`` characters, so a huge document costs the time to write ``n`` characters, not the
time to read all of it. A context variable rather than an argument: the limit then holds for every
format's builder without threading one more parameter through nine parsers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import islice
from typing import Any

from ingestd.errors import PermanentError
from ingestd.parsers.language import guess_language
from ingestd.ports import ParsedDocument

_WHITESPACE = re.compile(r"\s+")
_HEADING_LINE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_MAX_HEADING_CHARS = 300
_WIDTH_SAMPLE_ROWS = 100
_ROWS_PER_PART = 512
_CHAR_LIMIT: ContextVar[int | None] = ContextVar("markdown_char_limit", default=None)


@contextmanager
def char_limit(max_chars: int) -> Iterator[None]:
    """Builders created inside this block stop the parse once their text passes ``max_chars``."""
    token = _CHAR_LIMIT.set(max_chars)
    try:
        yield
    finally:
        _CHAR_LIMIT.reset(token)


def clean_inline(text: str) -> str:
    """Collapse runs of whitespace (newlines included) to one space and trim."""
    return _WHITESPACE.sub(" ", text).strip()


def escape_cell(text: str) -> str:
    """A table cell's text on one line, with pipes escaped so the table keeps its shape."""
    return clean_inline(text).replace("|", "\\|")


def markdown_table(rows: Iterable[Sequence[str]]) -> str:
    """Render rows of cell texts as a Markdown pipe table; the first row is the header.

    Shorter rows are padded; in rows wider than the header, the overflowing cells are joined into
    the last column so no text is lost. ``""`` when there are no rows.
    """
    builder = MarkdownBuilder()
    builder.table(rows)
    return builder.build()[0]


def _table_line(cells: list[str], width: int) -> str:
    if len(cells) > width:
        cells = [*cells[: width - 1], " ".join(cells[width - 1 :])]
    padded = cells + [""] * (width - len(cells))
    return "| " + " | ".join(padded) + " |"


def first_heading(markdown: str) -> str | None:
    """The text of the first ATX heading (``# ...``) in ``markdown``, if any."""
    match = _HEADING_LINE.search(markdown)
    return match.group(2).strip() if match else None


class MarkdownBuilder:
    """Accumulates Markdown blocks in order and remembers where each page after the first starts."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._last_was_item = False
        self._page_starts: list[int] = []
        self._pending_pages = 0  # pages begun whose first block has not arrived yet
        self._pages = 0
        self._blocks = 0
        self._max_chars = _CHAR_LIMIT.get()

    @property
    def page_count(self) -> int:
        return self._pages

    @property
    def content_blocks(self) -> int:
        """How many blocks (headings, paragraphs, items, tables) were written so far."""
        return self._blocks

    def start_page(self) -> None:
        """Mark the start of a new page (slide, sheet); the first call marks page 1 at offset 0."""
        self._pages += 1
        if self._pages > 1:
            self._pending_pages += 1

    def heading(self, text: str, level: int) -> None:
        text = clean_inline(text)[:_MAX_HEADING_CHARS]
        if text:
            self._append("#" * max(1, min(level, 6)) + " " + text, item=False)

    def paragraph(self, text: str) -> None:
        text = text.strip()
        if text:
            self._append(text, item=False)

    def list_item(self, text: str, depth: int = 0, ordered: bool = False) -> None:
        text = clean_inline(text)
        if text:
            marker = "1." if ordered else "-"
            self._append("  " * max(depth, 0) + marker + " " + text, item=True)

    def table(self, rows: Iterable[Sequence[str]]) -> None:
        """Append a pipe table (first row = header), written line by line to bound memory.

        The width is the widest of the first ``_WIDTH_SAMPLE_ROWS`` rows; a later row that is
        wider has its overflowing cells joined into the last column, so no text is lost.
        """
        iterator = iter(rows)
        head = [[escape_cell(cell) for cell in row] for row in islice(iterator, _WIDTH_SAMPLE_ROWS)]
        if not head:
            return
        width = max(max(len(row) for row in head), 1)
        self._append(_table_line(head[0], width), item=False)
        self._write_raw("\n|" + " --- |" * width)
        for cells in head[1:]:
            self._write_raw("\n" + _table_line(cells, width))
        del head
        batch: list[str] = []
        for row in iterator:
            batch.append(_table_line([escape_cell(cell) for cell in row], width))
            if len(batch) == _ROWS_PER_PART:  # one part per batch: less per-object overhead
                self._write_raw("\n" + "\n".join(batch))
                batch.clear()
        if batch:
            self._write_raw("\n" + "\n".join(batch))

    def _write_raw(self, text: str) -> None:
        self._parts.append(text)
        self._length += len(text)
        self._check_length()

    def _check_length(self) -> None:
        if self._max_chars is not None and self._length > self._max_chars:
            raise PermanentError(
                "parse.too_large",
                f"this document has more than {self._max_chars:,} characters of text (the "
                "limit); reading stopped there. Split it into smaller documents",
                limit="chars",
            )

    def code_block(self, text: str, language: str = "") -> None:
        fence = "````" if "```" in text else "```"
        self._append(f"{fence}{language}\n{text.rstrip()}\n{fence}", item=False)

    def build(self) -> tuple[str, tuple[int, ...]]:
        """The joined Markdown and the offsets of pages 2..n (clamped to the text's length)."""
        markdown = "".join(self._parts)
        self._parts = []
        starts = self._page_starts + [len(markdown)] * self._pending_pages
        return markdown, tuple(starts)

    def _append(self, block: str, *, item: bool) -> None:
        if self._parts:
            joined = item and self._last_was_item and not self._pending_pages
            separator = "\n" if joined else "\n\n"
            self._parts.append(separator)
            self._length += len(separator)
        if self._pending_pages:
            self._page_starts.extend([self._length] * self._pending_pages)
            self._pending_pages = 0
        self._parts.append(block)
        self._blocks += 1
        self._length += len(block)
        self._last_was_item = item
        self._check_length()


def finish_document(
    builder: MarkdownBuilder,
    *,
    title: str | None,
    paged: bool,
    metadata: dict[str, Any],
) -> ParsedDocument:
    """Join the builder's Markdown into a ``ParsedDocument``, guessing title and language."""
    markdown, page_starts = builder.build()
    title = clean_inline(title) if title and title.strip() else first_heading(markdown[:100_000])
    return ParsedDocument(
        markdown=markdown,
        page_count=builder.page_count if paged else None,
        title=title or None,
        language=guess_language(markdown),
        page_starts=page_starts if paged else (),
        metadata=metadata,
    )
