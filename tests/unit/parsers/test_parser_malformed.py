"""Every malformed corpus file ends with its expected error code, through the process pool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd.errors import PermanentError
from ingestd.parsers.detect import detect_media_type
from ingestd.parsers.isolation import ParserPool
from ingestd.parsers.local import LocalParser
from ingestd.parsers.validate import validate_parsed
from tests.unit.parsers.corpus import normalise


@pytest.fixture(scope="module")
def pool() -> Iterator[ParserPool]:
    pool = ParserPool(2)
    yield pool
    pool.close()


async def test_every_malformed_file_gets_its_expected_outcome(
    small_corpus: tuple[Path, dict[str, Any]], pool: ParserPool
) -> None:
    root, manifest = small_corpus
    assert len(manifest["malformed"]) >= 10
    outcomes = {}
    for entry in manifest["malformed"]:
        data = (root / entry["file"]).read_bytes()
        media_type = detect_media_type(data, entry["file"])
        try:
            doc = await pool.parse(LocalParser(), data, media_type, entry["file"], timeout=30)
            validate_parsed(doc)
        except PermanentError as exc:
            assert len(exc.message) > 30  # a sentence a person can act on
            outcomes[entry["file"]] = exc.code
        else:
            outcomes[entry["file"]] = None
            text = normalise(doc.markdown)
            assert all(phrase in text for phrase in entry.get("phrases", []))
    assert outcomes == {e["file"]: e["expected_error"] for e in manifest["malformed"]}
