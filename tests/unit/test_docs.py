"""The generated reference docs match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_cli_reference_is_current(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    typer = Path(sys.executable).parent / "typer"
    subprocess.run(
        [
            str(typer),
            "ingestd.cli",
            "utils",
            "docs",
            "--name",
            "ingestd",
            "--title",
            "CLI reference",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    current = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert out.read_text() == current, "docs/reference/cli.md is stale: run make docs"
