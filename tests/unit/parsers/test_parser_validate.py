"""validate_parsed: a pure function over a parsed document, with stable error codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.errors import PermanentError
from ingestd.parsers.validate import garbage_ratio, validate_parsed
from ingestd.ports import ParsedDocument

OK = [
    "A short but real sentence.",
    "| Region | Revenue |\n| --- | --- |\n| North | 12 |",
    "Café, naïve, Ünïcödé, 日本語のテキスト, текст.",
    "x" * 1000 + "\x01",  # a stray control character is not garbage
    "word " * 300_000,  # long documents are sampled
]
FAILING = [
    ("", "parse.empty"),
    ("   \n\n\t ", "parse.empty"),
    ("| | |\n| --- | --- |", "parse.empty"),
    ("\ue000\ue001\ue002 " * 100, "parse.garbage"),
    ("\ufffd\ufffd abc \ufffd\ufffd\ufffd", "parse.garbage"),
    ("ok " + "\x00\x01\x02\x03" * 50, "parse.garbage"),
]


@pytest.mark.parametrize("markdown", OK)
def test_valid_documents_pass(markdown: str) -> None:
    validate_parsed(ParsedDocument(markdown=markdown))


@pytest.mark.parametrize(("markdown", "code"), FAILING)
def test_invalid_documents_fail_with_a_stable_code(markdown: str, code: str) -> None:
    with pytest.raises(PermanentError) as caught:
        validate_parsed(ParsedDocument(markdown=markdown))
    assert caught.value.code == code
    assert caught.value.kind == "permanent"


def test_too_many_characters() -> None:
    with pytest.raises(PermanentError) as caught:
        validate_parsed(ParsedDocument(markdown="word " * 100), max_chars=50)
    assert caught.value.code == "parse.too_large"
    assert caught.value.details["limit"] == "chars"


def test_garbage_threshold_is_configurable() -> None:
    text = "abcd" * 10 + "\ue000" * 10  # 20 % garbage
    assert garbage_ratio(text) == pytest.approx(0.2)
    validate_parsed(ParsedDocument(markdown=text), max_garbage_ratio=0.25)
    with pytest.raises(PermanentError):
        validate_parsed(ParsedDocument(markdown=text), max_garbage_ratio=0.1)


def _garbage_ratio_by_character(text: str) -> float:
    """The definition, one character at a time (the implementation before the regex version)."""
    from ingestd.parsers.validate import _is_garbage, _samples

    chars = [c for window in _samples(text) for c in window if not c.isspace()]
    return sum(_is_garbage(c) for c in chars) / len(chars) if chars else 0.0


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_garbage_ratio_counts_what_a_character_walk_counts(text: str) -> None:
    assert garbage_ratio(text) == _garbage_ratio_by_character(text)


@pytest.mark.parametrize("code_point", [*range(0x00, 0x100), 0x2028, 0x3000, 0xE000, 0xFFFD])
def test_every_latin1_and_special_character_is_classified_as_before(code_point: int) -> None:
    text = "ab" + chr(code_point) + "cd"
    assert garbage_ratio(text) == _garbage_ratio_by_character(text)
