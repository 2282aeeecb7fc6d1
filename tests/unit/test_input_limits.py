"""Limits stop a parse before the expensive work (issue 7, finding 5), and the pure rules around
crashes and webhooks (findings 5 and 6).

The pathological inputs come from benchmarks/bench_hostile_inputs.py (the generators the
benchmark measures), made small here and met with small limits so each test takes milliseconds.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from ingestd.config import LocalParserSettings
from ingestd.errors import IngestdError, PermanentError, TransientError
from ingestd.parsers.limits import ParseLimits
from ingestd.parsers.local import LocalParser
from ingestd.parsers.pdfguard import check_pdf_streams
from ingestd.parsers.xlsx import count_cells
from ingestd.retry import should_fail
from ingestd.webhooks import check_timestamp, parse_llamaparse_webhook
from tests.factories import load_benchmark

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


gen = load_benchmark("bench_hostile_inputs")


def refusal(data: bytes, media_type: str, **limits: int) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        LocalParser(ParseLimits(**limits)).parse(data, media_type, "f")
    return caught.value


def test_a_csv_field_past_the_default_limit_is_refused(tmp_path: Path) -> None:
    gen.csv_field(tmp_path / "f.csv", chars=2_000_000)  # the default limit is 1 Mi characters
    error = refusal((tmp_path / "f.csv").read_bytes(), "text/csv")
    assert (error.code, error.details["limit"]) == ("parse.too_large", "csv_field")
    assert "x" * 100 not in error.message  # the field is not echoed


def test_the_character_cap_stops_the_parse_itself(tmp_path: Path) -> None:
    text = "\n\n".join(f"Paragraph {i} of a long report." for i in range(2000)).encode()
    error = refusal(text, "text/markdown", max_chars=1000)
    assert (error.code, error.details["limit"]) == ("parse.too_large", "chars")
    assert "reading stopped" in error.message
    assert LocalParser(ParseLimits(max_chars=10**6)).parse(text, "text/markdown").markdown


def test_xlsx_cells_are_counted_even_without_a_dimension(tmp_path: Path) -> None:
    gen.xlsx_cells(tmp_path / "f.xlsx", rows=200, cols=60)  # 12,000 cells, no <dimension>
    data = (tmp_path / "f.xlsx").read_bytes()
    assert b"<dimension" not in data
    error = refusal(data, XLSX, max_sheet_cells=10_000)
    assert (error.code, error.details["limit"]) == ("parse.too_large", "cells")
    parsed = LocalParser(ParseLimits(max_sheet_cells=12_000)).parse(data, XLSX)
    assert parsed.markdown.count("\n") >= 200


@pytest.mark.parametrize("split", [1, 2, 3, 5, 7])
def test_cells_are_counted_across_read_boundaries(split: int) -> None:
    class Reads:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, _: int) -> bytes:
            piece, self.data = self.data[:split], self.data[split:]
            return piece

    xml = b'<x:worksheet><x:sheetData><x:row><x:c r="A1"><x:v>1</x:v></x:c><x:c/>'
    xml += b"<x:c><x:v>2</x:v></x:c><x:col/></x:row></x:sheetData></x:worksheet>"
    assert count_cells(Reads(xml), 100) == 3  # type: ignore[arg-type]


def test_a_pdf_bomb_is_refused_before_pdfium_opens_it(tmp_path: Path) -> None:
    gen.pdf_bomb(tmp_path / "bomb.pdf", inflated=24 * 1024 * 1024)
    data = (tmp_path / "bomb.pdf").read_bytes()
    assert len(data) < 64 * 1024
    for budget in (8 * 1024 * 1024, 1024 * 1024 * 1024):  # total budget, then the ratio rule
        error = refusal(data, "application/pdf", max_pdf_inflated_bytes=budget)
        assert (error.code, error.details["limit"]) == ("parse.too_large", "pdf_inflated_bytes")
    # Below the per-stream floor the same construction is just a PDF, and it parses.
    gen.pdf_bomb(tmp_path / "small.pdf", inflated=4 * 1024 * 1024)
    small = (tmp_path / "small.pdf").read_bytes()
    assert check_pdf_streams(small, 8 * 1024 * 1024) > 4 * 1024 * 1024
    parsed = LocalParser().parse(small, "application/pdf")
    assert "very large content stream" in parsed.markdown


def test_settings_carry_every_limit_to_the_parser() -> None:
    config = LocalParserSettings(max_chars=7, max_csv_field_chars=2048, max_sheet_cells=9)
    limits = config.parse_limits()
    assert (limits.max_chars, limits.max_csv_field_chars, limits.max_sheet_cells) == (7, 2048, 9)
    assert LocalParserSettings().max_memory_bytes  # a memory cap by default


def crashed(retry_count: int) -> bool:
    error = TransientError("parse.crashed", "killed", exit_code=-signal.SIGKILL, max_retries=1)
    return should_fail(error, retry_count, max_attempts=5)


def test_a_killed_parse_is_retried_once_then_fails() -> None:
    assert crashed(0) is False  # the first crash: one more try, in a fresh process
    assert crashed(1) is True  # the second: parse.crashed for good


SIGNED_AT = 1_700_000_000.0


def event(**fields: object) -> bytes:
    body = {"event_id": "e", "event_type": "parse.success", "timestamp": SIGNED_AT}
    return json.dumps({**body, "data": {"job_id": "j"}, **fields}).encode()


@pytest.mark.parametrize(
    ("now", "stale"),
    [
        (SIGNED_AT, False),
        (SIGNED_AT + 299, False),
        (SIGNED_AT - 60, False),  # the sender's clock a minute ahead
        (SIGNED_AT + 301, True),
        (SIGNED_AT - 301, True),
        (SIGNED_AT + 86400 * 365 * 26, True),  # a year-2000-style replay
    ],
)
def test_the_signed_timestamp_must_be_recent(now: float, stale: bool) -> None:
    parsed = parse_llamaparse_webhook(event())
    if not stale:
        check_timestamp(parsed, now, 300)
        return
    with pytest.raises(PermanentError) as caught:
        check_timestamp(parsed, now, 300)
    assert caught.value.code == "webhook.stale"


@pytest.mark.parametrize(
    ("body", "leak"),
    [
        (b'{"event_id": "e", "timestamp": ', "Expecting"),
        (b"[" * 5000, "recursion"),
        (event(timestamp="not a number"), "not a number"),
        (event(event_id=["<script>"]), "<script>"),
    ],
)
def test_malformed_bodies_get_a_stable_code_and_no_parser_text(body: bytes, leak: str) -> None:
    with pytest.raises(IngestdError) as caught:
        parse_llamaparse_webhook(body)
    assert caught.value.code == "webhook.invalid_body"
    assert leak not in caught.value.message
