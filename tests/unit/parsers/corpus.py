"""Loads scripts/gen_corpus.py (not a package module) so tests can generate corpora in tmp dirs."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]


def load_generator() -> ModuleType:
    if "gen_corpus" in sys.modules:
        return sys.modules["gen_corpus"]
    spec = importlib.util.spec_from_file_location("gen_corpus", ROOT / "scripts" / "gen_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_corpus"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def normalise(text: str) -> str:
    """Whitespace collapsed, so phrases wrapped across lines still match."""
    return re.sub(r"\s+", " ", text)


def heading_texts(markdown: str) -> set[str]:
    return {
        normalise(line.lstrip("#").strip())
        for line in markdown.splitlines()
        if re.match(r"^#{1,6} ", line)
    }
