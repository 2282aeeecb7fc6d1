"""XLSX to Markdown with python-calamine (Rust): one ``##`` section and table per worksheet.

Each worksheet is a page: ``## <sheet name>`` followed by its used cells as a pipe table (first
non-empty row as the header; empty rows and trailing empty cells dropped). Cached values are read,
so formulas show their last computed result. calamine reads sheets 15x faster than openpyxl, but
it materialises each sheet as a dense grid, so a sheet whose used range spans billions of cells
would exhaust memory. So before calamine sees the file, the ``<dimension>`` each sheet declares
is checked, and then the cells of every sheet are *counted* by streaming its XML (1 MiB at a
time, nothing kept): a workbook over ``max_cells`` is refused either way, after reading at most
the part of the file that passes the limit. (A sheet with few cells spread over a huge range and
no dimension is left to the parse's memory limit.)
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import zipfile
from collections.abc import Iterator
from typing import IO, Any

import python_calamine

from ingestd.errors import PermanentError
from ingestd.parsers.markdown import MarkdownBuilder, finish_document
from ingestd.parsers.zipguard import ZipLimits, check_office_container
from ingestd.ports import ParsedDocument

_SHEET_PART = re.compile(r"^xl/worksheets/[^/]+\.xml$")
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s+ref=\"([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?\"")
_CORE_TITLE = re.compile(rb"<(?:\w+:)?title\b[^>]*>([^<]*)</")
_HEAD_BYTES = 4096
_READ_BYTES = 1024 * 1024
_ROOT_PREFIX = re.compile(rb"<(\w+:)?worksheet\b")


def parse_xlsx(data: bytes, *, zip_limits: ZipLimits, max_cells: int) -> ParsedDocument:
    """An Excel workbook as Markdown, one table (and page) per worksheet."""
    check_office_container(data, "XLSX", zip_limits)
    title = _check_dimensions(data, max_cells)
    workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    try:
        builder = MarkdownBuilder()
        names, rows = [], _RowCounter()
        for sheet in workbook.sheets_metadata:
            if sheet.typ != python_calamine.SheetTypeEnum.WorkSheet:
                continue
            names.append(sheet.name)
            builder.start_page()
            builder.heading(sheet.name, 2)
            builder.table(rows.count(_sheet_rows(workbook.get_sheet_by_name(sheet.name))))
    finally:
        workbook.close()
    if not rows.seen:
        raise PermanentError("parse.empty", "this workbook has no cells with values")
    return finish_document(
        builder, title=title, paged=True, metadata={"format": "xlsx", "sheets": names}
    )


def _check_dimensions(data: bytes, max_cells: int) -> str | None:
    """Refuse workbooks whose declared used ranges exceed ``max_cells``; return the title."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheets = [name for name in archive.namelist() if _SHEET_PART.match(name)]
        declared = 0
        for name in sheets:
            with archive.open(name) as part:
                declared += _declared_cells(part.read(_HEAD_BYTES))
        if declared > max_cells:
            raise _too_many_cells(f"span {declared:,} cells", max_cells)
        counted = 0
        for name in sheets:
            with archive.open(name) as part:
                counted += count_cells(part, max_cells - counted)
            if counted > max_cells:
                raise _too_many_cells(f"hold more than {max_cells:,} cells", max_cells)
        return _core_title(archive)


def _too_many_cells(what: str, max_cells: int) -> PermanentError:
    return PermanentError(
        "parse.too_large",
        f"this workbook's sheets {what} (limit {max_cells:,}); delete unused rows and columns "
        "(their formatting counts too), or export the needed sheets as CSV",
        limit="cells",
    )


def count_cells(part: IO[bytes], stop_after: int) -> int:
    """The ``<c>`` elements of a worksheet's XML, read 1 MiB at a time; stops past ``stop_after``.

    A tag is never split between two reads: each read is counted up to its last ``<``, and the
    few bytes from there are carried into the next.
    """
    count, carry, tags = 0, b"", None
    while chunk := part.read(_READ_BYTES):
        buffer = carry + chunk
        if tags is None:  # the root element's namespace prefix, if any, names the cells too
            prefix = _ROOT_PREFIX.search(buffer)
            if prefix is None and len(buffer) < _HEAD_BYTES:
                carry = buffer
                continue
            name = (prefix.group(1) or b"") if prefix else b""
            tags = (b"<" + name + b"c ", b"<" + name + b"c>", b"<" + name + b"c/")
        cut = buffer.rfind(b"<")
        cut = len(buffer) if cut == -1 else cut
        count += sum(buffer.count(tag, 0, cut) for tag in tags)
        if count > stop_after:
            return count
        carry = buffer[cut : cut + 8]  # after its "<" there is no tag, only text: 8 bytes do
    return count + sum(carry.count(tag) for tag in tags or ())


def _declared_cells(head: bytes) -> int:
    match = _DIMENSION.search(head)
    if match is None or match.group(3) is None:
        return 1 if match else 0
    first_col, first_row, last_col, last_row = match.groups()
    width = _column_number(last_col) - _column_number(first_col) + 1
    return max(width, 1) * max(int(last_row) - int(first_row) + 1, 1)


def _column_number(letters: bytes) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + (letter - ord("A") + 1)
    return number


def _core_title(archive: zipfile.ZipFile) -> str | None:
    try:
        match = _CORE_TITLE.search(archive.read("docProps/core.xml"))
    except KeyError:
        return None
    return html.unescape(match.group(1).decode("utf-8", errors="replace")) if match else None


class _RowCounter:
    def __init__(self) -> None:
        self.seen = 0

    def count(self, rows: Iterator[list[str]]) -> Iterator[list[str]]:
        for row in rows:
            self.seen += 1
            yield row


def _sheet_rows(sheet: Any) -> Iterator[list[str]]:
    for values in sheet.iter_rows():
        cells = [_cell_text(value) for value in values]
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            yield cells


def _cell_text(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)
