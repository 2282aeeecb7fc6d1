"""The local sentence-transformers embedder: real model, offline, loaded once per test session."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from ingestd.chunking import MarkdownChunker
from ingestd.embedders.local import LocalEmbedder, read_model_shape, resolve_model_path
from ingestd.errors import ConfigurationError
from ingestd.ports import Embedder, ParsedDocument


@pytest.fixture(scope="session")
async def embedder() -> AsyncIterator[LocalEmbedder]:
    local = LocalEmbedder()
    await asyncio.to_thread(local.load)  # a few seconds, once per session
    yield local


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


async def test_meaning_beats_wording(embedder: LocalEmbedder) -> None:
    cat, kitten, tax = (
        await embedder.embed(
            ["a cat sat on the mat", "a kitten rested on the rug", "quarterly tax filing"]
        )
    ).vectors
    assert cosine(cat, kitten) > cosine(cat, tax) + 0.3


async def test_shape_and_names_come_from_the_model(embedder: LocalEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.model == "local/all-MiniLM-L6-v2"
    assert LocalEmbedder("sentence-transformers/all-MiniLM-L6-v2").model == embedder.model
    assert (embedder.dimensions, embedder.max_input_tokens) == (384, 256)
    result = await embedder.embed(["one", "two words", ""])
    vectors = np.array(result.vectors)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)


async def test_usage_counts_the_word_pieces_read(embedder: LocalEmbedder) -> None:
    result = await embedder.embed(["hello world", "word " * 1_000])
    # [CLS] hello world [SEP] = 4; the long text is truncated to the model's 256.
    assert result.usage.prompt_tokens == 4 + 256
    assert result.usage.requests == 0
    assert (await embedder.embed([])).vectors == []


async def test_the_model_is_loaded_once_per_process(embedder: LocalEmbedder) -> None:
    other = LocalEmbedder(batch_size=8)
    assert other.load() is embedder.load()
    same = await other.embed(["a cat sat on the mat"])
    again = await embedder.embed(["a cat sat on the mat"])
    np.testing.assert_allclose(same.vectors, again.vectors, atol=1e-6)


async def test_the_event_loop_stays_free_while_encoding(embedder: LocalEmbedder) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await embedder.embed([f"sentence number {i} about documents" * 8 for i in range(64)])
    done.set()
    await task
    assert ticks >= 3


async def test_the_chunker_keeps_chunks_within_the_model_limit(embedder: LocalEmbedder) -> None:
    # Code-like text: far more word pieces than cl100k tokens, so 256 cl100k tokens overflow.
    code = "\n".join(
        f"x_{i} = compute_value({i}, key='k{i}') + arr[{i}:{i * 7}]" for i in range(400)
    )
    markdown = f"# Code\n\n```python\n{code}\n```\n"
    counter = embedder.input_token_counter
    plain = MarkdownChunker(max_tokens=256, overlap_tokens=0, hard_limit_tokens=256)
    assert max(counter.count(c.text) for c in plain.chunk(ParsedDocument(markdown))) > 256
    chunker = MarkdownChunker(
        max_tokens=256, overlap_tokens=20, hard_limit_tokens=256, hard_limit_counter=counter
    )
    chunks = chunker.chunk(ParsedDocument(markdown))
    assert max(counter.count(c.text) for c in chunks) <= 256
    assert max(c.token_count for c in chunks) <= 256
    assert chunker.version.endswith(":max256@local/all-MiniLM-L6-v2")
    assert all(markdown.startswith(c.text, c.start_offset) for c in chunks)


def test_a_model_folder_can_be_named_by_path(tmp_path: Path) -> None:
    """Only the config files are read until the model is used: copy just those."""
    source, folder = resolve_model_path("all-MiniLM-L6-v2"), tmp_path / "my-model"
    for name in ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, folder / name)
    local = LocalEmbedder(str(folder))
    assert local.model == f"local/{folder}"
    assert (local.dimensions, local.max_input_tokens) == (384, 256)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    assert read_model_shape(folder) == (384, 128)


@pytest.mark.parametrize("model", ["no-such-model", "sentence-transformers/all-mpnet-base-v2"])
def test_models_are_never_downloaded(model: str) -> None:
    with pytest.raises(ConfigurationError, match="never downloaded"):
        LocalEmbedder(model)
