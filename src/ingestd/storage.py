"""The blob store: a local, content-addressed folder (``<home>/blobs/ab/cd/<sha256>``).

Keys are the sha256 hex of the content, so writing the same bytes twice is a no-op and a key
never points at different bytes. Writes go to a temporary file first and are renamed into place,
so a crash never leaves a half-written blob under a real key. The PostgreSQL and S3 stores, for
fleets with no shared folder, are in ``ingestd.blobs``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from ingestd.errors import PermanentError
from ingestd.ports import BlobInfo

# Files are hashed and copied in pieces of this size, never read whole.
FILE_READ_BYTES = 1024 * 1024
HEX_DIGITS = frozenset("0123456789abcdef")


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_key(key: str) -> str:
    """``key`` if it is a blob key (64 lowercase hex digits), else ``blob.bad_key``."""
    if len(key) != 64 or not HEX_DIGITS.issuperset(key):
        raise PermanentError("blob.bad_key", f"not a blob key: {key!r}")
    return key


def iter_file(path: Path, size: int = FILE_READ_BYTES) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while piece := handle.read(size):
            yield piece


def file_key(path: Path) -> str:
    """The key of a file's content, read in pieces."""
    digest = hashlib.sha256()
    for piece in iter_file(path):
        digest.update(piece)
    return digest.hexdigest()


def missing_blob(key: str, where: object) -> PermanentError:
    return PermanentError("blob.missing", f"blob {key} is missing from {where}")


class LocalBlobStore:
    """``BlobStore`` over a folder on the local disk."""

    # Reading a few KB from a local file is cheaper on the event loop than a thread hop.
    inline_io = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def __str__(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = content_key(data)
        target = self.path(key)
        if not target.exists():
            self._write(target, lambda handle: handle.write(data))
        return key

    def put_file(self, path: Path) -> str:
        key = file_key(path)
        target = self.path(key)
        if not target.exists():
            with open(path, "rb") as source:
                self._write(target, lambda handle: shutil.copyfileobj(source, handle))
        return key

    def _write(self, target: Path, fill: Callable[[BinaryIO], object]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise missing_blob(key, self.root) from exc

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list_blobs(self) -> Iterator[BlobInfo]:
        for path in self.root.glob("??/??/*"):
            if len(path.name) == 64 and HEX_DIGITS.issuperset(path.name):
                stat = path.stat()
                stored = datetime.fromtimestamp(stat.st_mtime, UTC)
                yield BlobInfo(path.name, stat.st_size, stored)
