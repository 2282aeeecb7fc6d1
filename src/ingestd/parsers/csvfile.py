"""CSV (and TSV): one Markdown pipe table, first row as the header.

The delimiter is sniffed from the first lines (comma, semicolon, tab or pipe: the one that splits
every line into the same number of fields). Rows stream from the decoded text into the table, so
the document is held as text and as Markdown, not as a list of rows too.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from ingestd.errors import PermanentError
from ingestd.parsers.encoding import decode_text
from ingestd.parsers.limits import DEFAULT_MAX_CSV_FIELD_CHARS
from ingestd.parsers.markdown import MarkdownBuilder, finish_document
from ingestd.ports import ParsedDocument

_DELIMITERS = (",", ";", "\t", "|")
_SNIFF_LINES = 50


def parse_csv(data: bytes, *, max_field_chars: int = DEFAULT_MAX_CSV_FIELD_CHARS) -> ParsedDocument:
    """A delimited text file as a Markdown table; a field over ``max_field_chars`` stops it."""
    text, encoding = decode_text(data)
    delimiter = sniff_delimiter(text)
    builder = MarkdownBuilder()
    # The limit is process-wide in the csv module; parses in one process run one at a time.
    csv.field_size_limit(max_field_chars)
    try:
        builder.table(csv.reader(_lines(text), delimiter=delimiter))
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise PermanentError(
                "parse.too_large",
                f"this CSV file has a field longer than {max_field_chars:,} characters (the "
                "limit); it is probably not a table (check its quoting)",
                limit="csv_field",
            ) from exc
        raise PermanentError(
            "parse.corrupt", f"this CSV file cannot be read ({exc}); check its quoting"
        ) from exc
    del text
    return finish_document(
        builder,
        title=None,
        paged=False,
        metadata={"format": "csv", "encoding": encoding, "delimiter": delimiter},
    )


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, one at a time.

    (``io.StringIO`` would copy the whole text into a 4-bytes-per-character buffer first.)
    """
    start, length = 0, len(text)
    while start < length:
        end = text.find("\n", start)
        if end == -1:
            yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


def sniff_delimiter(text: str) -> str:
    """The delimiter that gives the most consistent field count over the first lines."""
    lines = [line for line in text[:65536].splitlines()[:_SNIFF_LINES] if line.strip()]
    if len(lines) > 2:
        lines = lines[:-1]  # the last sampled line may be cut
    best, best_score = ",", -1.0
    for delimiter in _DELIMITERS:
        counts = [line.count(delimiter) for line in lines]
        if not counts or max(counts) == 0:
            continue
        consistent = sum(1 for count in counts if count == counts[0]) / len(counts)
        score = consistent * 10 + min(counts[0], 9)
        if score > best_score:
            best, best_score = delimiter, score
    return best
