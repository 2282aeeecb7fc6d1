"""The hash embedder: deterministic, unit-length, lexical vectors; the Embedder port; speed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestd.embedders.hash import (
    INLINE_CHARS,
    FeatureTable,
    HashEmbedder,
    char_ngrams,
    word_features,
    words_of,
)
from ingestd.errors import ConfigurationError
from ingestd.ports import Embedder


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))  # both are unit vectors


def test_it_implements_the_port() -> None:
    embedder = HashEmbedder(dimensions=128)
    assert isinstance(embedder, Embedder)
    assert embedder.model == "hash-v1-128"
    assert embedder.dimensions == 128
    assert embedder.max_input_tokens == 8191


async def test_vectors_are_unit_length_and_in_order() -> None:
    texts = ["alpha beta", "", "   ", "!!!", "gamma " * 5000, "δέλτα 東京"]
    result = await HashEmbedder(dimensions=64).embed(texts)
    vectors = np.array(result.vectors)
    assert vectors.shape == (len(texts), 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    alone = [(await HashEmbedder(dimensions=64).embed([t])).vectors[0] for t in texts]
    np.testing.assert_array_equal(vectors, np.array(alone))


async def test_an_empty_batch_is_empty() -> None:
    result = await HashEmbedder().embed([])
    assert result.vectors == []
    assert result.usage.prompt_tokens == 0


def test_vectors_are_the_same_in_another_process() -> None:
    """No per-process hash seed: a vector stored today matches a query embedded tomorrow."""
    code = (
        "from ingestd.embedders.hash import HashEmbedder as H\n"
        "print(H(32).embed_sync(['x y z']).vectors[0][:4])"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = HashEmbedder(32).embed_sync(["x y z"]).vectors[0][:4]
    assert other.stdout.strip() == str(here)


def test_case_and_unicode_forms_do_not_matter() -> None:
    embedder = HashEmbedder()
    a, b = embedder.embed_sync(["Café INSTALL", "cafe\u0301 install"]).vectors
    assert cosine(a, b) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("query", "near", "far"),
    [
        ("a cat sat on the mat", "the cat sat on a mat", "quarterly tax filing deadline"),
        ("installing packages on linux", "how to install a package", "quarterly tax filing"),
        ("postgresql connection pool", "pool of postgres connections", "a kitten on the rug"),
        ("embedding vectors", "embedded vector search", "annual report"),
    ],
)
def test_shared_words_and_stems_are_nearer_than_unrelated_text(
    query: str, near: str, far: str
) -> None:
    q, n, f = HashEmbedder().embed_sync([query, near, far]).vectors
    # 256 buckets: unrelated texts land around +-0.08 by collisions alone.
    assert cosine(q, n) > cosine(q, f) + 0.05


def test_usage_counts_word_tokens() -> None:
    result = HashEmbedder().embed_sync(["one two three", "four, five!", ""])
    assert result.usage.prompt_tokens == 5
    assert result.usage.requests == 0


def test_words_and_ngrams() -> None:
    assert words_of("Hello, WORLD! l'été 2024") == ["hello", "world", "l", "été", "2024"]
    assert char_ngrams("cat") == ["<ca", "cat", "at>", "<cat", "cat>"]
    assert char_ngrams("a") == ["<a>"]


@pytest.mark.parametrize("dimensions", [4, 100_000])
def test_unreasonable_dimensions_are_refused(dimensions: int) -> None:
    with pytest.raises(ConfigurationError):
        HashEmbedder(dimensions=dimensions)


async def test_a_large_batch_leaves_the_event_loop_free() -> None:
    texts = [f"document {i} about install guides and vectors " * 20 for i in range(3_000)]
    assert sum(map(len, texts)) > INLINE_CHARS
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    result = await HashEmbedder().embed(texts)
    stop.set()
    await task
    assert len(result.vectors) == len(texts)
    assert ticks >= 3, "the loop kept running while the batch was embedded"


def test_thousands_of_short_texts_embed_in_one_batch() -> None:
    """One vector per text, each of unit length, distinct texts apart (their speed is a figure of
    benchmarks/bench_chunk_embed.py, docs/benchmarks/chunking-embedding.md)."""
    embedder = HashEmbedder()
    texts = [f"short text number {i} about topic {i % 97}" for i in range(5_000)]
    vectors = np.asarray(embedder.embed_sync(texts).vectors)
    assert vectors.shape == (len(texts), embedder.dimensions)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert len({row.tobytes() for row in vectors}) == len(texts)


def _vectors_word_by_word(texts: list[str], dimensions: int) -> list[list[float]]:
    """The vectors as the implementation before ``FeatureTable`` made them: each text's words'
    features concatenated word by word, then one bincount (the same order of sums)."""
    indices, values = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.float32)]
    for row, text in enumerate(texts):
        counts = Counter(words_of(text))
        if not counts:
            continue
        features = [word_features(word, dimensions) for word in counts]
        weights = np.repeat(
            1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts))),
            [len(ids) for ids, _ in features],
        )
        indices.append(np.concatenate([ids for ids, _ in features]) + row * dimensions)
        values.append(np.concatenate([vals for _, vals in features]) * weights)
    size = len(texts) * dimensions
    summed = np.bincount(np.concatenate(indices), np.concatenate(values), minlength=size)
    matrix = summed.reshape(len(texts), dimensions)
    norms = np.linalg.norm(matrix, axis=1)
    empty = norms == 0.0
    matrix[empty] = HashEmbedder(dimensions)._empty_vector()
    norms[empty] = 1.0
    vectors: list[list[float]] = (matrix / norms[:, None]).astype(np.float32).tolist()
    return vectors


WORDS = st.sampled_from(["alpha", "Beta", "gamma", "δέλτα", "東京", "install", "installing", "x"])
TEXTS = st.lists(st.lists(st.one_of(WORDS, st.text(max_size=6)), max_size=30).map(" ".join))


@settings(max_examples=60)
@given(st.lists(TEXTS, min_size=1, max_size=4), st.sampled_from([2, 5, 10_000]))
def test_the_feature_table_gives_the_word_by_word_vectors_bit_for_bit(
    batches: list[list[str]], max_words: int
) -> None:
    """Several batches through one embedder (its table grows, and is cleared past max_words)."""
    embedder = HashEmbedder(dimensions=16)
    embedder._table = FeatureTable(16, max_words=max_words)
    for texts in batches:
        assert embedder.embed_sync(texts).vectors == _vectors_word_by_word(texts, 16)
