"""Streaming ``multipart/form-data`` uploads: each file goes to a temporary file as it arrives.

python-multipart parses the stream; this module only decides where the bytes go. A file part is
hashed and written to a temporary file under ``<home>/tmp`` piece by piece (never whole in
memory) and cut off at ``max_upload_bytes``; the number of parts and the size of the one JSON
field (``metadata``) are limited too. Nothing is stored until the whole request has arrived: an
aborted or refused upload leaves only temporary files, which ``ReceivedUpload.cleanup`` removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from ingestd.api.errors import ApiError
from ingestd.config import ApiSettings

FILE_FIELD = "file"
METADATA_FIELD = "metadata"
MAX_FILENAME_CHARS = 255


@dataclass
class ReceivedFile:
    """One file part, complete on disk."""

    path: Path
    filename: str  # cleaned: a display name, never used as a path
    raw_filename: str
    size: int = 0
    sha256: str = ""


@dataclass
class ReceivedUpload:
    files: list[ReceivedFile] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def cleanup(self) -> None:
        for received in self.files:
            received.path.unlink(missing_ok=True)

    def fingerprint(self) -> str:
        """What makes two uploads the same request: every file's name as sent, size and
        content digest, in order, and the metadata (key order aside)."""
        files = [[f.raw_filename, f.size, f.sha256] for f in self.files]
        request = {"files": files, "metadata": self.metadata}
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()


def clean_filename(raw: str) -> str:
    """A display name: the last path component, control characters and bidi overrides
    dropped, at most 255 characters. It is only stored, never used to build a path."""
    name = PurePosixPath(raw.replace("\\", "/")).name
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.strip().strip(".") or "upload"
    return name[:MAX_FILENAME_CHARS]


def escaped(raw: str) -> str:
    """``raw`` with every non-printable character as an escape (storable in jsonb)."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in raw)


def json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    return 0


def parse_metadata(text: str, settings: ApiSettings) -> dict[str, Any]:
    if len(text.encode()) > settings.max_metadata_bytes:
        raise ApiError(
            413,
            "upload.metadata_too_large",
            f"metadata exceeds {settings.max_metadata_bytes} bytes",
        )
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ApiError(422, "upload.bad_metadata", "metadata is not valid JSON") from exc
    if not isinstance(value, dict):
        raise ApiError(422, "upload.bad_metadata", "metadata must be a JSON object")
    if json_depth(value) > settings.max_json_depth:
        raise ApiError(
            422, "upload.bad_metadata", f"metadata nests deeper than {settings.max_json_depth}"
        )
    if "\\u0000" in text:
        raise ApiError(422, "upload.bad_metadata", "metadata may not contain NUL characters")
    return value


class _Receiver:
    """The parser's callbacks: route each part's bytes to its temporary file or field buffer."""

    def __init__(self, settings: ApiSettings, tmp_dir: Path, upload: ReceivedUpload) -> None:
        self.settings = settings
        self.tmp_dir = tmp_dir
        self.upload = upload
        self.parts = 0
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.current: ReceivedFile | None = None
        self.handle: Any = None
        self.digest: Any = None
        self.field_name = ""
        self.field_data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.settings.max_parts:
            raise ApiError(
                413,
                "upload.too_many_parts",
                f"an upload may have at most {self.settings.max_parts} parts",
            )
        self.disposition = b""
        self.current = None
        self.field_data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = b""
        self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == FILE_FIELD and b"filename" in options:
            raw = options[b"filename"].decode("utf-8", "surrogateescape")
            fd, path = tempfile.mkstemp(dir=self.tmp_dir, prefix="upload-")
            self.handle = os.fdopen(fd, "wb")
            self.current = ReceivedFile(Path(path), clean_filename(raw), raw)
            self.upload.files.append(self.current)
            self.digest = hashlib.sha256()
        elif name == METADATA_FIELD:
            self.field_name = name
        else:
            raise ApiError(
                422,
                "upload.unknown_field",
                f"unexpected form field {escaped(name)!r}: send files as 'file' "
                "(with a filename) and an optional 'metadata' JSON object",
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        if self.current is None:
            if len(self.field_data) + len(piece) > self.settings.max_metadata_bytes:
                raise ApiError(
                    413,
                    "upload.metadata_too_large",
                    f"metadata exceeds {self.settings.max_metadata_bytes} bytes",
                )
            self.field_data += piece
            return
        self.current.size += len(piece)
        if self.current.size > self.settings.max_upload_bytes:
            raise ApiError(
                413,
                "upload.too_large",
                f"{self.current.filename!r} exceeds {self.settings.max_upload_bytes} bytes",
            )
        self.digest.update(piece)
        self.handle.write(piece)

    def on_part_end(self) -> None:
        if self.current is not None:
            self.handle.close()
            self.handle = None
            self.current.sha256 = self.digest.hexdigest()
            self.current = None
        elif self.field_name == METADATA_FIELD:
            self.upload.metadata = parse_metadata(
                self.field_data.decode("utf-8", "replace"), self.settings
            )

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


async def receive_upload(
    content_type: str | None,
    stream: AsyncIterator[bytes],
    settings: ApiSettings,
    tmp_dir: Path,
) -> ReceivedUpload:
    """Read a multipart upload to temporary files; on any error nothing is left behind."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError(
            415,
            "upload.not_multipart",
            "send the files as multipart/form-data (form field 'file', repeatable)",
        )
    tmp_dir.mkdir(parents=True, exist_ok=True)
    upload = ReceivedUpload()
    receiver = _Receiver(settings, tmp_dir, upload)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
        if receiver.current is not None or receiver.parts == 0:
            raise ApiError(422, "upload.truncated", "the multipart body ended early")
    except BaseException as exc:
        receiver.close()
        upload.cleanup()
        if isinstance(exc, ApiError):
            raise
        if isinstance(exc, Exception) and type(exc).__module__.startswith("python_multipart"):
            raise ApiError(422, "upload.bad_multipart", "the multipart body is malformed") from exc
        raise
    if not upload.files:
        raise ApiError(422, "upload.no_file", "no file: send at least one 'file' part")
    return upload
