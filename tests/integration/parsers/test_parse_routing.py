"""Which parses the worker does in its own process and which go to the parser pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestd.app import TRIVIAL_THREAD_BYTES, build_parse
from ingestd.config import Settings
from ingestd.parsers.isolation import ParserPool, parse_in_process
from ingestd.parsers.local import LocalParser
from tests.factories import markdown_document


def _markdown_of(size: int) -> bytes:
    text, index = "", 0
    while len(text) < size:
        text += markdown_document(index, paragraphs=6) + "\n\n"
        index += 1
    return text.encode()


@pytest.mark.parametrize("size", [4 * 1024, 300 * 1024])
async def test_text_up_to_the_thread_limit_is_parsed_without_a_parser_process(
    tmp_path: Path, size: int
) -> None:
    pool = ParserPool(1)
    try:
        parse, _ = build_parse(Settings(home=tmp_path), pool)
        data = _markdown_of(size)
        parsed = await parse(data, "text/markdown", "big.md")
        assert parsed == parse_in_process(LocalParser(), data, "text/markdown", "big.md")
        assert pool.process_ids == []
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (_markdown_of(TRIVIAL_THREAD_BYTES + 1), "text/markdown"),
        (b"name,size\nalpha,1\nbeta,2\n", "text/csv"),
    ],
)
async def test_larger_text_and_other_formats_go_to_the_parser_pool(
    tmp_path: Path, data: bytes, media_type: str
) -> None:
    pool = ParserPool(1)
    try:
        parse, _ = build_parse(Settings(home=tmp_path), pool)
        parsed = await parse(data, media_type, "file")
        assert parsed.markdown
        assert len(pool.process_ids) == 1
    finally:
        pool.close()
