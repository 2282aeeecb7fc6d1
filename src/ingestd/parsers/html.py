"""HTML to Markdown with selectolax (lexbor): headings, paragraphs, lists, tables, code.

Scripts, styles and other non-content elements are dropped. The DOM is walked with an explicit
stack, never recursively, so deep documents cannot exhaust Python's stack. lexbor's tree builder
slows down quadratically with nesting depth (100,000 nested ``<div>`` take ~20 s), so the nesting
depth is estimated with a linear scan first and very deep documents are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from selectolax.lexbor import LexborHTMLParser, LexborNode

from ingestd.errors import PermanentError
from ingestd.parsers.encoding import decode_text
from ingestd.parsers.markdown import MarkdownBuilder, clean_inline, finish_document
from ingestd.ports import ParsedDocument

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w-]+)", re.I)
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)[^>]*?(/?)>")
_SKIP = frozenset(
    [
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "math",
        "iframe",
        "object",
        "embed",
        "canvas",
        "head",
        "select",
        "button",
        "input",
        "textarea",
        "audio",
        "video",
        "map",
    ]
)
# Elements that never nest deeply in the DOM even when left open (void or auto-closing).
_FLAT = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "option",
        "optgroup",
        "thead",
        "tbody",
        "tfoot",
        "colgroup",
        "caption",
        "rb",
        "rt",
        "rp",
    ]
)
_BLOCKS = frozenset(
    [
        "p",
        "div",
        "section",
        "article",
        "main",
        "header",
        "footer",
        "aside",
        "nav",
        "blockquote",
        "figure",
        "figcaption",
        "address",
        "dl",
        "dt",
        "dd",
        "center",
        "form",
        "fieldset",
        "details",
        "summary",
        "hr",
        "body",
        "html",
    ]
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_LIST_TAGS = frozenset({"ul", "ol"})
_TABLE_SECTIONS = frozenset({"thead", "tbody", "tfoot"})


def parse_html(data: bytes, *, max_depth: int) -> ParsedDocument:
    """An HTML document as Markdown. Raises ``parse.too_large`` beyond ``max_depth`` nesting."""
    declared = _META_CHARSET.search(data[:4096])
    text, encoding = decode_text(data, declared.group(1).decode("ascii") if declared else None)
    _check_depth(text, max_depth)
    tree = LexborHTMLParser(text)
    del text
    title_node = tree.css_first("title")
    title = title_node.text() if title_node is not None else None
    builder = MarkdownBuilder()
    root = tree.body if tree.body is not None else tree.root
    if root is not None:
        _HtmlWalker(builder).walk(root)
    return finish_document(
        builder, title=title, paged=False, metadata={"format": "html", "encoding": encoding}
    )


def _check_depth(text: str, max_depth: int) -> None:
    if text.count("<") <= max_depth:
        return
    depth = deepest = 0
    for match in _TAG.finditer(text):
        closing, name, self_closing = match.groups()
        if name.lower() in _FLAT or self_closing:
            continue
        depth = max(depth - 1, 0) if closing else depth + 1
        deepest = max(deepest, depth)
    if deepest > max_depth:
        raise PermanentError(
            "parse.too_large",
            f"this HTML nests elements about {deepest} levels deep (limit {max_depth}); real "
            "pages stay far below that, so it is probably generated or hostile",
            limit="html_depth",
        )


class _HtmlWalker:
    """Walks the DOM in document order, writing Markdown blocks as elements open and close."""

    def __init__(self, builder: MarkdownBuilder) -> None:
        self._builder = builder
        self._inline: list[str] = []
        self._lists: list[bool] = []  # one entry per open list: ordered?
        self._item_pending = False

    def walk(self, root: LexborNode) -> None:
        stack: list[tuple[LexborNode, bool]] = [(root, False)]
        while stack:
            node, closing = stack.pop()
            if closing:
                self._close(node.tag or "")
            elif self._open(node):
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(list(_children(node))))
        self._flush()

    def _open(self, node: LexborNode) -> bool:
        """Handle an element's start; True when its children should be walked."""
        tag = node.tag or ""
        if tag == "-text":
            self._inline.append(node.text_content or "")
            return False
        if tag in _SKIP or tag.startswith(("-", "!", "_")):
            return False
        if tag == "br":
            self._inline.append("\n")
            return False
        if tag in _HEADINGS:
            self._flush()
            self._builder.heading(inline_text(node), _HEADINGS[tag])
            return False
        if tag == "table":
            self._flush()
            self._builder.table(_table_rows(node))
            return False
        if tag == "pre":
            self._flush()
            self._builder.code_block(node.text(deep=True))
            return False
        if tag == "img":
            alt = node.attributes.get("alt")
            if alt:
                self._inline.append(f" {alt} ")
            return False
        self._open_container(tag)
        return True

    def _open_container(self, tag: str) -> None:
        if tag in _LIST_TAGS:
            self._flush()
            self._lists.append(tag == "ol")
        elif tag == "li":
            self._flush()
            self._item_pending = True
        elif tag in _BLOCKS:
            self._flush()

    def _close(self, tag: str) -> None:
        if tag in _LIST_TAGS:
            self._flush()
            if self._lists:
                self._lists.pop()
        elif tag == "li" or tag in _BLOCKS:
            self._flush()

    def _flush(self) -> None:
        text = "".join(self._inline)
        self._inline.clear()
        if self._item_pending:
            depth = max(len(self._lists) - 1, 0)
            ordered = bool(self._lists and self._lists[-1])
            self._builder.list_item(text, depth=depth, ordered=ordered)
            self._item_pending = not clean_inline(text)
            return
        lines = [clean_inline(line) for line in text.split("\n")]
        self._builder.paragraph("\n".join(line for line in lines if line))


def _children(node: LexborNode) -> Iterator[LexborNode]:
    child = node.child
    while child is not None:
        yield child
        child = child.next


def inline_text(node: LexborNode) -> str:
    """All text under ``node`` on one line, with spaces where block elements meet."""
    parts: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        tag = current.tag or ""
        if tag == "-text":
            parts.append(current.text_content or "")
            continue
        if tag in _SKIP:
            continue
        if tag in _BLOCKS or tag in ("br", "td", "th", "li", "tr"):
            parts.append(" ")
        stack.extend(reversed(list(_children(current))))
    return clean_inline("".join(parts))


def _table_rows(table: LexborNode) -> Iterator[list[str]]:
    for child in _children(table):
        if child.tag in _TABLE_SECTIONS:
            for row in _children(child):
                if row.tag == "tr":
                    yield _row_cells(row)
        elif child.tag == "tr":
            yield _row_cells(child)


def _row_cells(row: LexborNode) -> list[str]:
    return [inline_text(cell) for cell in _children(row) if cell.tag in ("td", "th")]
