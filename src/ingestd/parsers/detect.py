"""Media-type detection from a document's content; the file name is only a hint.

Order: magic bytes (PDF, OLE2, images, archives), then ZIP containers opened (central directory
only, nothing is decompressed) to tell DOCX, PPTX and XLSX apart, then text sniffing (HTML, JSON,
CSV, Markdown, plain text). The extension decides only between text types the content cannot
tell apart (``notes.md`` and ``notes.txt`` read the same). Unknown binary content is
``application/octet-stream``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path, PurePath

import puremagic

from ingestd.parsers.encoding import guess_utf16

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"
CSV = "text/csv"
JSON = "application/json"
ZIP = "application/zip"
OLE = "application/x-ole-storage"
OCTET_STREAM = "application/octet-stream"

SUPPORTED_MEDIA_TYPES = frozenset({PDF, DOCX, PPTX, XLSX, HTML, MARKDOWN, TEXT, CSV, JSON})

EXTENSION_TYPES = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".pptx": PPTX,
    ".xlsx": XLSX,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".txt": TEXT,
    ".text": TEXT,
    ".log": TEXT,
    ".csv": CSV,
    ".tsv": CSV,
    ".json": JSON,
    ".doc": "application/msword",
    ".xls": "application/vnd.ms-excel",
    ".ppt": "application/vnd.ms-powerpoint",
}

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x1f\x8b", "application/gzip"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"{\\rtf", "application/rtf"),
)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OLE_HINTS = frozenset(
    {
        DOCX,
        PPTX,
        XLSX,
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
    }
)
_OOXML_MAIN_PARTS = (
    ("word/document.xml", DOCX),
    ("ppt/presentation.xml", PPTX),
    ("xl/workbook.xml", XLSX),
)
_SNIFF_BYTES = 64 * 1024
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)
_HTML_TAGS = re.compile(rb"<(p|div|h[1-6]|table|ul|ol|span|a\s|br|meta|title)\b[^>]*>", re.I)
_MARKDOWN_HINTS = re.compile(r"^(#{1,6} \S|\s*[-*+] \S|\s*\d+\. \S|```|\|.*\|\s*$|> \S)", re.M)
_CSV_DELIMITERS = (",", ";", "\t", "|")


def detect_media_type(data: bytes, filename: str = "") -> str:
    """The MIME type of ``data``, judged from its content; ``filename`` only breaks ties."""
    hint = EXTENSION_TYPES.get(PurePath(filename).suffix.lower(), "") if filename else ""
    head = data[:_SNIFF_BYTES]
    binary = _detect_binary(data, head, hint)
    if binary is not None:
        return binary
    if not _looks_like_text(head):
        return _name_unknown_binary(head)
    return _detect_text(head, hint, complete=len(data) <= _SNIFF_BYTES)


def detect_file_media_type(path: Path, filename: str = "") -> str:
    """``detect_media_type`` for a file on disk, reading only its head (and a ZIP's directory)."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES + 1)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _detect_zip(path)
    return detect_media_type(head, filename)


def _detect_binary(data: bytes, head: bytes, hint: str) -> str | None:
    if b"%PDF-" in head[:1024]:
        return PDF
    if head.startswith(_OLE_MAGIC):
        return _detect_ole(hint)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _detect_zip(data)
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        return "image/webp"
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    return None


def _detect_ole(hint: str) -> str:
    """OLE2 holds legacy Office files and password-protected OOXML files; the name tells which."""
    return hint if hint in _OLE_HINTS else OLE


def _detect_zip(data: bytes | Path) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return ZIP
    for part, media_type in _OOXML_MAIN_PARTS:
        if part in names:
            return media_type
    return ZIP


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return True
    if guess_utf16(head) is not None:
        return True
    if b"\x00" in head:
        return False
    controls = sum(head.count(bytes([code])) for code in _BINARY_CONTROL_BYTES)
    return controls / len(head) < 0.05


_BINARY_CONTROL_BYTES = (*(c for c in range(32) if c not in (9, 10, 12, 13, 27)), 127)


def _name_unknown_binary(head: bytes) -> str:
    try:
        guessed = puremagic.from_string(head, mime=True)
    except (puremagic.PureError, ValueError):
        return OCTET_STREAM
    return guessed or OCTET_STREAM


def _detect_text(head: bytes, hint: str, *, complete: bool) -> str:
    if _HTML_START.match(head):
        return HTML
    if _looks_like_json(head, complete=complete):
        return JSON
    if hint in (HTML, MARKDOWN, CSV, TEXT) and _hint_fits(head, hint, complete=complete):
        return hint
    if len(_HTML_TAGS.findall(head[:8192])) >= 3:
        return HTML
    sample = head.decode("utf-8", errors="replace")
    if _looks_like_csv(sample, complete=complete):
        return CSV
    if len(_MARKDOWN_HINTS.findall(sample[:16384])) >= 2:
        return MARKDOWN
    return TEXT


def _hint_fits(head: bytes, hint: str, *, complete: bool) -> bool:
    """Whether the content is plausible for the type its extension claims."""
    if hint == HTML:
        return b"<" in head
    if hint == CSV:
        return _looks_like_csv(head.decode("utf-8", errors="replace"), complete=complete)
    return True


def _looks_like_json(head: bytes, *, complete: bool) -> bool:
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] not in (b"{", b"["):
        return False
    if complete:
        try:
            json.loads(head.decode("utf-8", errors="strict").lstrip("\ufeff"))
        except (ValueError, UnicodeDecodeError):
            return False
        except RecursionError:
            return True  # brackets nested past the stack: JSON the parser will refuse clearly
        return True
    return bool(re.match(rb'[{\[]\s*("|\{|\[|\]|\}|-?\d|true|false|null)', stripped))


def _looks_like_csv(sample: str, *, complete: bool) -> bool:
    lines = [line for line in sample.splitlines()[:21] if line.strip()]
    if not complete and len(lines) > 1:
        lines = lines[:-1]  # the last line of a cut sample may be partial
    if len(lines) < 2:
        return False
    for delimiter in _CSV_DELIMITERS:
        counts = {line.count(delimiter) for line in lines}
        if len(counts) == 1 and counts.pop() >= 1:
            return True
    return False
