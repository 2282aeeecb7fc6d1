"""Results stay identical through every performance change: a fixed mixed corpus (every format,
the malformed set, a small Markdown backlog and one ~100 KB document) runs through the pipeline
and its fingerprint -- chunk ids, text and vector hashes (hash embedder), and each job's event
sequence -- must equal the one recorded from the implementation before the drain optimisations
(``fingerprint.json`` beside this file).

To re-record after an intended change of output (a new chunker version, say), run this test with
``INGESTD_RECORD_FINGERPRINT=1``: it writes the file and fails, so a recording never passes
silently. Say why in the commit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingestd.app import App, open_app
from ingestd.chunking import chunk_id
from ingestd.config import Settings
from ingestd.ingest import ingest_files
from tests.unit.parsers.corpus import load_generator

FINGERPRINT = Path(__file__).with_name("fingerprint.json")
RECORD_ENV = "INGESTD_RECORD_FINGERPRINT"
SEED = 20261202


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fingerprint")
    generator = load_generator()
    generator.generate(root / "mixed", ("small",), malformed=True, seed=SEED)
    generator.generate_backlog(root / "backlog", 12, 5, seed=SEED)
    generator.generate_backlog(root / "large", 1, 100, seed=SEED)
    # Slow to run and covered by their own tests; a short long run stands in for long-line.txt.
    for slow in ("manifest.json", "long-line.txt", "zip-bomb.docx"):
        for path in root.rglob(slow):
            path.unlink()
    run = base64.b64encode(random.Random(SEED).randbytes(9000)).decode()
    (root / "long-run.md").write_text(f"# Attachment\n\nAn inline blob:\n\n{run}\n\nThe end.\n")
    return root


async def test_a_run_matches_the_recorded_fingerprint(
    make_settings: Callable[..., Settings], corpus: Path
) -> None:
    async with open_app(make_settings()) as app:
        await ingest_files(app.db, app.blobs, [corpus], owner="fp")
        assert await app.worker(burst=True).run() == 0
        fingerprint = await take_fingerprint(app)
    if os.environ.get(RECORD_ENV):
        FINGERPRINT.write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n")
        pytest.fail(f"recorded {FINGERPRINT.name}; run again without {RECORD_ENV}")
    expected = json.loads(FINGERPRINT.read_text())
    assert fingerprint["chunker_version"] == expected["chunker_version"]
    assert sorted(fingerprint["documents"]) == sorted(expected["documents"])
    for name, document in expected["documents"].items():
        assert fingerprint["documents"][name] == document, name


async def take_fingerprint(app: App) -> dict[str, Any]:
    """Per document (by file name): final state, error code, event sequence and chunks."""
    jobs = await app.db.fetch_all(
        "SELECT j.id, j.document_id, j.state, j.chunker_version, j.chunk_count,"
        " j.last_error->>'code' AS code, d.filename"
        " FROM jobs j JOIN documents d ON d.id = j.document_id"
    )
    versions = {j["chunker_version"] for j in jobs if j["chunker_version"]}
    assert len(versions) == 1
    version = versions.pop()
    documents = {}
    for job in jobs:
        documents[job["filename"]] = {
            "state": job["state"],
            "error": job["code"],
            "chunk_count": job["chunk_count"],
            "events": await _events(app, job["id"]),
            "chunks": await _chunks(app, job, version),
        }
    return {"chunker_version": version, "documents": documents}


async def _events(app: App, job_id: Any) -> list[str]:
    rows = await app.db.fetch_all(
        "SELECT kind, from_state, to_state, error->>'code' AS code FROM job_events"
        " WHERE job_id = %s ORDER BY id",
        (job_id,),
    )
    return [
        f"{r['kind']}:{r['from_state']}->{r['to_state']}" + (f":{r['code']}" if r["code"] else "")
        for r in rows
    ]


async def _chunks(app: App, job: dict[str, Any], version: str) -> str:
    """A digest of one line per chunk: ordinal, tokens, page, headings, and hashes of id, text
    and vector (the file stays small; the chunk count beside it shows where a change begins).

    The stored id must be ``chunk_id`` of the (random) document id; the fingerprint keeps the id
    the same function gives for the file name, which pins the id scheme too."""
    rows = await app.db.fetch_all(
        "SELECT id, ordinal, text, token_count, heading_path, page, embedding::text AS vector"
        " FROM chunks WHERE document_id = %s ORDER BY ordinal",
        (job["document_id"],),
    )
    lines = []
    for r in rows:
        assert r["id"] == chunk_id(str(job["document_id"]), version, r["ordinal"], r["text"])
        stable_id = chunk_id(job["filename"], version, r["ordinal"], r["text"])
        lines.append(
            f"{r['ordinal']}:{r['token_count']}:{r['page']}:{'/'.join(r['heading_path'])}"
            f"|{stable_id[:12]}|{_sha(r['text'])}|{_sha(r['vector'])}"
        )
    return _sha("\n".join(lines))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
