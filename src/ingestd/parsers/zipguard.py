"""Zip-bomb and container checks for the Office Open XML formats (DOCX, PPTX, XLSX).

Reads only the ZIP central directory (nothing is decompressed) and refuses archives whose declared
uncompressed size, per-entry compression ratio or entry count is beyond sane limits, before any
library opens them. Declared sizes cannot be exceeded later: Python's ``zipfile`` stops reading an
entry at its declared size and fails the CRC check, so a lying header ends as ``parse.corrupt``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from ingestd.errors import PermanentError

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """How big an Office container may unpack to. Ratios apply only to large entries."""

    max_total_uncompressed: int = 512 * _MIB
    max_entry_ratio: float = 200.0
    ratio_applies_above: int = 16 * _MIB
    max_entries: int = 20_000


def check_office_container(data: bytes, kind: str, limits: ZipLimits) -> None:
    """Raise ``PermanentError`` unless ``data`` is a ZIP that is safe to open as ``kind``.

    ``kind`` is ``"DOCX"``, ``"PPTX"`` or ``"XLSX"`` (used in messages). Password-protected Office
    files are OLE2 containers, not ZIPs: they raise ``parse.encrypted``.
    """
    if data.startswith(_OLE_MAGIC):
        raise _ole_error(data, kind)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise PermanentError(
            "parse.corrupt",
            f"this {kind} file is damaged (its ZIP structure cannot be read: {exc}); "
            "open and re-save it, or re-export it",
        ) from exc
    _check_entries(entries, kind, limits)


def _check_entries(entries: list[zipfile.ZipInfo], kind: str, limits: ZipLimits) -> None:
    if len(entries) > limits.max_entries:
        raise PermanentError(
            "parse.too_large",
            f"this {kind} holds {len(entries)} parts (limit {limits.max_entries})",
            limit="zip_entries",
        )
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_total_uncompressed:
        raise PermanentError(
            "parse.too_large",
            f"this {kind} unpacks to {total // _MIB} MiB (limit "
            f"{limits.max_total_uncompressed // _MIB} MiB); it may be a zip bomb, or must be split",
            limit="uncompressed_bytes",
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > limits.ratio_applies_above and ratio > limits.max_entry_ratio:
            raise PermanentError(
                "parse.too_large",
                f"part {entry.filename!r} of this {kind} expands {ratio:.0f}x "
                f"(limit {limits.max_entry_ratio:.0f}x); this looks like a zip bomb",
                limit="compression_ratio",
            )


def _ole_error(data: bytes, kind: str) -> PermanentError:
    if _ENCRYPTED_PACKAGE in data:
        return PermanentError(
            "parse.encrypted",
            f"this {kind} is password-protected; remove the password (File > Info > Protect) "
            "and upload it again",
        )
    return PermanentError(
        "parse.unsupported_type",
        f"this file is named like a {kind} but is a legacy binary Office file (.doc/.xls/.ppt); "
        f"open it in Office or LibreOffice and save it as {kind}",
    )
