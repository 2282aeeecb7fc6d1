"""PDF decompression-bomb check: inflate the Flate streams, bounded, before PDFium opens the file.

A PDF's content streams are usually Flate-compressed, and Flate reaches about 1,000:1: a 195 KB
file can hold a 200 MB page description that PDFium would inflate, hold and interpret. PDFium
has no limit for this, so :func:`check_pdf_streams` finds every ``stream … endstream`` in the
raw bytes, inflates the Flate ones piece by piece (the output is counted and dropped, never
kept) and refuses the file with ``parse.too_large`` as soon as the total passes the budget.

Two limits, so a bomb costs milliseconds and a big honest file still opens:

- per stream, unless it says it is an image: beyond ``STREAM_FLOOR`` bytes, a stream may not
  inflate more than ``STREAM_RATIO`` times. Page descriptions and fonts compress 3-20:1; a bomb
  needs ~1,000:1, and is stopped after inflating a few megabytes;
- in total, whatever the streams claim to be (a bomb could pose as an image, which PDFium does
  not inflate for text but would as a page's contents): ``max_inflated_bytes`` or
  ``INFLATE_RATIO`` times the file's size, whichever is larger, so PDFs with large
  Flate-compressed images still open.

Streams this scan cannot read (encrypted, damaged, another filter) are left to PDFium, which
reports them as it always did.
"""

from __future__ import annotations

import re
import zlib

from ingestd.errors import PermanentError

INFLATE_RATIO = 20
STREAM_RATIO = 100
STREAM_FLOOR = 8 * 1024 * 1024
_STREAM = re.compile(rb"\bstream\r?\n")
_ENDSTREAM = b"endstream"
_OBJ_START = re.compile(rb"\d+\s+\d+\s+obj\b")
_DIRECT_LENGTH = re.compile(rb"/Length\s+(\d+)(?!\s+\d+\s+R)")
_DICT_WINDOW = 4096  # how far before "stream" its dictionary is looked for
_PIECE = 64 * 1024  # compressed bytes fed at once
_OUT_STEP = 1024 * 1024  # inflated bytes produced at once (then dropped)


def check_pdf_streams(data: bytes, max_inflated_bytes: int) -> int:
    """Raise ``parse.too_large`` if the Flate streams inflate past the budget; else the total."""
    budget = max(max_inflated_bytes, INFLATE_RATIO * len(data))
    total = 0
    for match in _STREAM.finditer(data):
        head = _dictionary_before(data, match.start())
        if b"/FlateDecode" not in head:
            continue
        raw = _stream_bytes(data, match.end(), head)
        allowance = budget - total
        if b"/Image" not in head:
            allowance = min(allowance, max(STREAM_FLOOR, STREAM_RATIO * len(raw)))
        size = _inflated_size(raw, allowance)
        total += size
        if size > allowance or total > budget:
            raise _bomb(len(data))
    return total


def _bomb(file_size: int) -> PermanentError:
    return PermanentError(
        "parse.too_large",
        f"this PDF's compressed streams inflate far beyond its {file_size / 2**20:.1f} MiB "
        "(more than 100:1, or past the parser's max_pdf_inflated_bytes): it looks like a "
        "decompression bomb. If it is a genuine document, raise max_pdf_inflated_bytes",
        limit="pdf_inflated_bytes",
    )


def _dictionary_before(data: bytes, stream_at: int) -> bytes:
    window = data[max(0, stream_at - _DICT_WINDOW) : stream_at]
    starts = list(_OBJ_START.finditer(window))
    return window[starts[-1].end() :] if starts else window


def _stream_bytes(data: bytes, start: int, head: bytes) -> memoryview:
    view = memoryview(data)
    length = _DIRECT_LENGTH.search(head)
    if length is not None and start + int(length.group(1)) <= len(data):
        return view[start : start + int(length.group(1))]
    end = data.find(_ENDSTREAM, start)
    return view[start : end if end != -1 else len(data)]


def _inflated_size(raw: memoryview, allowance: int) -> int:
    """Bytes ``raw`` inflates to, counted up to just past ``allowance`` (then it stops)."""
    inflater = zlib.decompressobj()
    size = 0
    try:
        for offset in range(0, len(raw), _PIECE):
            pending = bytes(raw[offset : offset + _PIECE])
            while pending:
                size += len(inflater.decompress(pending, _OUT_STEP))
                if size > allowance:
                    return size
                pending = inflater.unconsumed_tail
            if inflater.eof:
                break
    except zlib.error:
        pass  # not valid Flate data: PDFium decides what it is
    return size
