"""Copying every blob from one store to another (moving a deployment to a new blob backend)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ingestd.ports import BlobStore


@dataclass(frozen=True)
class CopyReport:
    copied: int
    already_there: int
    bytes_copied: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def copy_blobs(source: BlobStore, target: BlobStore) -> CopyReport:
    """Put every blob of ``source`` into ``target`` (idempotent: run it again to finish)."""
    copied = already = size = 0
    for blob in source.list_blobs():
        if target.exists(blob.key):
            already += 1
            continue
        if target.put(source.get(blob.key)) != blob.key:
            raise RuntimeError(f"blob {blob.key} read back with other content")
        copied += 1
        size += blob.size_bytes
    return CopyReport(copied, already, size)
