"""Factories shared by every test tier: small, distinct Markdown documents, and the benchmark
scripts as modules (their tests run them on tiny scenarios, so they cannot rot)."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

TOPICS = [
    ("Quarterly revenue", "revenue grew in the third quarter thanks to strong subscription sales"),
    ("Solar panels", "photovoltaic cells convert sunlight into electricity on rooftops"),
    ("Sourdough baking", "a starter of flour and water ferments to leaven the bread dough"),
    ("Kubernetes operations", "pods are scheduled onto nodes and restarted by the kubelet"),
    ("Marine biology", "coral reefs shelter fish and are threatened by ocean warming"),
    ("Tax filing", "quarterly estimated tax payments are due to the revenue service"),
]

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
]


def markdown_document(index: int, paragraphs: int = 3, seed: int = 0) -> str:
    """A distinct Markdown document: a title, sections, a list, and a unique marker."""
    rng = random.Random(seed * 100_003 + index)
    title, sentence = TOPICS[index % len(TOPICS)]
    lines = [f"# {title} report {index}", "", f"Document marker doc-{index:05d}. {sentence}.", ""]
    for p in range(paragraphs):
        lines += [f"## Section {p + 1}", ""]
        words = " ".join(rng.choice(WORDS) for _ in range(60))
        lines += [f"{sentence.capitalize()} ({words}).", "", f"- item {p}a", f"- item {p}b", ""]
    return "\n".join(lines)


def write_corpus(folder: Path, count: int, paragraphs: int = 3, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"doc-{i:05d}.md"
        path.write_text(markdown_document(i, paragraphs, seed))
        paths.append(path)
    return paths


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py as the module ``NAME`` (loaded once; benchmarks import each other by
    that name, and dataclasses look their module up in sys.modules while they are built)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
