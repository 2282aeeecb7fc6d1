"""SpanCounter: token counts of a window's substrings from one encoding of the window must equal
encoding each substring (``len(encode_ordinary(text))``), for every substring of every text."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestd import tokens
from ingestd.chunking import MarkdownChunker
from ingestd.ports import ParsedDocument
from tests.factories import load_benchmark, markdown_document

ENCODING = tokens.get_encoding()

# Fragments that stress the piece pattern: whitespace runs before words and line breaks, CRLF,
# digit runs (split by threes), contractions in both cases (and the long s, which folds to "s"),
# punctuation runs, non-ASCII whitespace, letters, digits, marks and symbols, emoji with joiners.
FRAGMENTS = [
    "a",
    "word",
    " word",
    "  ",
    "   ",
    " ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    " \n ",
    "\x0b",
    "\x0c",
    "\x1c",
    "1",
    "12",
    "1234567",
    "'",
    "'s",
    "'S",
    "'ll",
    "'LL",
    "'ve",
    "'Re",
    "'d",
    "'M",
    "'t",
    "'x",
    "\u017f",
    "'\u017f",
    "don't",
    ".",
    "...",
    "!?",
    "#",
    "##",
    "- ",
    "|",
    "`",
    "```",
    "$",
    "é",
    "e\u0301",
    "\u0301",
    "京東",
    "\u00a0",
    "\u2028",
    "\x85",
    "\u3000",
    "\u200b",
    "\ufeff",
    "٣",
    "²",
    "Ⅻ",
    "👍",
    "👩\u200d💻",
    "🇫🇷",
    "αβγ",
    "Привет",
    "مرحبا",
]

adversarial_text = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=120).map("".join)
unicode_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=400
)


def _realistic(seed: int, size: int) -> str:
    rng = random.Random(seed)
    if rng.random() < 0.5:
        generated: str = load_benchmark("bench_chunk_embed").generated_markdown(size, seed)
        return generated
    return markdown_document(seed % 1000, paragraphs=1 + size // 800, seed=seed)


def _check_substrings(window: str, rng: random.Random, samples: int) -> tokens.SpanCounter:
    counter = tokens.SpanCounter(window)
    for _ in range(samples):
        a = rng.randrange(len(window) + 1)
        b = rng.randrange(a, len(window) + 1)
        if rng.random() < 0.3:  # the splitter's habit: many candidates from the same start
            b = min(len(window), a + rng.randrange(1, 400))
        text = window[a:b]
        assert counter.count(text) == len(ENCODING.encode_ordinary(text)), (window, a, b)
    return counter


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.integers(200, 6_000))
def test_realistic_markdown_substrings_count_exactly_and_fast(seed: int, size: int) -> None:
    window = _realistic(seed, size)
    counter = _check_substrings(window, random.Random(seed), 25)
    assert counter.fast
    assert counter.fast_counts > 0


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window=adversarial_text, seed=st.integers(0, 1_000))
def test_adversarial_substrings_count_exactly(window: str, seed: int) -> None:
    _check_substrings(window, random.Random(seed), 30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window=unicode_text, seed=st.integers(0, 1_000))
def test_arbitrary_unicode_substrings_count_exactly(window: str, seed: int) -> None:
    _check_substrings(window, random.Random(seed), 20)


@pytest.mark.parametrize("seed", range(6))
def test_every_substring_of_adversarial_windows(seed: int) -> None:
    rng = random.Random(seed)
    window = "".join(rng.choice(FRAGMENTS) for _ in range(60))[:160]
    counter = tokens.SpanCounter(window)
    for a in range(len(window)):
        for b in range(a + 1, len(window) + 1):
            text = window[a:b]
            assert counter.count(text) == len(ENCODING.encode_ordinary(text)), (window, a, b)
    assert counter.fast and counter.fast_counts > 0


def test_windows_the_fast_path_cannot_be_sure_of_are_counted_directly() -> None:
    body = markdown_document(1)
    unassigned = tokens.SpanCounter(body + "\u0378")  # no character yet, in any Unicode
    surrogate = tokens.SpanCounter(body + "\ud800")
    for counter in (unassigned, surrogate):
        assert not counter.fast
        text = counter.window[10:300]
        assert counter.count(text) == len(ENCODING.encode_ordinary(text))
        assert counter.direct_counts == 1 and counter.fast_counts == 0


def test_a_text_outside_the_window_is_counted_directly() -> None:
    counter = tokens.SpanCounter(markdown_document(2))
    text = markdown_document(3)[:200]
    assert counter.count(text) == len(ENCODING.encode_ordinary(text))
    assert (counter.fast, counter.fast_counts, counter.direct_counts) == (True, 0, 1)


def test_repeated_text_counts_from_any_occurrence() -> None:
    paragraph = "The bulk bin picked the stock, 1234 cases   \n\n"
    window = paragraph * 20
    counter = tokens.SpanCounter(window)
    for a in range(0, len(window) - 60, 13):
        text = window[a : a + 150]
        assert counter.count(text) == len(ENCODING.encode_ordinary(text))
    assert counter.fast_counts > 0


@pytest.mark.parametrize("char", ["\u017f", "é", "٣", "\u00a0", "\u2028", "👍", "\u0301", "京"])
def test_stand_ins_keep_each_characters_class(char: str) -> None:
    stand_in = tokens._stand_in(char)
    expected = {"\u017f": "s", "é": "x", "京": "x", "٣": "0", "\u00a0": "\t", "\u2028": "\t"}
    assert stand_in == expected.get(char, "#")


def _direct_chunker(monkeypatch: pytest.MonkeyPatch) -> MarkdownChunker:
    monkeypatch.setattr(tokens.SpanCounter, "_prepare", lambda self, encoding: None)
    return MarkdownChunker(max_tokens=64, overlap_tokens=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.integers(300, 4_000), noise=adversarial_text)
def test_chunks_are_the_same_as_with_direct_counting(seed: int, size: int, noise: str) -> None:
    markdown = _realistic(seed, size)
    cut = random.Random(seed).randrange(len(markdown))
    markdown = markdown[:cut] + noise + markdown[cut:]
    fast = MarkdownChunker(max_tokens=64, overlap_tokens=8).chunk(ParsedDocument(markdown))
    with pytest.MonkeyPatch.context() as patch:
        direct = _direct_chunker(patch).chunk(ParsedDocument(markdown))
    assert fast == direct
