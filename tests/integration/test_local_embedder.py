"""The local sentence-transformers embedder: real model, offline, loaded once per test session,
on both backends (torch, and ONNX Runtime on a model exported from the shipped one)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from ingestd.app import build_embedder
from ingestd.chunking import MarkdownChunker
from ingestd.config import LocalEmbedderSettings, Settings
from ingestd.embedders.local import LocalEmbedder, read_model_shape, resolve_model_path
from ingestd.embedders.local_onnx import ONNX_FILE, read_pipeline
from ingestd.errors import ConfigurationError
from ingestd.ports import Embedder, ParsedDocument

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported ONNX models for this session (never the user's own cache)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session", params=["torch", "onnx"])
async def embedder(
    request: pytest.FixtureRequest, model_cache: Path
) -> AsyncIterator[LocalEmbedder]:
    local = LocalEmbedder(backend=request.param, cache_dir=model_cache)
    await asyncio.to_thread(local.load)  # seconds (the onnx export: ~10 s), once per session
    yield local


@pytest.fixture(scope="session")
async def both(model_cache: Path) -> tuple[LocalEmbedder, LocalEmbedder]:
    """(torch, onnx), loaded."""
    pair = (
        LocalEmbedder(backend="torch", cache_dir=model_cache),
        LocalEmbedder(backend="onnx", cache_dir=model_cache),
    )
    for local in pair:
        await asyncio.to_thread(local.load)
    return pair


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
    other = LocalEmbedder(batch_size=8, backend=embedder.backend, cache_dir=embedder.cache_dir)
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


MARKDOWN_TEXTS = [
    "a cat sat on the mat",
    "   leading and trailing blanks   ",
    "",
    "word " * 600,  # read only up to the model's 256 word pieces, on both backends
    "# Install\n\nRun `make setup`, then:\n\n```sh\ningestd worker --burst\n```\n",
    "| name | value |\n|---|---|\n| lease | 30 s |\n| retries | 5 |",
    "Les données sont stockées dans PostgreSQL; 東京 café naïve.",
]
QUERIES = ["how to start a worker", "table of settings", "a pet resting", "French text"]


async def test_onnx_vectors_are_the_torch_vectors(
    both: tuple[LocalEmbedder, LocalEmbedder],
) -> None:
    """Same vector space name, so the vectors must agree to float noise, and so must search."""
    torch_embedder, onnx_embedder = both
    assert onnx_embedder.model == torch_embedder.model == "local/all-MiniLM-L6-v2"
    reference = np.array((await torch_embedder.embed(MARKDOWN_TEXTS)).vectors)
    candidate = np.array((await onnx_embedder.embed(MARKDOWN_TEXTS)).vectors)
    assert (reference * candidate).sum(axis=1).min() >= 0.9999
    for query in QUERIES:
        ref_query = np.array((await torch_embedder.embed([query])).vectors[0])
        new_query = np.array((await onnx_embedder.embed([query])).vectors[0])
        assert (
            np.argsort(-(reference @ ref_query)).tolist()
            == np.argsort(-(candidate @ new_query)).tolist()
        )
    usage = (await onnx_embedder.embed(MARKDOWN_TEXTS)).usage
    assert usage == (await torch_embedder.embed(MARKDOWN_TEXTS)).usage


def _run_python(code: str, cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(cache)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


ENCODE_IN_A_NEW_PROCESS = """
    import sys
    from pathlib import Path
    from ingestd.embedders.local import LocalEmbedder
    vector = LocalEmbedder(backend="onnx", cache_dir=Path(sys.argv[1])).embed_sync(["a cat"])
    print(len(vector.vectors[0]), "torch" in sys.modules)
"""


async def test_a_new_process_reuses_the_export_without_torch(
    both: tuple[LocalEmbedder, LocalEmbedder], model_cache: Path
) -> None:
    (exported,) = model_cache.glob(f"*/{ONNX_FILE}")
    before = exported.stat().st_mtime_ns
    process = _run_python(ENCODE_IN_A_NEW_PROCESS, model_cache)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert out.split() == ["384", "False"]  # encoded, and torch was never imported
    assert exported.stat().st_mtime_ns == before


def test_processes_starting_together_export_once(tmp_path: Path) -> None:
    """Two first uses at once: one exports under the lock, the other waits and reuses it."""
    processes = [_run_python(ENCODE_IN_A_NEW_PROCESS, tmp_path) for _ in range(2)]
    for process in processes:
        out, err = process.communicate(timeout=170)
        assert process.returncode == 0, err
        assert out.split()[0] == "384"
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("all-MiniLM-L6-v2-")
    assert sorted(path.name for path in folder.iterdir()) == [".export.lock", ONNX_FILE]
    assert (folder / ONNX_FILE).stat().st_mode & 0o777 == 0o644


def test_the_onnx_backend_refuses_pipelines_it_cannot_run(tmp_path: Path) -> None:
    source = resolve_model_path("all-MiniLM-L6-v2")
    shutil.copytree(source, tmp_path / "model", ignore=shutil.ignore_patterns("*.safetensors"))
    folder = tmp_path / "model"
    assert read_pipeline(folder) == (256, "mean", True)
    modules = json.loads((folder / "modules.json").read_text())
    dense = {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    (folder / "modules.json").write_text(json.dumps([*modules, dense]))
    with pytest.raises(ConfigurationError, match="BACKEND=torch"):
        read_pipeline(folder)
    with pytest.raises(ConfigurationError, match="runs on the CPU"):
        LocalEmbedder(backend="onnx", device="cuda")
    with pytest.raises(ConfigurationError, match="unknown local embedder backend"):
        LocalEmbedder(backend="tensorflow")  # type: ignore[arg-type]


def test_the_settings_choose_the_backend_and_the_home_keeps_the_export(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, embedder=LocalEmbedderSettings(backend="torch", batch_size=8)
    )
    embedder = build_embedder(settings)
    assert isinstance(embedder, LocalEmbedder)
    assert (embedder.backend, embedder.batch_size) == ("torch", 8)
    assert embedder.cache_dir == tmp_path / "models"


def load_bench() -> ModuleType:
    path = ROOT / "benchmarks/bench_local_embedder.py"
    spec = importlib.util.spec_from_file_location("bench_local_embedder", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_local_embedder"] = module
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_runs_on_a_tiny_scenario(
    both: tuple[LocalEmbedder, LocalEmbedder], model_cache: Path
) -> None:
    bench = load_bench()
    sections, notes = bench.run(3, [1], [2], model_cache)
    text = bench.report(sections, "bench --tiny", 0.0, notes)
    assert "| torch | 1 | 2 | 3 |" in text and "| onnx | 1 | 2 | 3 |" in text
    assert "## ONNX vs torch vectors" in text
    path = resolve_model_path("all-MiniLM-L6-v2")
    (onnx_path,) = model_cache.glob(f"*/{ONNX_FILE}")
    row = bench.agreement(path, onnx_path, MARKDOWN_TEXTS)
    assert float(row["min cosine"]) >= 0.9999
    assert (
        row["queries with the same top 5 (in order)"]
        == f"{len(bench.QUERIES)}/{len(bench.QUERIES)}"
    )
