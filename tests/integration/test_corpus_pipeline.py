"""The generated corpus through the whole pipeline: every format completes, every malformed file
ends in its failed state with its expected code while the rest of the run completes, and search
finds each document by its topic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingestd import reports
from ingestd.app import App, open_app
from ingestd.config import HashEmbedderSettings, Settings
from ingestd.ingest import ingest_files
from ingestd.search import search
from tests.unit.parsers.corpus import load_generator


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("corpus")
    manifest = load_generator().generate(root, ("small",), malformed=True)
    return root, manifest


async def test_formats_and_malformed_files_in_one_run(
    make_settings: Callable[..., Settings], corpus: tuple[Path, dict[str, Any]]
) -> None:
    # Lexical hashing needs room: at the suite's 64 dimensions, collisions blur topics.
    async with open_app(make_settings(embedder=HashEmbedderSettings(dimensions=512))) as app:
        await run_corpus(app, *corpus)


async def run_corpus(app: App, root: Path, manifest: dict[str, Any]) -> None:
    good = await ingest_files(app.db, app.blobs, [root / "small"], owner="c")
    bad = await ingest_files(app.db, app.blobs, [root / "malformed"], owner="junk")
    assert len(good) + len(bad) == len(manifest["documents"]) + len(manifest["malformed"])
    worker = app.worker(burst=True)
    assert await worker.run() == 0  # the worker survived every bad file
    jobs = {j["filename"]: j for j in await reports.list_jobs(app.db, limit=1000)}
    for doc in manifest["documents"]:
        name = Path(doc["file"]).name
        assert jobs[name]["state"] == "complete", (name, jobs[name])
    for bad in manifest["malformed"]:
        name = Path(bad["file"]).name
        job = jobs[name]
        if bad["expected_error"] is None:
            assert job["state"] == "complete", (name, job)
        else:
            assert job["state"] == "failed_parse", (name, job)
            assert job["error_code"] == bad["expected_error"], (name, job)
            assert job["error_message"]

    # Search by meaning (here: the lexical hash embedder) finds each document by its topic.
    misses = []
    for doc in manifest["documents"]:
        hits = await search(app.db, app.ports.embedder, doc["topic"], owner="c", limit=3)
        if not hits or hits[0].filename != Path(doc["file"]).name:
            misses.append((doc["topic"], [h.filename for h in hits]))
    assert misses == []
