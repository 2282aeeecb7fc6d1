"""The hash embedder: deterministic, lexical vectors from feature hashing, for tests and dry runs.

A text is normalised (Unicode NFKC, case-folded) and split into word tokens (``\\w+``). Each word
contributes two equal parts: the word itself as one feature, and its character 3- and 4-grams
(of ``<word>``, so prefixes and suffixes count) spread over the rest. Every feature is hashed with
BLAKE2b into one of ``dimensions`` buckets with a sign, the word's weight is 1 + log(count) in the
text, and the sum is L2-normalised. So texts sharing words (or word stems: ``install`` /
``installing``) get a higher cosine than unrelated ones, which makes vector search over it
meaningful, and the same text always gets the same vector, on any machine.

Not a language model: synonyms without shared letters ("kitten" / "cat") are unrelated here.
``usage.prompt_tokens`` is the number of word tokens (it is free: no request is made).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ingestd.errors import ConfigurationError
from ingestd.ports import EmbeddingResult, EmbeddingUsage

ALGORITHM = "hash-v1"
MAX_INPUT_TOKENS = 8191
NGRAM_SIZES = (3, 4)
# Above this many characters in one call, the work moves to a thread so the loop stays free.
INLINE_CHARS = 20_000
# Words whose features one embedder remembers (about 0.2 KB each).
TABLE_MAX_WORDS = 200_000

_WORD = re.compile(r"\w+")
_EMPTY_FEATURE = "\x00empty"

Features = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]


class HashEmbedder:
    """``Embedder`` port: ``hash-v1-<dimensions>`` vectors, unit length, pure numpy."""

    max_input_tokens = MAX_INPUT_TOKENS

    def __init__(self, dimensions: int = 256) -> None:
        if not 8 <= dimensions <= 16_000:
            raise ConfigurationError(f"hash embedder dimensions must be 8..16000, not {dimensions}")
        self.dimensions = dimensions
        self.model = f"{ALGORITHM}-{dimensions}"
        self._table = FeatureTable(dimensions)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Vectors for ``texts``, in order; large batches run in a worker thread."""
        if sum(len(text) for text in texts) > INLINE_CHARS:
            return await asyncio.to_thread(self.embed_sync, texts)
        return self.embed_sync(texts)

    def embed_sync(self, texts: Sequence[str]) -> EmbeddingResult:
        """The same as ``embed``, for callers already off the event loop (thread pools)."""
        counted = [Counter(words_of(text)) for text in texts]
        indices, values = self._table.features(counted)
        usage = EmbeddingUsage(prompt_tokens=sum(c.total() for c in counted), requests=0)
        return EmbeddingResult(vectors=self._normalised(texts, indices, values), usage=usage)

    def _normalised(
        self,
        texts: Sequence[str],
        indices: npt.NDArray[np.int64],
        values: npt.NDArray[np.float32],
    ) -> list[list[float]]:
        """One ``bincount`` for the whole batch, then every row scaled to unit length."""
        if not texts:
            return []
        size = len(texts) * self.dimensions
        summed = np.bincount(indices, values, minlength=size)
        matrix = summed.reshape(len(texts), self.dimensions)
        norms = np.linalg.norm(matrix, axis=1)
        empty = norms == 0.0  # no words (or every feature cancelled): the empty text's vector
        if empty.any():
            matrix[empty] = self._empty_vector()
            norms[empty] = 1.0
        vectors: list[list[float]] = (matrix / norms[:, None]).astype(np.float32).tolist()
        return vectors

    def _empty_vector(self) -> npt.NDArray[np.float64]:
        bucket, positive = _hash(_EMPTY_FEATURE, self.dimensions)
        vector = np.zeros(self.dimensions)
        vector[bucket] = 1.0 if positive else -1.0
        return vector


class FeatureTable:
    """Every known word's features, end to end in two flat arrays, so a batch's features are
    gathered with a few numpy operations instead of a few per word. Thread-safe (a lock): one
    embedder serves several threads. Forgets everything past ``max_words`` (memory stays
    bounded on a stream of unique tokens); the features are a pure function of the word."""

    def __init__(self, dimensions: int, max_words: int = TABLE_MAX_WORDS) -> None:
        self.dimensions = dimensions
        self.max_words = max_words
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._ids: dict[str, int] = {}
        self._starts: list[int] = []
        self._lengths: list[int] = []
        self._indices = np.empty(1024, dtype=np.int64)
        self._values = np.empty(1024, dtype=np.float32)
        self._size = 0

    def features(self, rows: Sequence[Counter[str]]) -> Features:
        """Bucket indices (offset by row) and weighted values of every feature of every row's
        words, in the order rows, words, features: the order the sums are taken in."""
        with self._lock:
            if len(self._ids) > self.max_words:
                self._clear()
            known = self._ids
            ids = [known.get(word, -1) for row in rows for word in row]
            if -1 in ids:
                words = [word for row in rows for word in row]
                ids = [self._id(w) if i == -1 else i for w, i in zip(words, ids, strict=True)]
            return self._gather(ids, [n for row in rows for n in row.values()], rows)

    def _id(self, word: str) -> int:
        known = self._ids.get(word)
        return self._add(word) if known is None else known

    def _add(self, word: str) -> int:
        indices, values = word_features(word, self.dimensions)
        end = self._size + len(indices)
        if end > len(self._indices):
            capacity = max(end, 2 * len(self._indices))
            self._indices = np.resize(self._indices, capacity)
            self._values = np.resize(self._values, capacity)
        self._indices[self._size : end] = indices
        self._values[self._size : end] = values
        self._ids[word] = len(self._starts)
        self._starts.append(self._size)
        self._lengths.append(len(indices))
        self._size = end
        return len(self._starts) - 1

    def _gather(self, ids: list[int], counts: list[int], rows: Sequence[Counter[str]]) -> Features:
        word_ids = np.asarray(ids, dtype=np.int64)
        starts = np.asarray(self._starts, dtype=np.int64)[word_ids]
        lengths = np.asarray(self._lengths, dtype=np.int64)[word_ids]
        ends = np.cumsum(lengths)
        positions = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
        positions += np.repeat(starts - (ends - lengths), lengths)
        row_of_word = np.repeat(np.arange(len(rows), dtype=np.int64), [len(r) for r in rows])
        indices = self._indices[positions] + np.repeat(row_of_word * self.dimensions, lengths)
        weights = 1.0 + np.log(np.asarray(counts, dtype=np.float32))
        return indices, self._values[positions] * np.repeat(weights, lengths)


def words_of(text: str) -> list[str]:
    """The word tokens of ``text`` after NFKC normalisation and case folding."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def word_features(word: str, dimensions: int) -> Features:
    """Bucket indices and signed weights of one word: the word (weight 1) and its character
    n-grams (together weight 1)."""
    grams = char_ngrams(word)
    keys = [f"w:{word}", *(f"g:{gram}" for gram in grams)]
    gram_weight = 1.0 / math.sqrt(len(grams)) if grams else 0.0
    weights = [1.0] + [gram_weight] * len(grams)
    indices = np.empty(len(keys), dtype=np.int64)
    values = np.empty(len(keys), dtype=np.float32)
    for i, (key, weight) in enumerate(zip(keys, weights, strict=True)):
        bucket, positive = _hash(key, dimensions)
        indices[i] = bucket
        values[i] = weight if positive else -weight
    return indices, values


def char_ngrams(word: str) -> list[str]:
    """Character n-grams of ``<word>``; a word shorter than the smallest n yields the whole."""
    marked = f"<{word}>"
    grams = [marked[i : i + size] for size in NGRAM_SIZES for i in range(len(marked) - size + 1)]
    return grams or [marked]


def _hash(key: str, dimensions: int) -> tuple[int, bool]:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dimensions, bool(value >> 63)
