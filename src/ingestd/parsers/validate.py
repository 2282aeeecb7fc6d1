"""Validation of a parser's output before it is chunked: a pure function of the document.

A parsed document must read as text rather than noise (``parse.garbage``), have some real text
(``parse.empty``), and not be absurdly long (``parse.too_large``). Noise is measured
on evenly spaced samples, so checking a 10 MB document costs about as much as a small one: the
share of characters that are control characters, private-use or unassigned code points, or
replacement characters (U+FFFD, left by undecodable bytes) among the non-space characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from ingestd.errors import PermanentError
from ingestd.parsers.limits import DEFAULT_MAX_CHARS
from ingestd.ports import ParsedDocument

DEFAULT_MAX_GARBAGE_RATIO = 0.2
_SAMPLE_WINDOWS = 64
_WINDOW_CHARS = 2048
_WORD_CHAR = re.compile(r"[^\W_]")
_ALLOWED_CONTROLS = frozenset("\t\n\r\f")
_GARBAGE_CATEGORIES = frozenset({"Cc", "Co", "Cs", "Cn"})
# The ASCII characters for which str.isspace() is true, and the ASCII controls that are not.
_ASCII_SPACES = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_ASCII_GARBAGE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def validate_parsed(
    doc: ParsedDocument,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_garbage_ratio: float = DEFAULT_MAX_GARBAGE_RATIO,
) -> None:
    """Raise ``PermanentError`` (parse.garbage, parse.empty, parse.too_large) if doc is unfit."""
    text = doc.markdown
    ratio = garbage_ratio(text)
    if ratio > max_garbage_ratio:
        raise PermanentError(
            "parse.garbage",
            f"{ratio:.0%} of this document's text is unreadable characters (limit "
            f"{max_garbage_ratio:.0%}); its text layer is probably broken (a PDF with bad font "
            "encodings, or a binary file read as text). Try OCR or re-export the document",
            garbage_ratio=round(ratio, 3),
        )
    if _WORD_CHAR.search(text) is None:
        raise PermanentError(
            "parse.empty",
            "no text was found in this document (it is blank, or its text is in images: "
            "scans need OCR, for example with the LlamaParse parser)",
        )
    if len(text) > max_chars:
        raise PermanentError(
            "parse.too_large",
            f"this document has {len(text):,} characters of text (limit {max_chars:,}); "
            "split it into smaller documents",
            limit="chars",
        )


def garbage_ratio(text: str) -> float:
    """Share of unreadable characters among the non-space characters of samples of ``text``.

    Counted in C, not character by character in Python: ASCII spaces with ``str.count``, ASCII
    control characters with one pattern, and the non-ASCII characters (few, in most text) are
    classified once per distinct character."""
    bad = total = 0
    for window in _samples(text):
        total += len(window) - sum(map(window.count, _ASCII_SPACES))
        bad += len(_ASCII_GARBAGE.findall(window))
        if window.isascii():
            continue
        for char, n in Counter(_NON_ASCII.findall(window)).items():
            if char.isspace():
                total -= n
            elif _is_garbage(char):
                bad += n
    return bad / total if total else 0.0


def _samples(text: str) -> list[str]:
    if len(text) <= _SAMPLE_WINDOWS * _WINDOW_CHARS:
        return [text]
    step = len(text) // _SAMPLE_WINDOWS
    return [text[i * step : i * step + _WINDOW_CHARS] for i in range(_SAMPLE_WINDOWS)]


def _is_garbage(char: str) -> bool:
    if char.isalnum() or (char.isascii() and char.isprintable()):
        return False
    if char == "\ufffd":
        return True
    return unicodedata.category(char) in _GARBAGE_CATEGORIES and char not in _ALLOWED_CONTROLS
