"""XLSX to Markdown with python-calamine (Rust): one ``##`` section and table per worksheet.

Each worksheet is a page: ``## <sheet name>`` followed by its used cells as a pipe table (first
non-empty row as the header; empty rows and trailing empty cells dropped). Cached values are read,
so formulas show their last computed result. calamine reads sheets 15x faster than openpyxl, but
it materialises each sheet as a dense grid, so a sheet whose used range spans billions of cells
would exhaust memory: the ``<dimension>`` each sheet declares is checked first, and a workbook over
``max_cells`` is refused. (A file that lies in its dimension is contained by process isolation.)
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import python_calamine

from ingestd.errors import PermanentError
from ingestd.parsers.markdown import MarkdownBuilder, finish_document
from ingestd.parsers.zipguard import ZipLimits, check_office_container
from ingestd.ports import ParsedDocument

_SHEET_PART = re.compile(r"^xl/worksheets/[^/]+\.xml$")
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s+ref=\"([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?\"")
_CORE_TITLE = re.compile(rb"<(?:\w+:)?title\b[^>]*>([^<]*)</")
_HEAD_BYTES = 4096


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
    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if _SHEET_PART.match(name):
                with archive.open(name) as part:
                    total += _declared_cells(part.read(_HEAD_BYTES))
        title = _core_title(archive)
    if total > max_cells:
        raise PermanentError(
            "parse.too_large",
            f"this workbook's sheets span {total:,} cells (limit {max_cells:,}); delete unused "
            "rows and columns (their formatting counts too), or export the needed sheets as CSV",
            limit="cells",
        )
    return title


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
