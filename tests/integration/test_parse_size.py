"""A document over the parser's size limit fails before its bytes are read (issue 7, finding 5)."""

from __future__ import annotations

from collections.abc import Callable

from ingestd import reports
from ingestd.app import open_app
from ingestd.config import LocalParserSettings, Settings
from ingestd.ingest import Upload, ingest_uploads
from tests.factories import markdown_document


async def test_an_oversized_document_fails_without_being_read(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(parser=LocalParserSettings(max_bytes=1024))
    async with open_app(settings) as app:
        big = Upload("big.md", markdown_document(1).encode() * 40)
        [result] = await ingest_uploads(app.db, app.blobs, [big], owner="o")
        rows = await app.db.fetch_all(
            "SELECT blob_key FROM documents WHERE id = %(id)s", {"id": result.document_id}
        )
        # Gone from the store: reading it first would fail with another error than the size.
        app.blobs.delete(rows[0]["blob_key"])
        assert await app.worker(burst=True).run() == 0
        [job] = await reports.list_jobs(app.db)
    assert (job["state"], job["error_code"]) == ("failed_parse", "parse.too_large")
