"""The limits a local parse runs under, with their defaults as named constants.

One frozen object travels with every parse (into the isolated worker process too), so a limit is
set in one place: ``LocalParser(limits=ParseLimits(max_pages=500))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingestd.errors import PermanentError
from ingestd.parsers.zipguard import ZipLimits

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_PAGES = 10_000
DEFAULT_MAX_CHARS = 20_000_000
DEFAULT_MAX_HTML_DEPTH = 2_000
DEFAULT_MAX_SHEET_CELLS = 5_000_000
# csv's own default is 128 Ki characters; a field longer than this is not a table cell any more.
DEFAULT_MAX_CSV_FIELD_CHARS = 1024 * 1024
# Content streams of real PDFs inflate to kilobytes per page; 100 Ki pages of dense text stay under.
DEFAULT_MAX_PDF_INFLATED_BYTES = 128 * 1024 * 1024
# Address space one parse may add: ten times the largest file, and then some.
DEFAULT_MAX_MEMORY_BYTES = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Beyond any of these a document fails with ``parse.too_large`` instead of being read."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pages: int = DEFAULT_MAX_PAGES
    max_chars: int = DEFAULT_MAX_CHARS
    max_html_depth: int = DEFAULT_MAX_HTML_DEPTH
    max_sheet_cells: int = DEFAULT_MAX_SHEET_CELLS
    max_csv_field_chars: int = DEFAULT_MAX_CSV_FIELD_CHARS
    max_pdf_inflated_bytes: int = DEFAULT_MAX_PDF_INFLATED_BYTES
    zip: ZipLimits = field(default_factory=ZipLimits)


def check_size(size: int, max_bytes: int) -> None:
    """``parse.too_large`` for a file of ``size`` bytes over ``max_bytes``; run before reading."""
    if size > max_bytes:
        raise PermanentError(
            "parse.too_large",
            f"the file is {size / 2**20:.1f} MiB; the local parser takes up to "
            f"{max_bytes / 2**20:.0f} MiB. Split it into smaller files",
            limit="bytes",
        )
