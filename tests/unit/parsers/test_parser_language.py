"""guess_language: the stop-word vote, counted in C, gives the word-by-word definition's answer."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.parsers.language import _LANGUAGE_OF, _MIN_HITS, _SAMPLE_CHARS, _WORD, guess_language

ENGLISH = "The cat sat on the mat and it was happy with this. " * 3
GERMAN = "Der Hund und die Katze sind nicht mit dem Auto auf der Straße. " * 3
CASES = [
    (ENGLISH, "en"),
    (GERMAN, "de"),
    (ENGLISH.upper(), "en"),  # case does not matter
    ("the and of", None),  # too few hits
    ("", None),
    ("die " * 20, None),  # German or Dutch: no clear winner
    ("x" * (_SAMPLE_CHARS + 10) + ENGLISH, None),  # only the sample is read
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_guesses_the_clear_winner_or_none(text: str, expected: str | None) -> None:
    assert guess_language(text) == expected


def _guess_word_by_word(text: str) -> str | None:
    """The definition, one word at a time (the implementation before the C-level count)."""
    votes: Counter[str] = Counter()
    for match in _WORD.finditer(text[:_SAMPLE_CHARS]):
        for code in _LANGUAGE_OF.get(match.group().lower(), ()):
            votes[code] += 1
    ranked = votes.most_common(2)
    if not ranked or ranked[0][1] < _MIN_HITS:
        return None
    if len(ranked) > 1 and ranked[1][1] * 1.5 > ranked[0][1]:
        return None
    return ranked[0][0]


_STOPWORDS = sorted(_LANGUAGE_OF)


@given(
    st.lists(
        st.one_of(
            st.sampled_from(_STOPWORDS),
            st.sampled_from(_STOPWORDS).map(str.upper),
            st.text(max_size=8),
        ),
        max_size=80,
    ),
    st.sampled_from([" ", "\n", ", ", "-", "1"]),
)
def test_same_answer_as_the_word_by_word_definition(words: list[str], separator: str) -> None:
    text = separator.join(words)
    assert guess_language(text) == _guess_word_by_word(text)
