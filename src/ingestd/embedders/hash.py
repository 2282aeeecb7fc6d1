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
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ingestd.errors import ConfigurationError
from ingestd.ports import EmbeddingResult, EmbeddingUsage

ALGORITHM = "hash-v1"
MAX_INPUT_TOKENS = 8191
NGRAM_SIZES = (3, 4)
# Above this many characters in one call, the work moves to a thread so the loop stays free.
INLINE_CHARS = 20_000

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

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Vectors for ``texts``, in order; large batches run in a worker thread."""
        if sum(len(text) for text in texts) > INLINE_CHARS:
            return await asyncio.to_thread(self.embed_sync, texts)
        return self.embed_sync(texts)

    def embed_sync(self, texts: Sequence[str]) -> EmbeddingResult:
        """The same as ``embed``, for callers already off the event loop (thread pools)."""
        indices: list[npt.NDArray[np.int64]] = []
        values: list[npt.NDArray[np.float32]] = []
        words_seen = 0
        for row, text in enumerate(texts):
            words = words_of(text)
            words_seen += len(words)
            if words:
                row_indices, row_values = self._features(words)
                indices.append(row_indices + row * self.dimensions)
                values.append(row_values)
        usage = EmbeddingUsage(prompt_tokens=words_seen, requests=0)
        return EmbeddingResult(vectors=self._normalised(texts, indices, values), usage=usage)

    def _features(self, words: list[str]) -> Features:
        """Bucket indices and weighted values of every feature of a text's words."""
        counts = Counter(words)
        features = [word_features(word, self.dimensions) for word in counts]
        weights = np.repeat(
            1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts))),
            [len(word_indices) for word_indices, _ in features],
        )
        indices: npt.NDArray[np.int64] = np.concatenate([ids for ids, _ in features])
        values = np.concatenate([vals for _, vals in features]) * weights
        return indices, values.astype(np.float32, copy=False)

    def _normalised(
        self,
        texts: Sequence[str],
        indices: list[npt.NDArray[np.int64]],
        values: list[npt.NDArray[np.float32]],
    ) -> list[list[float]]:
        """One ``bincount`` for the whole batch, then every row scaled to unit length."""
        if not texts:
            return []
        size = len(texts) * self.dimensions
        if not indices:
            indices, values = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.float32)]
        summed = np.bincount(np.concatenate(indices), np.concatenate(values), minlength=size)
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


def words_of(text: str) -> list[str]:
    """The word tokens of ``text`` after NFKC normalisation and case folding."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=200_000)
def word_features(word: str, dimensions: int) -> Features:
    """Bucket indices and signed weights of one word: the word (weight 1) and its character
    n-grams (together weight 1). Cached: vocabularies repeat, so most words are hashed once."""
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
