"""The local embedder's ONNX Runtime backend: the same model, exported once, run without torch.

A sentence-transformers model (Transformer -> Pooling -> optional Normalize) is exported from
its own weights to ONNX with ``torch.onnx.export`` the first time it is used, into a folder of
the cache (``<ingestd home>/models`` by default) named for the model and a fingerprint of its
weights, so a changed model is exported anew. The export runs under an exclusive file lock (the
worker processes of one home may start together), is checked against torch on probe texts, and
is published by an atomic rename: a reader sees a whole, checked model or none. Nothing is
downloaded. After that, encoding needs only ``onnxruntime``, ``tokenizers`` and numpy: torch
is not even imported.

Encoding follows sentence-transformers step for step (strip, truncate to ``max_seq_length`` word
pieces, batches sorted by length, mean or CLS pooling over the attention mask, L2 norm), so the
vectors are the torch ones up to float noise (cosine >= 0.9999, checked at export; measured in
docs/benchmarks/local-embedder.md) and share their vector space name. Dynamic int8 quantisation
was measured and rejected (docs/decisions/0010-local-model-runtime.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ingestd.errors import ConfigurationError, PermanentError

ONNX_FILE = "model.onnx"
# Bump when the export itself changes (opset, graph inputs, wrapper): a new folder is made.
EXPORT_VERSION = 1
OPSET = 17
# The export is published only if it agrees with torch this closely on every probe text.
MIN_EXPORT_COSINE = 0.9999
_PROBE_TEXTS = (
    "a cat sat on the mat",
    "# Install\n\nRun `make setup`, then `ingestd worker --burst` to drain the queue.",
    "word " * 400,  # longer than the model reads: truncated like torch truncates it
    "",
)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxEncoder:
    """One exported model in an ONNX Runtime session, encoding like sentence-transformers."""

    def __init__(self, onnx_path: Path, model_path: Path, num_threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.max_seq_length, self.pooling, self.normalize = read_pipeline(model_path)
        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_seq_length)
        self._tokenizer.enable_padding(pad_id=self._pad_id(model_path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: the cores are shared with the event loop,
        # the parsers and PostgreSQL.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise PermanentError(
                "embed.model_unavailable", f"cannot load the ONNX model {onnx_path}: {exc}"
            ) from exc
        self._inputs = [i.name for i in self._session.get_inputs() if i.name in _INPUTS]
        self.dimensions = int(self._session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """One row per text, in order (longest texts batched together, as torch does)."""
        stripped = [text.strip() for text in texts]
        order = np.argsort([-len(text) for text in stripped], kind="stable")
        vectors = np.empty((len(stripped), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            vectors[rows] = self._encode_batch([stripped[i] for i in rows])
        return vectors

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, {name: feed[name] for name in self._inputs})[0]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        if self.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.clip(norms, 1e-12, None)
        return np.asarray(pooled, dtype=np.float32)

    @staticmethod
    def _pad_id(model_path: Path) -> int:
        config = json.loads((model_path / "config.json").read_text())
        return int(config.get("pad_token_id") or 0)


def read_pipeline(model_path: Path) -> tuple[int, str, bool]:
    """(max_seq_length, pooling "mean" or "cls", normalize) of a sentence-transformers model the
    ONNX backend can run; a ConfigurationError for any other pipeline (Dense layers, ...)."""
    try:
        modules = json.loads((model_path / "modules.json").read_text())
        kinds = [module["type"].rsplit(".", 1)[-1] for module in modules]
        bert = json.loads((model_path / "sentence_bert_config.json").read_text())
        pooling_dir = next(m.get("path", "") for m in modules if m["type"].endswith("Pooling"))
        pooling = json.loads((model_path / pooling_dir / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise ConfigurationError(
            f"cannot read the pipeline of the model in {model_path}: {exc}", path=str(model_path)
        ) from exc
    modes = {key for key, on in pooling.items() if key.startswith("pooling_mode_") and on}
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) or (
        modes not in ({"pooling_mode_mean_tokens"}, {"pooling_mode_cls_token"})
    ):
        raise ConfigurationError(
            f"the onnx backend runs Transformer -> Pooling (mean or CLS) -> Normalize models, "
            f"not {' -> '.join(kinds)} with {sorted(modes)}: set INGESTD_EMBEDDER__BACKEND=torch",
            path=str(model_path),
        )
    kind = "cls" if modes == {"pooling_mode_cls_token"} else "mean"
    return int(bert["max_seq_length"]), kind, "Normalize" in kinds


def ensure_onnx_model(model_path: Path, cache_dir: Path, label: str) -> Path:
    """The exported model of ``model_path`` under ``cache_dir``, exported now if missing;
    ``label`` names its folder (with the fingerprint)."""
    read_pipeline(model_path)  # refuse an unsupported model before the slow export
    safe_label = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[-64:]
    folder = cache_dir / f"{safe_label}-{model_fingerprint(model_path)}"
    target = folder / ONNX_FILE
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder / ".export.lock"):
        if target.is_file():  # another process exported it while this one waited
            return target
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".export-", suffix=".onnx")
        os.close(handle)
        try:
            export_onnx(model_path, Path(temporary))
            os.chmod(temporary, 0o644)  # mkstemp made it private to this user
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    return target


def model_fingerprint(model_path: Path) -> str:
    """16 hex digits of the model's config and weights, and of the export's own version."""
    digest = hashlib.sha256(f"export-v{EXPORT_VERSION}-opset{OPSET}".encode())
    for name in ("config.json", "sentence_bert_config.json", "model.safetensors"):
        path = model_path / name
        if not path.is_file():
            continue
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def export_onnx(model_path: Path, target: Path) -> None:
    """Export the model's transformer to ``target`` and check it against torch."""
    from ingestd.embedders.local import _set_offline_environment

    _set_offline_environment()
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        reference = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise PermanentError(
            "embed.model_unavailable", f"cannot load the local model in {model_path}: {exc}"
        ) from exc
    reference.eval()
    transformer = _transformer_output(reference[0].auto_model)
    example = reference.tokenizer(
        ["a short text", "a slightly longer text to pad the batch"],
        padding=True,
        return_tensors="pt",
    )
    names = [name for name in _INPUTS if name in example]
    args = tuple(example[name] for name in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*names, "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated (still in the pinned torch) and traces noisily.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            transformer,
            args,
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    _check_export(reference, target, model_path)


def _check_export(reference: Any, target: Path, model_path: Path) -> None:
    expected = reference.encode(
        list(_PROBE_TEXTS), normalize_embeddings=True, convert_to_numpy=True
    )
    got = OnnxEncoder(target, model_path, num_threads=1).encode(_PROBE_TEXTS, batch_size=8)
    expected = expected / np.clip(np.linalg.norm(expected, axis=1, keepdims=True), 1e-12, None)
    got = got / np.clip(np.linalg.norm(got, axis=1, keepdims=True), 1e-12, None)
    worst = float((expected * got).sum(axis=1).min())
    if worst < MIN_EXPORT_COSINE:
        raise PermanentError(
            "embed.model_unavailable",
            f"the ONNX export of {model_path} disagrees with torch (cosine {worst:.5f}): "
            "set INGESTD_EMBEDDER__BACKEND=torch",
        )


def _transformer_output(model: Any) -> Any:
    """The transformer as a module of tensors in, last hidden state out (what is exported).
    Defined here: it subclasses torch's Module, and torch is imported only to export."""
    import torch

    class TransformerOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    return TransformerOutput()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
