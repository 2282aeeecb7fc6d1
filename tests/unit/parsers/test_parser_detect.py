"""Media types come from content; the file name only breaks ties between text types."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from ingestd.parsers import detect
from ingestd.parsers.detect import detect_media_type


def _zip(*names: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return out.getvalue()


OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)

CASES = [
    (b"%PDF-1.7\n%\xe2\xe3\n1 0 obj", "report.txt", detect.PDF),
    (b"\xef\xbb\xbf%PDF-1.4 junk before header", "", detect.PDF),
    (_zip("[Content_Types].xml", "word/document.xml"), "x.bin", detect.DOCX),
    (_zip("[Content_Types].xml", "ppt/presentation.xml"), "", detect.PPTX),
    (_zip("[Content_Types].xml", "xl/workbook.xml"), "data.docx", detect.XLSX),
    (_zip("readme.txt"), "archive.docx", detect.ZIP),
    (OLE, "old.doc", "application/msword"),
    (OLE, "locked.xlsx", detect.XLSX),
    (OLE, "", detect.OLE),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "scan.pdf", "image/png"),
    (bytes(range(256)) * 8, "junk.pdf", detect.OCTET_STREAM),
    (b"<!DOCTYPE html><html><body><p>hi</p></body></html>", "", detect.HTML),
    (b"<div><p>one</p><p>two</p><span>three</span></div>", "page", detect.HTML),
    (json.dumps({"a": [1, 2, {"b": None}]}).encode(), "", detect.JSON),
    (json.dumps([{"a": 1}]).encode(), "data.txt", detect.JSON),
    (b"name,amount\nnorth,12\nsouth,7\n", "", detect.CSV),
    (b"name;amount\nnorth;12\n", "export.csv", detect.CSV),
    (b"# Title\n\nSome text.\n\n- one\n- two\n", "", detect.MARKDOWN),
    (b"Plain words here.\nAnd another line.\n", "notes.md", detect.MARKDOWN),
    (b"Plain words here.\nAnd another line.\n", "notes", detect.TEXT),
    (b"Plain, with a comma.\nAnd no table at all here.\n\nReally.", "x.csv", detect.TEXT),
    ("Hello UTF-16 world".encode("utf-16-le"), "", detect.TEXT),
    (b"", "empty.pdf", detect.TEXT),
]


@pytest.mark.parametrize(("data", "filename", "expected"), CASES)
def test_detect_media_type(data: bytes, filename: str, expected: str) -> None:
    assert detect_media_type(data, filename) == expected


def test_every_supported_type_has_a_parser() -> None:
    from ingestd.parsers.local import _FORMATS

    assert set(_FORMATS) == detect.SUPPORTED_MEDIA_TYPES
