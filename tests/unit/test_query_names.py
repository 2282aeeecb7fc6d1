"""Every named query the code asks for exists (a query removed from one ``.sql`` file while
another module still used it broke job cancelling, and only an HTTP test noticed)."""

from __future__ import annotations

import re
from pathlib import Path

import ingestd
from ingestd.db import QUERIES

USE = re.compile(r"""QUERIES\[\s*["'](\w+)["']\s*\]""")


def test_every_named_query_the_code_uses_is_defined() -> None:
    package = Path(ingestd.__file__).parent
    used = {
        (str(path.relative_to(package)), name)
        for path in package.rglob("*.py")
        for name in USE.findall(path.read_text())
    }
    assert len(used) > 50  # the pattern still finds the uses
    missing = sorted((where, name) for where, name in used if name not in QUERIES)
    assert missing == []
