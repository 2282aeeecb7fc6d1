"""The Markdown chunker: parsed Markdown -> ordered, token-sized chunks with heading path and page.

``MarkdownChunker`` implements the ``Chunker`` port. Sizes are counted in tokens of the embedding
model's tokenizer (``cl100k_base``, offline, see ``ingestd.tokens``). The semantic splitting is done
by semantic-text-splitter's ``MarkdownSplitter`` (headings, then paragraphs, lists, sentences,
words), sized by our tokenizer, which counts every candidate inside a window from one encoding
of the window (``tokens.SpanCounter``, exact). Around it, three guards keep the promises the
pipeline relies on:

* the text is fed to the splitter in windows of at most ~64k characters, cut at a heading or blank
  line, because the splitter's cost grows faster than linearly within one unbroken block;
* a run of 2,000+ characters without whitespace (base64, a minified blob, one giant "word") is
  cut by tokens directly: it holds no semantic boundary, and the splitter is quadratic on it;
* every chunk is recounted, and one above the limit (it cannot happen today, the check is cheap)
  is re-cut by tokens. No chunk ever exceeds ``min(max_tokens, hard_limit_tokens)``.

The output is a pure function of the Markdown and the settings, so ``version`` names both the
algorithm and every setting; ``chunk_id`` derives stable ids from it. See
docs/decisions/0003-chunking-and-embedders.md for the measurements behind these choices.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import threading
from collections.abc import Iterator
from importlib.metadata import version as package_version
from typing import Protocol

from semantic_text_splitter import MarkdownSplitter

from ingestd import tokens
from ingestd.errors import ConfigurationError
from ingestd.ports import Chunk, ParsedDocument

# A chunk under max_tokens // MIN_CHUNK_FRACTION tokens is joined to its neighbour.
MIN_CHUNK_FRACTION = 8
ALGORITHM = "md-tok-v1"
# Output can change with the splitter's minor version, so it is part of the chunker version.
_SPLITTER_VERSION = "sts" + ".".join(package_version("semantic-text-splitter").split(".")[:2])

WINDOW_CHARS = 64_000
LONG_RUN_CHARS = 2_000
TOKEN_PIECE_CHARS = 32_000
_PIECE_MARGIN = 16

_LONG_RUN = re.compile(rf"(?<!\S)\S{{{LONG_RUN_CHARS},}}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_HEADING_OR_FENCE = re.compile(
    r"^ {0,3}(?:(?P<fence>`{3,}|~{3,})"
    r"|(?P<hashes>#{1,6})(?:[ \t]+(?P<title>.*?))?(?:[ \t]+#+)?[ \t]*$)",
    re.MULTILINE,
)

Span = tuple[int, int]  # [start, end) character offsets in the Markdown


class InputTokenCounter(Protocol):
    """Counts tokens as an embedding model reads them, when its tokenizer is not ``encoding``
    (the local model's word pieces). ``name`` identifies the tokenizer in the chunker version."""

    name: str

    def count(self, text: str) -> int: ...


def chunk_id(document_id: str, chunker_version: str, ordinal: int, text: str) -> str:
    """Deterministic id of a chunk: 32 hex digits (128 bits) of a sha256 over the document id,
    chunker version, ordinal and text, each length-prefixed so no two inputs collide by
    concatenation. PostgreSQL's ``uuid`` type accepts the result as it is."""
    digest = hashlib.sha256()
    for field in (document_id, chunker_version, str(ordinal), text):
        data = field.encode("utf-8", "surrogatepass")
        digest.update(b"%d:" % len(data))
        digest.update(data)
    return digest.hexdigest()[:32]


class MarkdownChunker:
    """Markdown-aware, token-sized chunks with overlap, heading path, page and start offset."""

    def __init__(
        self,
        max_tokens: int = 400,
        overlap_tokens: int = 40,
        encoding: str = tokens.DEFAULT_ENCODING,
        hard_limit_tokens: int | None = None,
        hard_limit_counter: InputTokenCounter | None = None,
    ) -> None:
        """``hard_limit_tokens`` is the embedder's per-input limit. It is counted in ``encoding``
        tokens (and simply lowers ``max_tokens``), or, when ``hard_limit_counter`` is given, in
        that counter's tokens: a chunk the model would truncate is then cut in halves."""
        capacity = max_tokens
        if hard_limit_tokens is not None and hard_limit_counter is None:
            capacity = min(max_tokens, hard_limit_tokens)
        _check_sizes(capacity, overlap_tokens)
        if hard_limit_counter is not None and (hard_limit_tokens or 0) < 8:
            raise ConfigurationError("a hard limit counter needs hard_limit_tokens of 8 or more")
        tokens.get_encoding(encoding)  # fail now, not on the first document
        self.max_tokens = capacity
        self.overlap_tokens = overlap_tokens
        self.encoding = encoding
        # Chunks under this many tokens (a lone heading, a "- [1]:" line) join a neighbour.
        self.min_tokens = max(1, capacity // MIN_CHUNK_FRACTION)
        self.version = (
            f"{ALGORITHM}:{_SPLITTER_VERSION}:{capacity}:{overlap_tokens}:{encoding}"
            f":min{self.min_tokens}"
        )
        self._input_limit: tuple[int, InputTokenCounter] | None = None
        if hard_limit_counter is not None and hard_limit_tokens is not None:
            self._input_limit = (hard_limit_tokens, hard_limit_counter)
            self.version += f":max{hard_limit_tokens}@{hard_limit_counter.name}"
        self._memo = threading.local()
        self._splitter = MarkdownSplitter.from_callback(self._count, capacity, overlap_tokens)

    def _count(self, text: str) -> int:
        """Tokens in ``text``. Within one ``chunk`` call the counts are remembered: the splitter
        asks about the same candidate text again and again (more than half its calls on our
        corpora), and the chunk checks then recount the chunks it returned."""
        cache: dict[str, int] | None = getattr(self._memo, "cache", None)
        if cache is None:
            return tokens.count_tokens(text, self.encoding)
        count = cache.get(text)
        if count is None:
            counter: tokens.SpanCounter | None = self._memo.counter
            if counter is None:
                count = tokens.count_tokens(text, self.encoding)
            else:
                count = counter.count(text)
            cache[text] = count
        return count

    def chunk(self, doc: ParsedDocument) -> list[Chunk]:
        """Split ``doc.markdown``; CPU-bound (about 1 s per MB), so call it off the event loop."""
        markdown = _without_surrogates(doc.markdown)
        headings = HeadingIndex(markdown)
        chunks: list[Chunk] = []
        self._memo.cache = {}  # per thread: chunk() runs in several threads at once
        self._memo.counter = None
        try:
            for start, text, count in self._merged(markdown, self._pieces(markdown)):
                chunks.append(
                    Chunk(
                        ordinal=len(chunks),
                        text=text,
                        token_count=count,
                        heading_path=headings.path_at(start),
                        page=page_at(doc, start),
                        start_offset=start,
                    )
                )
        finally:
            del self._memo.cache
            del self._memo.counter
        return chunks

    def _pieces(self, markdown: str) -> Iterator[tuple[int, str, int]]:
        """(start, text, token count) of each chunk, in order, each within the limit."""
        for start, end, is_long_run in segments(markdown):
            self._memo.cache.clear()  # bounded memory: a segment's texts are never asked again
            # The splitter's candidates are substrings of the window: counted from one encoding.
            self._memo.counter = (
                None if is_long_run else tokens.SpanCounter(markdown[start:end], self.encoding)
            )
            if is_long_run:
                spans: Iterator[Span] = self._token_spans(
                    markdown, start, end, self.max_tokens, self.overlap_tokens
                )
            else:
                spans = self._semantic_spans(markdown, start, end)
            for span_start, span_end in spans:
                yield from self._checked(markdown, span_start, span_end)

    def _merged(
        self, markdown: str, pieces: Iterator[tuple[int, str, int]]
    ) -> Iterator[tuple[int, str, int]]:
        """Join each chunk under ``min_tokens`` with the next one while the joined span fits:
        tiny chunks carry almost no meaning and match queries by accident."""
        held: tuple[int, int, int] | None = None  # start, end, tokens
        for start, text, count in self._in_order(markdown, pieces):
            end = start + len(text)
            if held is not None:
                joined = self._join(markdown, held, (start, end, count))
                if joined is not None:
                    held = joined
                    continue
                yield held[0], markdown[held[0] : held[1]], held[2]
            held = (start, end, count)
        if held is not None:
            yield held[0], markdown[held[0] : held[1]], held[2]

    def _in_order(
        self, markdown: str, pieces: Iterator[tuple[int, str, int]]
    ) -> Iterator[tuple[int, str, int]]:
        """Pieces whose starts never go back. Halving an overlapping piece can step back before
        its predecessor; what it adds there is already covered, so it starts where that did."""
        last = -1
        for start, text, count in pieces:
            if start >= last:
                last = start
                yield start, text, count
            elif start + len(text) > last:
                for piece in self._checked(markdown, last, start + len(text)):
                    last = max(last, piece[0])
                    yield piece

    def _join(
        self, markdown: str, first: tuple[int, int, int], second: tuple[int, int, int]
    ) -> tuple[int, int, int] | None:
        if min(first[2], second[2]) >= self.min_tokens:
            return None
        end = max(first[1], second[1])
        text = markdown[first[0] : end]
        count = self._count(text)
        if count > self.max_tokens or (self._input_limit and self._over_input_limit(text)):
            return None
        return first[0], end, count

    def _semantic_spans(self, markdown: str, start: int, end: int) -> Iterator[Span]:
        for offset, text in self._splitter.chunk_indices(markdown[start:end]):
            if text.strip():
                yield start + offset, start + offset + len(text)

    def _checked(self, markdown: str, start: int, end: int) -> Iterator[tuple[int, str, int]]:
        """The span as a chunk if it is within both limits, else its pieces, recursively (the
        pieces are always shorter)."""
        text = markdown[start:end]
        if not text.strip():
            return
        count = self._count(text)
        if count > self.max_tokens:
            pieces = self._token_spans(markdown, start, end, self.max_tokens, self.overlap_tokens)
        elif count > 1 and self._input_limit and self._over_input_limit(text):
            pieces = self._token_spans(markdown, start, end, max(1, (count + 1) // 2), 0)
        else:
            yield start, text, count
            return
        for piece_start, piece_end in pieces:
            yield from self._checked(markdown, piece_start, piece_end)

    def _over_input_limit(self, text: str) -> bool:
        limit, counter = self._input_limit or (0, None)
        return counter is not None and counter.count(text) > limit

    def _token_spans(
        self, markdown: str, start: int, end: int, capacity: int, overlap: int
    ) -> Iterator[Span]:
        """Cut ``markdown[start:end]`` by tokens into chunks of ``capacity`` sharing ``overlap``.

        The text is encoded a piece at a time (``TOKEN_PIECE_CHARS``), so memory stays bounded on
        a multi-megabyte run; no cut is made within ``_PIECE_MARGIN`` tokens of a piece's
        artificial end, where tokens may differ from those of the whole text."""
        pos = start
        piece_chars = TOKEN_PIECE_CHARS
        while pos < end:
            stop = min(end, pos + piece_chars)
            offsets = [pos + o for o in tokens.token_offsets(markdown[pos:stop], self.encoding)]
            offsets.append(stop)
            index, first = 0, pos
            while pos < stop:
                remaining = len(offsets) - 1 - index
                if stop == end and remaining <= capacity:
                    yield pos, end
                    return
                if stop < end and remaining <= capacity + _PIECE_MARGIN:
                    break
                taken, cut = self._fit(markdown, offsets, index, capacity)
                yield pos, cut
                index = _next_index(offsets, index, taken, overlap)
                pos = offsets[index]
            piece_chars = piece_chars * 2 if pos == first else TOKEN_PIECE_CHARS

    def _fit(self, markdown: str, offsets: list[int], index: int, capacity: int) -> tuple[int, int]:
        """(tokens taken, cut offset) of the longest token-aligned chunk from ``offsets[index]``
        within the limit; re-encoding a cut text can merge differently at the cut, so check."""
        start = offsets[index]
        taken = capacity
        while taken > 1 and (
            offsets[index + taken] <= start
            or self._count(markdown[start : offsets[index + taken]]) > capacity
        ):
            taken -= 1
        return taken, offsets[index + taken]


class HeadingIndex:
    """ATX headings (``#`` to ``######``) outside fenced code, and the heading path at an offset."""

    def __init__(self, markdown: str) -> None:
        self._starts: list[int] = []
        self._paths: list[tuple[str, ...]] = []
        stack: list[tuple[int, str]] = []
        fence: str | None = None
        for match in _HEADING_OR_FENCE.finditer(markdown):
            marker = match.group("fence")
            if marker is not None:
                fence = _toggle_fence(fence, marker)
            elif fence is None:
                level = len(match.group("hashes"))
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, (match.group("title") or "").strip()))
                self._starts.append(match.start())
                self._paths.append(tuple(title for _, title in stack))

    def path_at(self, offset: int) -> tuple[str, ...]:
        """Titles of the headings in effect at ``offset``, outermost first."""
        index = bisect.bisect_right(self._starts, offset) - 1
        return self._paths[index] if index >= 0 else ()


def page_at(doc: ParsedDocument, offset: int) -> int | None:
    """1-based page holding ``offset``; None when the document has no pages."""
    if doc.page_starts:
        return 1 + bisect.bisect_right(doc.page_starts, offset)
    return 1 if doc.page_count == 1 else None


def segments(markdown: str) -> Iterator[tuple[int, int, bool]]:
    """Cover ``markdown`` with (start, end, is_long_run) pieces: runs of ``LONG_RUN_CHARS`` or more
    non-whitespace characters, and windows of at most ``WINDOW_CHARS`` between them."""
    pos = 0
    for match in _LONG_RUN.finditer(markdown):
        yield from _windows(markdown, pos, match.start())
        yield match.start(), match.end(), True
        pos = match.end()
    yield from _windows(markdown, pos, len(markdown))


def _windows(markdown: str, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
    while end - start > WINDOW_CHARS:
        cut = _best_cut(markdown, start + WINDOW_CHARS // 2, start + WINDOW_CHARS)
        yield start, cut, False
        start = cut
    if end > start:
        yield start, end, False


def _best_cut(markdown: str, low: int, high: int) -> int:
    """The strongest boundary in [low, high): a heading, a blank line, a line, a space."""
    for needle in ("\n#", "\n\n", "\n", " "):
        found = markdown.rfind(needle, low, high)
        if found >= low:
            return found + 1
    return high


def _next_index(offsets: list[int], index: int, taken: int, overlap: int) -> int:
    """Index of the token that starts the next chunk: ``overlap`` tokens before the cut, unless
    that would not move forward (a character split across tokens repeats an offset)."""
    following = index + taken
    candidate = following - overlap
    if overlap and candidate > index and offsets[candidate] > offsets[index]:
        return candidate
    while offsets[following] <= offsets[index]:
        following += 1
    return following


def _toggle_fence(open_fence: str | None, marker: str) -> str | None:
    if open_fence is None:
        return marker
    if marker[0] == open_fence[0] and len(marker) >= len(open_fence):
        return None
    return open_fence


def _without_surrogates(text: str) -> str:
    """Lone surrogates (from lenient decoders) become U+FFFD: one character each, offsets hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _check_sizes(capacity: int, overlap: int) -> None:
    if capacity < 8:
        raise ConfigurationError(f"chunks must allow at least 8 tokens, not {capacity}")
    if not 0 <= overlap < capacity:
        raise ConfigurationError(
            f"chunk overlap must be at least 0 and below the chunk size ({capacity} tokens), "
            f"not {overlap}"
        )
