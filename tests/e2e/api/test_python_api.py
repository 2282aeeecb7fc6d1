"""The Python API: the example in docs/reference/python.md runs as written, and the client keeps
to its owner."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ingestd import AsyncClient, Client
from ingestd.config import Settings
from ingestd.errors import Conflict, NotFound, PermanentError
from tests.conftest import worker_env

DOC = Path(__file__).resolve().parents[3] / "docs" / "reference" / "python.md"


def test_the_documented_example_runs(settings: Settings) -> None:
    [example] = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[:1]
    done = subprocess.run(
        [sys.executable, "-c", example],
        env=worker_env(settings, INGESTD_LOG_LEVEL="WARNING"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "complete" in done.stdout and "solar.md" in done.stdout


async def test_the_async_client_keeps_to_its_owner(settings: Settings) -> None:
    async with (
        AsyncClient(settings, owner="alice") as alice,
        AsyncClient(settings, owner="bob") as bob,
    ):
        [doc] = await alice.ingest_bytes("a.md", b"# A\n\nAlice's private notes.\n")
        with pytest.raises(NotFound):
            await bob.get_job(doc.job_id)
        with pytest.raises(NotFound):
            await bob.delete(doc.document_id)
        with pytest.raises(Conflict):
            await alice.retry(doc.job_id)
        assert (await alice.cancel(doc.job_id)).state == "cancelled"
        assert (await alice.retry(doc.job_id)).state == "uploaded"
        assert await alice.process() == 0
        assert (await alice.wait(doc.job_id, timeout=60)).state == "complete"
        assert await bob.search("private notes") == []
        assert [h.document_id for h in await alice.search("private notes")] == [doc.document_id]
        with pytest.raises(PermanentError) as caught:
            await alice.ingest_bytes("x.png", b"\x89PNG\r\n\x1a\n" + bytes(64))
        assert caught.value.code == "upload.unsupported_type"


def test_the_client_needs_its_with_block(settings: Settings) -> None:
    with pytest.raises(RuntimeError):
        Client(settings).get_job("00000000-0000-0000-0000-000000000000")
