"""The local parser: picks the format module for a media type and translates every failure.

``LocalParser`` implements the ``Parser`` port for PDF, DOCX, PPTX, XLSX, HTML, Markdown, plain
text, CSV and JSON without any network. It is the boundary where library exceptions end: whatever
a format library raises becomes a ``PermanentError`` with a ``parse.*`` code and a message a
person can act on, with the original kept as ``__cause__``. Format modules are imported on first
use, so importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from ingestd.errors import IngestdError, PermanentError
from ingestd.parsers import detect
from ingestd.parsers.limits import ParseLimits, check_size
from ingestd.parsers.markdown import char_limit
from ingestd.ports import ParsedDocument

# media type -> (module, function, short format name)
_FORMATS: dict[str, tuple[str, str, str]] = {
    detect.PDF: ("ingestd.parsers.pdf", "parse_pdf", "PDF"),
    detect.DOCX: ("ingestd.parsers.docx", "parse_docx", "DOCX"),
    detect.PPTX: ("ingestd.parsers.pptx", "parse_pptx", "PPTX"),
    detect.XLSX: ("ingestd.parsers.xlsx", "parse_xlsx", "XLSX"),
    detect.HTML: ("ingestd.parsers.html", "parse_html", "HTML"),
    detect.MARKDOWN: ("ingestd.parsers.text", "parse_markdown", "Markdown"),
    detect.TEXT: ("ingestd.parsers.text", "parse_text", "text"),
    detect.CSV: ("ingestd.parsers.csvfile", "parse_csv", "CSV"),
    detect.JSON: ("ingestd.parsers.jsonfile", "parse_json", "JSON"),
}
_ALIASES = {
    "application/xhtml+xml": detect.HTML,
    "text/x-markdown": detect.MARKDOWN,
    "text/tab-separated-values": detect.CSV,
    "application/csv": detect.CSV,
    "text/json": detect.JSON,
    "application/x-pdf": detect.PDF,
}
FORMAT_MODULES = tuple(sorted({module for module, _, _ in _FORMATS.values()}))


class LocalParser:
    """Parses documents on this machine, no network. Cheap to pickle; usable from several threads
    (PDF parses then take turns: PDFium is not thread-safe)."""

    name = "local"

    def __init__(self, limits: ParseLimits | None = None) -> None:
        self.limits = limits or ParseLimits()

    def parse(self, data: bytes, media_type: str, filename: str = "") -> ParsedDocument:
        """``data`` as Markdown; raises ``PermanentError`` (``parse.*``) when it cannot be read."""
        media_type = _ALIASES.get(media_type.split(";")[0].strip().lower(), media_type)
        self._check_size(data)
        module_name, function_name, label = self._format_of(data, media_type, filename)
        function = getattr(importlib.import_module(module_name), function_name)
        with char_limit(self.limits.max_chars):
            document = translated(label, lambda: function(data, **self._options(media_type)))
        metadata = {**document.metadata, "parser": self.name, "media_type": media_type}
        return dataclasses.replace(document, metadata=metadata)

    def _check_size(self, data: bytes) -> None:
        if not data:
            raise PermanentError("parse.empty", "the file is empty (0 bytes); upload it again")
        check_size(len(data), self.limits.max_bytes)

    def _format_of(self, data: bytes, media_type: str, filename: str) -> tuple[str, str, str]:
        if media_type in _FORMATS:
            return _FORMATS[media_type]
        raise _unsupported(data, media_type, filename)

    def _options(self, media_type: str) -> dict[str, Any]:
        limits = self.limits
        options: dict[str, dict[str, Any]] = {
            detect.PDF: {
                "max_pages": limits.max_pages,
                "max_inflated_bytes": limits.max_pdf_inflated_bytes,
            },
            detect.DOCX: {"zip_limits": limits.zip},
            detect.PPTX: {"zip_limits": limits.zip, "max_pages": limits.max_pages},
            detect.XLSX: {"zip_limits": limits.zip, "max_cells": limits.max_sheet_cells},
            detect.HTML: {"max_depth": limits.max_html_depth},
            detect.CSV: {"max_field_chars": limits.max_csv_field_chars},
        }
        return options.get(media_type, {})


def translated(label: str, parse: Callable[[], ParsedDocument]) -> ParsedDocument:
    """Run ``parse``; any exception that is not already ours becomes a ``parse.*`` error."""
    try:
        return parse()
    except IngestdError:
        raise
    except MemoryError as exc:
        raise PermanentError(
            "parse.too_large",
            f"this {label} file needs more memory to parse than is available; split it",
            limit="memory",
        ) from exc
    except RecursionError as exc:
        raise PermanentError(
            "parse.corrupt",
            f"this {label} file is nested too deeply to read; it is probably damaged or generated",
        ) from exc
    except Exception as exc:
        raise PermanentError(
            "parse.corrupt",
            f"this {label} file cannot be read ({type(exc).__name__}: {_short(exc)}); it is "
            "probably damaged: open it in its application, save a new copy and upload that",
            library_error=type(exc).__name__,
        ) from exc


def _unsupported(data: bytes, media_type: str, filename: str) -> PermanentError:
    claimed = detect.EXTENSION_TYPES.get(PurePath(filename).suffix.lower()) if filename else None
    if media_type == detect.OLE or media_type in _LEGACY_OFFICE:
        if b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00e\x00d\x00P\x00a\x00c\x00k\x00a\x00g\x00e" in data:
            return PermanentError(
                "parse.encrypted",
                "this Office file is password-protected; remove the password and upload it again",
            )
        return PermanentError(
            "parse.unsupported_type",
            "legacy binary Office files (.doc, .xls, .ppt) are not supported; open the file in "
            "Office or LibreOffice and save it as .docx, .xlsx or .pptx",
            media_type=media_type,
        )
    if claimed in _FORMATS and media_type == detect.OCTET_STREAM:
        return PermanentError(
            "parse.corrupt",
            f"the file is named {PurePath(filename).name!r} but its content is not a "
            f"{_FORMATS[claimed][2]} file; it is damaged or misnamed",
        )
    return PermanentError(
        "parse.unsupported_type",
        f"files of type {media_type} are not supported by the local parser (supported: PDF, "
        "DOCX, PPTX, XLSX, HTML, Markdown, text, CSV, JSON); convert the file to one of these",
        media_type=media_type,
    )


_LEGACY_OFFICE = frozenset(
    {"application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint"}
)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc) or "no details"
    return text if len(text) <= limit else text[: limit - 1] + "…"
