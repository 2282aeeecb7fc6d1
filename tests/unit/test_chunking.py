"""The Markdown chunker, the token helpers and chunk ids: sizes, coverage, headings, pages, ids."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestd import tokens
from ingestd.chunking import (
    LONG_RUN_CHARS,
    TOKEN_PIECE_CHARS,
    WINDOW_CHARS,
    MarkdownChunker,
    chunk_id,
    page_at,
)
from ingestd.errors import ConfigurationError
from ingestd.ports import Chunk, Chunker, ParsedDocument

WORDS = [
    "install",
    "guide",
    "linux",
    "kernel",
    "token",
    "chunk",
    "vector",
    "café",
    "naïve",
    "données",
    "東京",
    "déjà",
    "ünïcode",
]


def assert_well_formed(markdown: str, chunks: list[Chunk], limit: int) -> None:
    """The chunker's invariants: within the limit, in order, exact slices, nothing dropped."""
    covered = bytearray(len(markdown))
    previous = -1
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert chunk.text.strip()
        assert chunk.token_count == tokens.count_tokens(chunk.text) <= limit
        assert markdown[chunk.start_offset : chunk.start_offset + len(chunk.text)] == chunk.text
        assert chunk.start_offset >= previous
        previous = chunk.start_offset
        covered[chunk.start_offset : chunk.start_offset + len(chunk.text)] = b"\x01" * len(
            chunk.text
        )
    missed = [i for i, ch in enumerate(markdown) if not ch.isspace() and not covered[i]]
    assert not missed, f"characters at {missed[:5]} are in no chunk"


def generated_markdown(n_chars: int, seed: int) -> str:
    rng = random.Random(seed)
    blocks: list[str] = []
    size = 0
    while size < n_chars:
        roll = rng.random()
        if roll < 0.1:
            block = "#" * rng.randint(1, 4) + " " + " ".join(rng.sample(WORDS, 2))
        elif roll < 0.2:
            block = "\n".join("- " + " ".join(rng.choices(WORDS, k=6)) for _ in range(4))
        elif roll < 0.25:
            block = "| a | b |\n|---|---|\n" + "\n".join(
                f"| {rng.choice(WORDS)} | {rng.randint(0, 999)} |" for _ in range(5)
            )
        else:
            block = " ".join(rng.choices(WORDS, k=rng.randint(10, 120))) + "."
        blocks.append(block)
        size += len(block) + 2
    return "\n\n".join(blocks)


# --- hypothesis: the invariants hold for any Markdown-ish text ---------------------------------

_word = st.sampled_from([*WORDS, "a", "I", "x" * 40, "🎉", "—", "1234567"])
_line = st.lists(_word, min_size=1, max_size=40).map(" ".join)
_block = st.one_of(
    _line,
    st.tuples(st.integers(1, 6), _line).map(lambda t: "#" * t[0] + " " + t[1]),
    st.lists(_line, min_size=1, max_size=5).map(lambda ls: "\n".join("- " + x for x in ls)),
    _line.map(lambda x: f"```\n# {x}\n```"),
    st.text(min_size=0, max_size=300),  # anything: control characters, odd Unicode, surrogates
    st.integers(LONG_RUN_CHARS - 10, LONG_RUN_CHARS + 600).map(lambda n: ("ab1" * n)[:n]),
)
_markdown = st.lists(_block, max_size=25).map("\n\n".join)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markdown=_markdown, limit=st.integers(8, 120), overlap_share=st.floats(0, 0.45))
def test_chunks_stay_within_limit_and_cover_the_text_in_order(
    markdown: str, limit: int, overlap_share: float
) -> None:
    chunker = MarkdownChunker(max_tokens=limit, overlap_tokens=int(limit * overlap_share))
    clean = markdown.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    chunks = chunker.chunk(ParsedDocument(markdown=markdown))
    assert_well_formed(clean, chunks, limit)


@settings(max_examples=25, deadline=None)
@given(markdown=_markdown)
def test_chunking_and_ids_are_deterministic(markdown: str) -> None:
    first = MarkdownChunker(32, 4)
    second = MarkdownChunker(32, 4)  # a fresh instance, as in another process
    doc = ParsedDocument(markdown=markdown)
    one, two = first.chunk(doc), second.chunk(doc)
    assert one == two
    ids = [chunk_id("doc-1", first.version, c.ordinal, c.text) for c in one]
    assert ids == [chunk_id("doc-1", second.version, c.ordinal, c.text) for c in two]
    assert len(set(ids)) == len(ids)


# --- sizes beyond what hypothesis generates --------------------------------------------------


def test_a_long_document_crosses_windows_without_losing_text() -> None:
    markdown = generated_markdown(WINDOW_CHARS * 3, seed=7)
    chunks = MarkdownChunker(64, 8).chunk(ParsedDocument(markdown))
    assert_well_formed(markdown, chunks, 64)
    assert sum(c.token_count for c in chunks) >= tokens.count_tokens(markdown)


@pytest.mark.parametrize(
    "run",
    [
        "q" * (TOKEN_PIECE_CHARS * 2 + 123),  # letters only: one enormous pre-token
        "東京都の天気は晴れです。" * 6_000,  # CJK, no spaces
        "".join(chr(0x1F600 + i % 80) for i in range(20_000)),  # 4-byte characters split by BPE
    ],
    ids=["letters", "cjk", "emoji"],
)
def test_a_single_huge_line_is_cut_by_tokens(run: str) -> None:
    markdown = "# Title\n\nintro words here\n\n" + run + " tail words"
    chunks = MarkdownChunker(100, 10).chunk(ParsedDocument(markdown))
    assert_well_formed(markdown, chunks, 100)
    body = [c for c in chunks if c.start_offset >= markdown.index(run[:5])]
    assert all(c.token_count >= 80 for c in body[:-2]), "chunks of a run are full"
    assert all(c.heading_path == ("Title",) for c in chunks)


def test_hard_limit_caps_the_chunk_size() -> None:
    markdown = generated_markdown(20_000, seed=3)
    chunker = MarkdownChunker(max_tokens=400, overlap_tokens=10, hard_limit_tokens=50)
    chunks = chunker.chunk(ParsedDocument(markdown))
    assert max(c.token_count for c in chunks) <= 50
    assert chunker.max_tokens == 50
    assert chunker.version.endswith(":50:10:cl100k_base:min6")


def test_overlap_repeats_text_between_neighbours() -> None:
    markdown = " ".join(random.Random(1).choices(WORDS, k=3_000))
    chunks = MarkdownChunker(50, 10).chunk(ParsedDocument(markdown))
    assert_well_formed(markdown, chunks, 50)
    pairs = list(itertools.pairwise(chunks))
    overlapping = [a for a, b in pairs if b.start_offset < a.start_offset + len(a.text)]
    assert len(overlapping) >= len(pairs) * 0.9


# --- headings and pages ------------------------------------------------------------------------

CRAFTED = """# Guide

Welcome to the guide.

## Install

Before installing, read this.

### Linux

Run the package manager.

```sh
# this is a shell comment, not a heading
apt install ingestd
```

### Windows ###

Run the installer.

## Use

Upload a document.

# Appendix

Notes.
"""


def test_heading_paths_follow_the_outline() -> None:
    # 12 tokens: every section is its own chunk (a small splitter merges short sections).
    chunks = MarkdownChunker(max_tokens=12, overlap_tokens=0).chunk(ParsedDocument(CRAFTED))
    paths = {c.text.splitlines()[0]: c.heading_path for c in chunks}
    assert paths["# Guide"] == ("Guide",)
    assert paths["## Install"] == ("Guide", "Install")
    assert paths["### Linux"] == ("Guide", "Install", "Linux")
    assert paths["### Windows ###"] == ("Guide", "Install", "Windows")
    assert paths["## Use"] == ("Guide", "Use")
    comment = next(c for c in chunks if "shell comment" in c.text)
    assert comment.heading_path == ("Guide", "Install", "Linux")  # "# this..." is code
    assert chunks[0].start_offset == 0
    assert all(CRAFTED.startswith(c.text, c.start_offset) for c in chunks)


def test_a_merged_chunk_takes_the_path_where_it_starts() -> None:
    chunks = MarkdownChunker(max_tokens=40, overlap_tokens=0).chunk(ParsedDocument(CRAFTED))
    last = chunks[-1]
    assert last.text.startswith("### Windows") and "# Appendix" in last.text
    assert last.heading_path == ("Guide", "Install", "Windows")


def test_text_before_the_first_heading_has_an_empty_path() -> None:
    preface = "Preface words that run long enough to fill a chunk of their own. " * 2
    chunks = MarkdownChunker(16, 0).chunk(ParsedDocument(preface + "\n\n# One\n\nBody."))
    assert chunks[0].heading_path == ()
    assert chunks[-1].heading_path == ("One",)


def test_pages_follow_page_starts() -> None:
    pages = [f"Page {n} text. " + " ".join(["word"] * 60) for n in range(1, 5)]
    markdown = "\n\n".join(pages)
    starts = tuple(markdown.index(f"Page {n} text") for n in range(2, 5))
    doc = ParsedDocument(markdown, page_count=4, page_starts=starts)
    chunks = MarkdownChunker(40, 0).chunk(doc)
    for chunk in chunks:
        match = re.match(r"Page (\d) text", chunk.text)
        if match:
            assert chunk.page == int(match.group(1))
    assert [c.page for c in chunks] == sorted(c.page or 0 for c in chunks)
    assert {c.page for c in chunks} == {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("page_count", "page_starts", "offset", "expected"),
    [
        (None, (), 10, None),
        (1, (), 10, 1),
        (3, (), 10, None),  # pages exist but their offsets are unknown
        (3, (100, 200), 0, 1),
        (3, (100, 200), 99, 1),
        (3, (100, 200), 100, 2),
        (3, (100, 200), 250, 3),
    ],
)
def test_page_at(
    page_count: int | None, page_starts: tuple[int, ...], offset: int, expected: int | None
) -> None:
    doc = ParsedDocument("x", page_count=page_count, page_starts=page_starts)
    assert page_at(doc, offset) == expected


# --- version, ids, settings --------------------------------------------------------------------


def test_empty_and_blank_documents_have_no_chunks() -> None:
    chunker = MarkdownChunker()
    assert chunker.chunk(ParsedDocument("")) == []
    assert chunker.chunk(ParsedDocument(" \n\n\t \n")) == []


def test_the_chunker_implements_the_port() -> None:
    assert isinstance(MarkdownChunker(), Chunker)


def test_version_names_every_setting() -> None:
    versions = {
        MarkdownChunker().version,
        MarkdownChunker(max_tokens=300).version,
        MarkdownChunker(overlap_tokens=0).version,
        MarkdownChunker(hard_limit_tokens=256).version,
    }
    assert len(versions) == 4
    assert MarkdownChunker().version.startswith("md-tok-v1:")
    assert MarkdownChunker(hard_limit_tokens=8191).version == MarkdownChunker().version


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 4}, "at least 8 tokens"),
        ({"max_tokens": 100, "overlap_tokens": 100}, "overlap"),
        ({"overlap_tokens": -1}, "overlap"),
        ({"hard_limit_tokens": 30}, "overlap"),  # 40 tokens of overlap cannot fit in 30
        ({"encoding": "p50k_base"}, "no offline copy"),
    ],
)
def test_impossible_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        MarkdownChunker(**kwargs)  # type: ignore[arg-type]
    assert caught.value.code == "config.invalid"


def test_chunk_id_is_a_pinned_function_of_its_inputs() -> None:
    base = chunk_id("doc-1", "md-tok-v1:400:40:cl100k_base", 0, "hello")
    assert re.fullmatch(r"[0-9a-f]{32}", base)
    assert base == chunk_id("doc-1", "md-tok-v1:400:40:cl100k_base", 0, "hello")
    variants = {
        chunk_id("doc-2", "md-tok-v1:400:40:cl100k_base", 0, "hello"),
        chunk_id("doc-1", "md-tok-v1:300:40:cl100k_base", 0, "hello"),
        chunk_id("doc-1", "md-tok-v1:400:40:cl100k_base", 1, "hello"),
        chunk_id("doc-1", "md-tok-v1:400:40:cl100k_base", 0, "hello!"),
        chunk_id("doc-1", "md-tok-v1:400:40:cl100k_base0", 0, "hello"),  # no concatenation clash
    }
    assert base not in variants and len(variants) == 5
    # Pinned: changing the function would silently change every stored id.
    assert chunk_id("d", "v", 3, "t") == "a6a3a961e670d895ec4b271737f47033"


# --- the token helpers -------------------------------------------------------------------------


def test_count_encode_decode_round_trip() -> None:
    text = "Héllo wörld, 東京! <|endoftext|> is plain text here."
    ids = tokens.encode(text)
    assert tokens.count_tokens(text) == len(ids)
    assert tokens.decode(ids) == text
    assert tokens.count_tokens("") == 0


@pytest.mark.parametrize("n", [0, 1, 3, 7, 20, 1000])
def test_truncate_to_tokens_keeps_whole_characters(n: int) -> None:
    text = "naïve café 東京 🎉🎉 déjà vu " * 20
    cut = tokens.truncate_to_tokens(text, n)
    assert text.startswith(cut)
    assert tokens.count_tokens(cut) <= n
    assert "\ufffd" not in cut
    if tokens.count_tokens(text) <= n:
        assert cut == text
    else:
        assert tokens.count_tokens(cut) >= n - 4  # at most one split character lost


def test_truncate_reads_only_a_prefix_of_a_huge_text() -> None:
    text = "word " * 2_000_000  # 10 MB
    cut = tokens.truncate_to_tokens(text, 8191)
    assert tokens.count_tokens(cut) == 8191


def test_token_offsets_match_tiktoken() -> None:
    text = "héllo 日本語 🎉 wörld\n\n  x" * 30
    encoding = tokens.get_encoding()
    expected = encoding.decode_with_offsets(encoding.encode_ordinary(text))[1]
    assert tokens.token_offsets(text) == expected


def test_only_offline_encodings_load() -> None:
    assert tokens.available_encodings() == ("cl100k_base",)
    assert tokens.get_encoding() is tokens.get_encoding("cl100k_base")
    with pytest.raises(ConfigurationError):
        tokens.get_encoding("o200k_base")


def test_lone_surrogates_do_not_break_offsets() -> None:
    markdown = "# Head\n\nbroken \ud800 text " + "word " * 50
    chunks = MarkdownChunker(16, 0).chunk(ParsedDocument(markdown))
    clean = markdown.replace("\ud800", "\ufffd")
    assert_well_formed(clean, chunks, 16)


class CharCounter:
    """A stand-in for a model tokenizer that counts more finely than cl100k: one per character."""

    name = "chars"

    def count(self, text: str) -> int:
        return len(text)


@settings(max_examples=30, deadline=None)
@given(markdown=_markdown, char_limit=st.integers(40, 400))
def test_a_model_limit_in_its_own_tokens_is_never_exceeded(markdown: str, char_limit: int) -> None:
    clean = markdown.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    chunker = MarkdownChunker(
        max_tokens=64,
        overlap_tokens=8,
        hard_limit_tokens=char_limit,
        hard_limit_counter=CharCounter(),
    )
    chunks = chunker.chunk(ParsedDocument(markdown))
    assert_well_formed(clean, chunks, 64)
    # Halving stops at a single cl100k token, which may be a few characters long.
    assert all(len(c.text) <= char_limit or c.token_count == 1 for c in chunks)
    assert chunker.version.endswith(f":64:8:cl100k_base:min8:max{char_limit}@chars")
