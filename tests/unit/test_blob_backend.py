"""Which blob store the settings choose."""

from __future__ import annotations

import pytest

from ingestd.blobs import blob_backend
from ingestd.config import BlobSettings, Settings


@pytest.mark.parametrize(
    ("backend", "database_url", "chosen"),
    [
        ("auto", None, "local"),
        ("auto", "postgresql://db.example/ingestd", "postgres"),
        ("local", "postgresql://db.example/ingestd", "local"),
        ("postgres", None, "postgres"),
        ("s3", None, "s3"),
        ("s3", "postgresql://db.example/ingestd", "s3"),
    ],
)
def test_blob_backend(backend: str, database_url: str | None, chosen: str) -> None:
    settings = Settings(database_url=database_url, blobs=BlobSettings(backend=backend))  # type: ignore[arg-type]
    assert blob_backend(settings) == chosen


def test_blob_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTD_BLOBS__BACKEND", "s3")
    monkeypatch.setenv("INGESTD_BLOBS__S3_BUCKET", "docs")
    monkeypatch.setenv("INGESTD_BLOBS__S3_SECRET_ACCESS_KEY", "not-a-real-secret")
    settings = Settings()
    assert settings.blobs.backend == "s3" and settings.blobs.s3_bucket == "docs"
    assert "not-a-real-secret" not in repr(settings)
