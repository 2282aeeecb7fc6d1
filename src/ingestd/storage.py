"""The blob store: a local, content-addressed folder (``<home>/blobs/ab/cd/<sha256>``).

Keys are the sha256 hex of the content, so writing the same bytes twice is a no-op and a key
never points at different bytes. Writes go to a temporary file first and are renamed into place,
so a crash never leaves a half-written blob under a real key.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ingestd.errors import PermanentError


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalBlobStore:
    """``BlobStore`` over a folder on the local disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise PermanentError("blob.bad_key", f"not a blob key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = content_key(data)
        target = self.path(key)
        if target.exists():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise PermanentError("blob.missing", f"blob {key} is missing from {self.root}") from exc

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
