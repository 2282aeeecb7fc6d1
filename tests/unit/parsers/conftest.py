"""A small generated corpus (every format plus the malformed set), made once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.parsers.corpus import load_generator


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("corpus")
    manifest = load_generator().generate(root, ["small"], malformed=True)
    return root, manifest
